// The verifier page in a real browser: headless Debian Chromium, driven by
// playwright-core, loads page/verify.html from file:// and verifies real
// receipts and the committed vectors (OK; aggregated receipts of version 2
// too), and a tampered document, tampered receipts and a wrong anchor (FAIL,
// the right check named). Nothing may be fetched but the page itself.
// Screenshots go to target/verify-js/.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { anchorFromClusterToml, parseJson, stringifyExact } from '../../lib/index.mjs';
import { bigFile } from '../fixtures.mjs';
import { tamperedBinary, tamperedJson } from '../tamper.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const PAGE = new URL('../../page/verify.html', import.meta.url).href;
const SHOTS = fileURLToPath(new URL('../../../target/verify-js/', import.meta.url));
const fixture = (p) => readFileSync(new URL(`../fixtures/${p}`, import.meta.url));
const LAMPORT = anchorFromClusterToml(fixture('lamport/cluster.toml').toString('utf8'));
const CLOCK = anchorFromClusterToml(fixture('clock/cluster.toml').toString('utf8'));
const vector = JSON.parse(readFileSync(new URL('../../../testdata/vectors/receipt.json', import.meta.url), 'utf8'));
const aggregated = parseJson(readFileSync(new URL('../../../testdata/vectors/aggregated.json', import.meta.url), 'utf8'));
const aggCase = (kind, name) => aggregated[kind].find((c) => c.name === name);
const file = (name, buffer) => ({ name, mimeType: 'application/octet-stream', buffer: Buffer.from(buffer) });

let context;
let page;
let profile;
const requests = [];

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'belfry-verify-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 940, height: 1280 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => { throw e; });
});

after(async () => {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
});

/** Fills the page from `c`, clicks Verify and reads the verdict and the checks. */
async function verifyIn(c) {
  await page.goto(PAGE);
  if (c.clusterToml) {
    await page.setInputFiles('#cluster-input', file('cluster.toml', c.clusterToml));
    await page.waitForFunction(() => document.getElementById('anchor').value.startsWith('belfry1:'));
  }
  if (c.anchor) await page.fill('#anchor', c.anchor);
  if (c.document) await page.setInputFiles('#document-input', file(...c.document));
  if (c.digest) await page.fill('#digest', c.digest);
  if (c.receipt) {
    await page.setInputFiles('#receipt-input', file(...c.receipt));
    await page.waitForFunction(() => document.getElementById('receipt-status').textContent !== '');
  }
  if (c.receiptJson) await page.fill('#receipt-json', c.receiptJson);
  await page.click('#verify');
  await page.waitForFunction(() => ['ok', 'fail', 'error'].includes(document.getElementById('verdict').dataset.state));
  return page.evaluate(() => ({
    state: document.getElementById('verdict').dataset.state,
    verdict: document.getElementById('verdict').textContent,
    signed: document.getElementById('signed-time')?.textContent ?? null,
    gateways: document.getElementById('gateway-layers')?.textContent ?? null,
    checks: Object.fromEntries([...document.querySelectorAll('#checks li')].map((li) => [li.dataset.check, li.dataset.status])),
  }));
}

function assertOk(r, signed, checks = 7) {
  assert.equal(r.state, 'ok', r.verdict);
  assert.match(r.verdict, /^OK/);
  if (signed) assert.equal(r.signed, signed);
  assert.deepEqual(Object.values(r.checks), Array(checks).fill('ok'));
}

function assertFail(r, check) {
  assert.equal(r.state, 'fail', r.verdict);
  assert.ok(r.verdict.startsWith(`FAIL — ${check} check:`), r.verdict);
  assert.equal(r.checks[check], 'fail');
}

