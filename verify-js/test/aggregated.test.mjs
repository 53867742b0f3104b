// Aggregated receipts (version 2, docs/gateway.md) against the committed
// vectors in testdata/vectors/aggregated.json (computed by aggregated.py,
// Python, independently of this code): every intermediate value reproduces
// (gateway leaf hashes, round roots, paths, the chain, the cluster log, its
// signed head), both forms round-trip to each other and verify with every
// check ok, and every negative case fails at its expected check in every form
// it gives, the checks before it ok (or skipped) and the ones after it not run.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { bls12_381 } from '@noble/curves/bls12-381.js';
import {
  AGGREGATE_LEAF_TAG, CHECKS, DST, aggregateLeafHash, checksFor, clusterId, encodeEntry, fromHex,
  leafHash, parseJson, readReceipt, rootFromInclusion, stringifyExact, toBinary, toHex, toJsonValue,
  treeHeadMessage, verifyReceipt, verifySignature,
} from '../lib/index.mjs';
import { mth, path } from './rfc9162.mjs';

const VECTORS = new URL('../../testdata/vectors/', import.meta.url);
const load = (name) => parseJson(readFileSync(new URL(name, VECTORS), 'utf8'));
const agg = load('aggregated.json');
const signing = load('signing.json');

function entryOf(v) {
  if (v.kind === 'digest') {
    return { kind: 'digest', digest: fromHex(v.digest, 32), witnessedAt: v.witnessed_at, key: v.key, witnesses: v.witnesses, late: v.late };
  }
  return {
    kind: 'tick', wave: v.wave, time: v.time, coinSig: fromHex(v.coin_sig, 96), leader: fromHex(v.leader, 32),
    stateRoot: fromHex(v.state_root, 32), prevRoot: fromHex(v.prev_root, 32), batchLen: v.batch_len,
  };
}

/** The forms a case gives: [label, input to verifyReceipt]. */
function forms(c) {
  const out = [];
  if (c.json !== undefined) out.push(['json', stringifyExact(c.json, 1)]);
  if (c.binary_hex !== undefined) out.push(['binary', fromHex(c.binary_hex)]);
  return out;
}

describe('aggregated.json: the file', () => {
  it('names the checks in the order this verifier runs them, and the leaf tag', () => {
    assert.deepEqual(agg.checks, CHECKS);
    assert.deepEqual(checksFor(2), CHECKS);
    assert.deepEqual(checksFor(1), CHECKS.filter((c) => c !== 'aggregation'));
    assert.equal(agg.aggregate_leaf_tag, AGGREGATE_LEAF_TAG);
    assert.equal(new TextEncoder().encode(AGGREGATE_LEAF_TAG).length, 16);
    assert.equal(agg.trust_anchor, signing.trust_anchor);
    assert.equal(agg.cluster_id, signing.cluster_id);
  });

  it('has one- and two-layer positive cases and negative cases for every check but entry', () => {
    assert.deepEqual(new Set(agg.positive.map((c) => c.expect.gateway_layers)), new Set([1n, 2n]));
    const failing = new Set(agg.negative.map((c) => c.expected_check));
    for (const check of CHECKS.filter((c) => c !== 'entry')) assert.ok(failing.has(check), check);
  });

  it('a gateway leaf is never a log leaf', () => {
    const d = new Uint8Array(32).fill(7);
    assert.notEqual(toHex(aggregateLeafHash(d)), toHex(leafHash(d)));
    assert.equal(AGGREGATE_LEAF_TAG.charCodeAt(0), 0x62); // 'b', never an entry's kind byte 0x01 or 0x02
  });
});

