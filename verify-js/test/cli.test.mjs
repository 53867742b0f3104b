// The command line against receipts from real belfry runs: they verify with
// their documents; a tampered document, each tampered part of a receipt and a
// wrong anchor fail with exit 1 and the right check named on stderr; usage
// and I/O errors exit 2. Aggregated receipts (version 2): every case of
// testdata/vectors/aggregated.json in every form it gives.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { anchorFromClusterToml, parseJson, stringifyExact } from '../lib/index.mjs';
import { bigFile } from './fixtures.mjs';
import { tamperedBinary, tamperedJson } from './tamper.mjs';

const CLI = fileURLToPath(new URL('../verify.mjs', import.meta.url));
const fixture = (p) => fileURLToPath(new URL(`fixtures/${p}`, import.meta.url));
const LAMPORT = anchorFromClusterToml(readFileSync(fixture('lamport/cluster.toml'), 'utf8'));
const CLOCK = anchorFromClusterToml(readFileSync(fixture('clock/cluster.toml'), 'utf8'));
const vectors = JSON.parse(readFileSync(new URL('../../testdata/vectors/receipt.json', import.meta.url), 'utf8'));
// Read with parseJson (integers exact: one case has leaf_index 2^64 - 1).
const aggregatedText = readFileSync(new URL('../../testdata/vectors/aggregated.json', import.meta.url), 'utf8');
const tmp = mkdtempSync(join(tmpdir(), 'belfry-verify-js-'));

function run(...args) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function expectFail(r, check) {
  assert.equal(r.code, 1, `exit 1 expected: ${r.err}`);
  assert.match(r.err, new RegExp(`^FAIL .*: ${check} check: `), r.err);
}

function write(name, data) {
  const p = join(tmp, name);
  writeFileSync(p, data);
  return p;
}

describe('receipts from real belfry runs verify', () => {
  const cases = [
    ['lamport binary', LAMPORT, 'lamport/hello.txt.belfry', 'lamport/hello.txt', 'leaf 23 of tree size 26, in the log by 2026-12-06T21:17:46.156768Z'],
    ['lamport binary, a larger tree', LAMPORT, 'lamport/later.txt.belfry', 'lamport/later.txt', 'leaf 207 of tree size 209'],
    ['lamport JSON', LAMPORT, 'lamport/note.json.receipt.json', 'lamport/note.json', 'leaf 27 of tree size 29'],
    ['clock policy binary', CLOCK, 'clock/clock.txt.belfry', 'clock/clock.txt', 'leaf 36 of tree size 38, in the log by 2026-12-06T21:18:02.893171Z'],
    ['clock policy JSON', CLOCK, 'clock/clock.txt.receipt.json', 'clock/clock.txt', 'leaf 36 of tree size 38'],
  ];
  for (const [name, anchor, receipt, file, says] of cases) {
    it(name, () => {
      const r = run('--anchor', anchor, fixture(receipt), fixture(file));
      assert.equal(r.code, 0, r.err);
      assert.ok(r.out.startsWith('OK ') && r.out.includes(says), r.out);
    });
  }

  it('a 10 MiB document, hashed in chunks', () => {
    const r = run('--anchor', LAMPORT, fixture('lamport/big.bin.belfry'), write('big.bin', bigFile()));
    assert.equal(r.code, 0, r.err);
  });

  it('with --cluster cluster.toml, --digest, or the receipt alone', () => {
    assert.equal(run('--cluster', fixture('lamport/cluster.toml'), fixture('lamport/hello.txt.belfry'), fixture('lamport/hello.txt')).code, 0);
    const digest = 'abdd8f6318a5c3d07e795e1f1719fe7c04c28bedfaaec7453a2a64a4f8ada7a8';
    assert.equal(run('--anchor', LAMPORT, fixture('lamport/hello.txt.belfry'), '--digest', digest).code, 0);
    const alone = run('--anchor', LAMPORT, fixture('lamport/hello.txt.belfry'));
    assert.equal(alone.code, 0);
    assert.match(alone.out, /digest not checked/);
  });

  it('the committed vector, in both forms', () => {
    const bin = write('vector.belfry', Buffer.from(vectors.binary_hex, 'hex'));
    const json = write('vector.json', JSON.stringify(vectors.json));
    for (const p of [bin, json]) assert.equal(run('--anchor', vectors.trust_anchor, p, '--digest', vectors.json.entry.digest).code, 0);
  });

  it('--json prints one object with every check', () => {
    const r = run('--anchor', LAMPORT, fixture('lamport/hello.txt.belfry'), fixture('lamport/hello.txt'), '--json');
    assert.equal(r.code, 0);
    const j = JSON.parse(r.out);
    assert.equal(j.ok, true);
    assert.equal(j.time, 1796591866156768);
    assert.deepEqual(j.checks.map((c) => c.check), ['format', 'anchor', 'cluster_id', 'digest', 'entry', 'inclusion_proof', 'signature']);
  });
});