describe('the verifier page in Chromium', () => {
  it('verifies a real receipt, its anchor loaded from cluster.toml', async () => {
    const r = await verifyIn({
      clusterToml: fixture('lamport/cluster.toml'),
      document: ['hello.txt', fixture('lamport/hello.txt')],
      receipt: ['hello.txt.belfry', fixture('lamport/hello.txt.belfry')],
    });
    assertOk(r, '2026-12-06T21:17:46.156768Z');
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'page.png'), fullPage: true });
  });

  it('verifies a 10 MiB document hashed in chunks, and a clock-policy JSON receipt', async () => {
    assertOk(await verifyIn({
      anchor: LAMPORT,
      document: ['big.bin', bigFile()],
      receipt: ['big.bin.belfry', fixture('lamport/big.bin.belfry')],
    }));
    assertOk(await verifyIn({
      anchor: CLOCK,
      document: ['clock.txt', fixture('clock/clock.txt')],
      receipt: ['clock.txt.receipt.json', fixture('clock/clock.txt.receipt.json')],
    }), '2026-12-06T21:18:02.893171Z');
  });

  it('verifies the committed vector: pasted digest and JSON receipt, and its binary form', async () => {
    assertOk(await verifyIn({
      anchor: vector.trust_anchor,
      digest: vector.json.entry.digest,
      receiptJson: JSON.stringify(vector.json, null, 2),
    }), '2025-11-21T04:40:00.019000Z');
    assertOk(await verifyIn({
      anchor: vector.trust_anchor,
      digest: vector.json.entry.digest,
      receipt: ['vector.belfry', Buffer.from(vector.binary_hex, 'hex')],
    }));
  });

  it('verifies aggregated receipts (version 2): pasted JSON and a binary file, one and two gateway layers', async () => {
    for (const name of ['one_layer', 'two_layers']) {
      const c = aggCase('positive', name);
      const rounds = c.expect.gateway_layers === 1n ? 'through 1 gateway round' : `through ${c.expect.gateway_layers} stacked gateway rounds`;
      const pasted = await verifyIn({ anchor: c.trust_anchor, digest: c.document_digest, receiptJson: stringifyExact(c.json, 2) });
      assertOk(pasted, c.expect.time_utc, 8);
      assert.equal(pasted.checks.aggregation, 'ok');
      assert.equal(pasted.gateways, `${rounds} into the root ${c.expect.logged_digest}`);
      const binary = await verifyIn({ anchor: c.trust_anchor, digest: c.document_digest, receipt: [`${name}.belfry`, Buffer.from(c.binary_hex, 'hex')] });
      assertOk(binary, c.expect.time_utc, 8);
      if (name === 'two_layers') await page.screenshot({ path: join(SHOTS, 'page-aggregated.png'), fullPage: true });
    }
  });

  it('tampered aggregated receipts fail with the check named', async () => {
    for (const name of ['proof_hash_changed', 'logged_digest_changed', 'other_document', 'nine_steps', 'inner_time_changed']) {
      const c = aggCase('negative', name);
      const digest = c.document_digest ?? undefined;
      assertFail(await verifyIn({ anchor: c.trust_anchor, digest, receipt: [`${name}.belfry`, Buffer.from(c.binary_hex, 'hex')] }), c.expected_check);
      assertFail(await verifyIn({ anchor: c.trust_anchor, digest, receiptJson: stringifyExact(c.json, 2) }), c.expected_check);
    }
  });

  it('a tampered document fails the digest check', async () => {
    const doc = Buffer.from(fixture('lamport/hello.txt'));
    doc[3] ^= 0x01;
    assertFail(await verifyIn({
      anchor: LAMPORT,
      document: ['hello.txt', doc],
      receipt: ['hello.txt.belfry', fixture('lamport/hello.txt.belfry')],
    }), 'digest');
  });

  it('tampered receipts fail with the check named', async () => {
    const binary = new Uint8Array(fixture('lamport/hello.txt.belfry'));
    const other = [Buffer.from(vector.json.signature, 'hex'), Buffer.from(vector.json.cluster.group_public_key, 'hex')];
    const wanted = ['entry: witnessed_at changed', 'entry: reserved flag bit set', 'proof: a hash changed',
      'tree size: doubled', 'time changed', 'signature: a byte changed', 'truncated'];
    const cases = tamperedBinary(binary, ...other).filter((t) => wanted.includes(t.name));
    assert.equal(cases.length, wanted.length);
    for (const t of cases) {
      const r = await verifyIn({
        anchor: LAMPORT,
        document: ['hello.txt', fixture('lamport/hello.txt')],
        receipt: ['hello.txt.belfry', t.bytes],
      });
      assertFail(r, t.check);
      if (t.check === 'signature') {
        await page.screenshot({ path: join(SHOTS, 'page-fail.png'), fullPage: true });
      }
    }
    const json = tamperedJson(fixture('lamport/note.json.receipt.json').toString('utf8'), vector.json.cluster.group_public_key)
      .find((t) => t.name === 'json: cluster_id changed');
    assertFail(await verifyIn({ anchor: LAMPORT, receiptJson: json.text }), 'cluster_id');
  });

  it('a wrong anchor fails the anchor check', async () => {
    assertFail(await verifyIn({
      anchor: CLOCK,
      document: ['hello.txt', fixture('lamport/hello.txt')],
      receipt: ['hello.txt.belfry', fixture('lamport/hello.txt.belfry')],
    }), 'anchor');
  });

  it('a malformed anchor is reported, not judged', async () => {
    const r = await verifyIn({ anchor: 'belfry1:1234', receiptJson: JSON.stringify(vector.json) });
    assert.equal(r.state, 'error');
    assert.match(r.verdict, /96 hex digits/);
  });

  it('fetched nothing but the page itself', () => {
    assert.ok(requests.length > 0);
    assert.deepEqual(requests.filter((u) => !u.startsWith('file://')), []);
  });
});