describe('aggregated.json: positive cases', () => {
  for (const c of agg.positive) {
    if (c.layers !== undefined) {
      it(`${c.name}: every layer's leaves, root and path, and the chain`, () => {
        let h = fromHex(c.document_digest, 32);
        assert.equal(c.chain[0], c.document_digest);
        for (const [i, layer] of c.layers.entries()) {
          const leaves = layer.round_digests.map((d) => aggregateLeafHash(fromHex(d, 32)));
          assert.deepEqual(leaves.map(toHex), layer.leaf_hashes, `layer ${i} leaf hashes`);
          assert.equal(toHex(mth(leaves)), layer.root, `layer ${i} root`);
          const m = Number(layer.leaf_index);
          assert.equal(layer.tree_size, BigInt(leaves.length));
          assert.equal(layer.digest, toHex(h), `layer ${i} holds the digest below`);
          assert.equal(layer.round_digests[m], toHex(h));
          assert.equal(layer.leaf_hash, toHex(aggregateLeafHash(h)));
          assert.deepEqual(path(m, leaves).map(toHex), layer.proof, `layer ${i} PATH`);
          h = rootFromInclusion(aggregateLeafHash(h), layer.leaf_index, layer.tree_size, layer.proof.map((x) => fromHex(x, 32)));
          assert.equal(toHex(h), layer.root);
          assert.equal(c.chain[i + 1], layer.root);
        }
        assert.equal(c.expect.logged_digest, toHex(h));
      });

      it(`${c.name}: the cluster log, its signed head and the inner receipt`, () => {
        const log = c.cluster_log;
        for (const [i, e] of log.entries.entries()) {
          const bytes = encodeEntry(entryOf(e));
          assert.equal(toHex(bytes), e.bytes, `entry ${i}`);
          assert.equal(toHex(leafHash(bytes)), e.leaf_hash, `entry ${i}`);
        }
        assert.equal(log.entries[Number(c.expect.leaf_index)].digest, c.expect.logged_digest);
        assert.equal(toHex(mth(log.entries.map((e) => fromHex(e.leaf_hash, 32)))), log.root);
        const cid = clusterId({
          groupPublicKey: fromHex(agg.cluster.group_public_key, 48), n: agg.cluster.n, f: agg.cluster.f,
          policy: agg.cluster.policy, granularityUs: agg.cluster.granularity_us, genesisTime: agg.cluster.genesis_time,
        });
        assert.equal(toHex(cid), agg.cluster_id);
        const message = treeHeadMessage(cid, log.tree_size, fromHex(log.root, 32), log.time);
        assert.equal(toHex(message), log.sth_message);
        assert.ok(verifySignature(fromHex(log.signature, 96), message, fromHex(agg.cluster.group_public_key, 48)));
        const bls = bls12_381.longSignatures;
        const sig = bls.sign(bls.hash(message, DST), fromHex(signing.secret_key, 32));
        assert.equal(toHex(bls.Signature.toBytes(sig)), log.signature, 'deterministic BLS: the same bytes');
        assert.equal(toHex(toBinary(readReceipt(stringifyExact(c.json.receipt)))), c.inner_receipt_binary_hex);
      });
    }

    it(`${c.name}: both forms read to the same receipt and round-trip to each other`, () => {
      const fromBinary = readReceipt(fromHex(c.binary_hex));
      const fromJson = readReceipt(stringifyExact(c.json));
      assert.equal(fromBinary.version, 2);
      assert.equal(fromJson.version, 2);
      assert.equal(toHex(toBinary(fromBinary)), c.binary_hex);
      assert.equal(toHex(toBinary(fromJson)), c.binary_hex);
      assert.equal(stringifyExact(toJsonValue(fromBinary)), stringifyExact(c.json));
      assert.equal(stringifyExact(toJsonValue(fromJson)), stringifyExact(c.json));
    });

    it(`${c.name}: verifies in both forms, with and without its document`, () => {
      for (const [form, input] of forms(c)) {
        const r = verifyReceipt(input, c.trust_anchor, { digest: c.document_digest });
        assert.equal(r.ok, true, `${form}: ${r.failed}: ${r.reason}`);
        assert.deepEqual(r.checks.map((x) => x.check), CHECKS);
        assert.deepEqual(r.checks.map((x) => x.status), Array(CHECKS.length).fill('ok'), form);
        const s = r.receipt;
        assert.equal(s.version, 2);
        assert.equal(s.digest, c.expect.digest);
        assert.equal(s.loggedDigest, c.expect.logged_digest);
        assert.equal(BigInt(s.gatewayLayers), c.expect.gateway_layers);
        assert.equal(s.leafIndex, c.expect.leaf_index);
        assert.equal(s.treeSize, c.expect.tree_size);
        assert.equal(s.time, c.expect.time);
        assert.equal(s.timeUtc, c.expect.time_utc);
        const alone = verifyReceipt(input, c.trust_anchor);
        assert.equal(alone.ok, true, `${form} alone: ${alone.reason}`);
        assert.equal(alone.checks.find((x) => x.check === 'digest').status, 'skipped');
      }
    });
  }
});

describe('aggregated.json: negative cases fail at the expected check', () => {
  for (const c of agg.negative) {
    it(`${c.name}: ${c.expected_check}`, () => {
      const given = forms(c);
      assert.ok(given.length > 0);
      for (const [form, input] of given) {
        const r = verifyReceipt(input, c.trust_anchor, { digest: c.document_digest ?? undefined });
        assert.equal(r.ok, false, form);
        assert.equal(r.failed, c.expected_check, `${form}: failed ${r.failed}: ${r.reason}`);
        assert.deepEqual(r.checks.map((x) => x.check), CHECKS, form);
        const at = CHECKS.indexOf(c.expected_check);
        for (const [i, x] of r.checks.entries()) {
          const want = i < at ? (x.check === 'digest' && c.document_digest === null ? 'skipped' : 'ok') : i === at ? 'fail' : 'not run';
          assert.equal(x.status, want, `${form}: ${x.check}`);
        }
      }
    });
  }
});

describe('version-1 receipts are unchanged', () => {
  it('list the seven checks of version 1 and no gateway layers', () => {
    const v1 = load('receipt.json');
    const r = verifyReceipt(fromHex(v1.binary_hex), v1.trust_anchor, { digest: v1.json.entry.digest });
    assert.equal(r.ok, true);
    assert.deepEqual(r.checks.map((x) => x.check), checksFor(1));
    assert.equal(r.receipt.version, 1);
    assert.equal(r.receipt.gatewayLayers, 0);
    const bad = verifyReceipt('{"version": 1}', v1.trust_anchor);
    assert.equal(bad.failed, 'format');
    assert.equal(bad.checks.length, 7);
  });
});