describe('what must fail, fails with the right check and exit 1', () => {
  it('a tampered document', () => {
    const doc = readFileSync(fixture('lamport/hello.txt'));
    doc[0] ^= 0x20;
    expectFail(run('--anchor', LAMPORT, fixture('lamport/hello.txt.belfry'), write('hello.txt', doc)), 'digest');
    expectFail(run('--anchor', LAMPORT, fixture('lamport/hello.txt.belfry'), fixture('lamport/later.txt')), 'digest');
  });

  it('a wrong anchor', () => {
    expectFail(run('--anchor', CLOCK, fixture('lamport/hello.txt.belfry')), 'anchor');
    expectFail(run('--anchor', vectors.trust_anchor, fixture('lamport/note.json.receipt.json')), 'anchor');
    expectFail(run('--cluster', fixture('clock/cluster.toml'), fixture('lamport/hello.txt.belfry')), 'anchor');
  });

  const binary = new Uint8Array(readFileSync(fixture('lamport/hello.txt.belfry')));
  const other = [Buffer.from(vectors.json.signature, 'hex'), Buffer.from(vectors.json.cluster.group_public_key, 'hex')];
  for (const [i, t] of tamperedBinary(binary, ...other).entries()) {
    it(`binary ${t.name}: ${t.check}`, () => {
      expectFail(run('--anchor', LAMPORT, write(`t${i}.belfry`, t.bytes), fixture('lamport/hello.txt')), t.check);
    });
  }
  for (const [i, t] of tamperedJson(readFileSync(fixture('lamport/note.json.receipt.json'), 'utf8'), vectors.json.cluster.group_public_key).entries()) {
    it(`${t.name}: ${t.check}`, () => {
      expectFail(run('--anchor', LAMPORT, write(`t${i}.json`, t.text), fixture('lamport/note.json')), t.check);
    });
  }
});

/** Each case's forms as files: its JSON receipt (cut from the vector file's text, u64s exact) and its binary one. */
function aggregatedFiles(kind) {
  const doc = parseJson(aggregatedText);
  return doc[kind].map((c, i) => {
    const files = [];
    if (c.json !== undefined) files.push(['json', write(`agg-${kind}-${i}.receipt.json`, stringifyExact(c.json, 2))]);
    if (c.binary_hex !== undefined) files.push(['binary', write(`agg-${kind}-${i}.belfry`, Buffer.from(c.binary_hex, 'hex'))]);
    return { c, files };
  });
}

describe('aggregated receipts (version 2, testdata/vectors/aggregated.json)', () => {
  for (const { c, files } of aggregatedFiles('positive')) {
    it(`${c.name} verifies in both forms`, () => {
      const layers = Number(c.expect.gateway_layers);
      const via = layers === 1 ? 'through 1 gateway round' : `through ${layers} stacked gateway rounds`;
      for (const [form, p] of files) {
        const r = run('--anchor', c.trust_anchor, p, '--digest', c.document_digest);
        assert.equal(r.code, 0, `${form}: ${r.err}`);
        assert.equal(r.out, `OK ${p}: leaf ${c.expect.leaf_index} of tree size ${c.expect.tree_size} ${via}, in the log by ${c.expect.time_utc}\n`);
        const j = parseJson(run('--anchor', c.trust_anchor, p, '--json').out);
        assert.equal(j.ok, true);
        assert.equal(j.gateway_layers, c.expect.gateway_layers);
        assert.equal(j.digest, c.expect.digest);
        assert.equal(j.time, c.expect.time);
        assert.equal(j.leaf_index, c.expect.leaf_index);
        assert.deepEqual(j.checks.map((x) => x.check), ['format', 'anchor', 'cluster_id', 'digest', 'aggregation', 'entry', 'inclusion_proof', 'signature']);
      }
    });
  }

  for (const { c, files } of aggregatedFiles('negative')) {
    it(`${c.name}: ${c.expected_check}`, () => {
      for (const [, p] of files) {
        const digest = c.document_digest === null ? [] : ['--digest', c.document_digest];
        expectFail(run('--anchor', c.trust_anchor, p, ...digest), c.expected_check);
      }
    });
  }

  it('--json of a version-1 receipt says gateway_layers 0', () => {
    const j = JSON.parse(run('--anchor', LAMPORT, fixture('lamport/hello.txt.belfry'), '--json').out);
    assert.equal(j.gateway_layers, 0);
  });
});

describe('usage and I/O errors exit 2', () => {
  const receipt = fixture('lamport/hello.txt.belfry');
  const cases = [
    ['no arguments', []],
    ['no anchor', [receipt]],
    ['both --anchor and --cluster', ['--anchor', LAMPORT, '--cluster', fixture('lamport/cluster.toml'), receipt]],
    ['an anchor without its prefix', ['--anchor', LAMPORT.slice(8), receipt]],
    ['a short anchor', ['--anchor', LAMPORT.slice(0, -2), receipt]],
    ['an anchor that is not a G1 point', ['--anchor', `belfry1:${'a0'.padEnd(96, '0').replace(/^a0/, '9f')}`, receipt]],
    ['no receipt', ['--anchor', LAMPORT]],
    ['a missing receipt file', ['--anchor', LAMPORT, join(tmp, 'missing.belfry')]],
    ['a missing document', ['--anchor', LAMPORT, receipt, join(tmp, 'missing.txt')]],
    ['a cluster file without an anchor', ['--cluster', fixture('lamport/hello.txt'), receipt]],
    ['FILE and --digest', ['--anchor', LAMPORT, receipt, fixture('lamport/hello.txt'), '--digest', 'ab'.repeat(32)]],
    ['a bad --digest', ['--anchor', LAMPORT, receipt, '--digest', 'xyz']],
    ['an unknown option', ['--anchor', LAMPORT, receipt, '--fast']],
    ['too many arguments', ['--anchor', LAMPORT, receipt, receipt, receipt]],
  ];
  for (const [name, args] of cases) {
    it(name, () => {
      const r = run(...args);
      assert.equal(r.code, 2, `${name}: ${r.out}${r.err}`);
      assert.match(r.err, /^error: /);
    });
  }

  it('--help exits 0', () => {
    const r = run('--help');
    assert.equal(r.code, 0);
    assert.match(r.out, /^usage: /);
  });
});
