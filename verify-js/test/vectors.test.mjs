// Every committed vector in testdata/vectors/ that a receipt verifier relies
// on reproduces byte for byte: entry bytes and leaf hashes, tree roots,
// inclusion (and consistency) proofs, the trust anchor, the cluster id, the
// signed tree head message and its signature, and the receipt in both forms.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { bls12_381 } from '@noble/curves/bls12-381.js';
import {
  DST, clusterId, decodeEntry, encodeEntry, formatAnchor, fromHex, leafHash, parseAnchor,
  parseJson, readReceipt, rootFromInclusion, stringifyExact, toBinary, toHex, toJsonValue,
  treeHeadMessage, verifyReceipt, verifySignature,
} from '../lib/index.mjs';
import { consistency, mth, path } from './rfc9162.mjs';

const VECTORS = new URL('../../testdata/vectors/', import.meta.url);
const load = (name) => parseJson(readFileSync(new URL(name, VECTORS), 'utf8'));
const merkle = load('merkle_sha256.json');
const signing = load('signing.json');
const receipt = load('receipt.json');

/** A vector's entry fields in the shape lib/receipt.mjs reads them. */
function entryOf(v) {
  if (v.kind === 'digest') {
    return { kind: 'digest', digest: fromHex(v.digest, 32), witnessedAt: v.witnessed_at, key: v.key, witnesses: v.witnesses, late: v.late };
  }
  return {
    kind: 'tick', wave: v.wave, time: v.time, coinSig: fromHex(v.coin_sig, 96), leader: fromHex(v.leader, 32),
    stateRoot: fromHex(v.state_root, 32), prevRoot: fromHex(v.prev_root, 32), batchLen: v.batch_len,
  };
}

const leaves = merkle.entries.map((e) => fromHex(e.leaf_hash, 32));
const clusterOf = (c) => ({
  groupPublicKey: fromHex(signing.group_public_key, 48), n: c.n, f: c.f, policy: c.policy,
  granularityUs: c.granularity_us, genesisTime: c.genesis_time,
});

describe('merkle_sha256.json', () => {
  it('has both kinds of entry', () => {
    assert.deepEqual(new Set(merkle.entries.map((e) => e.kind)), new Set(['digest', 'tick']));
  });

  it('every entry encodes to its canonical bytes, decodes back, and hashes to its leaf hash', () => {
    for (const [i, v] of merkle.entries.entries()) {
      const bytes = encodeEntry(entryOf(v));
      assert.equal(toHex(bytes), v.bytes, `entry ${i}`);
      assert.deepEqual(decodeEntry(bytes), entryOf(v), `entry ${i}`);
      assert.equal(toHex(leafHash(bytes)), v.leaf_hash, `entry ${i}`);
    }
  });

  it('the root of every prefix, the empty tree included', () => {
    assert.equal(merkle.trees.length, 21);
    for (const t of merkle.trees) assert.equal(toHex(mth(leaves.slice(0, Number(t.size)))), t.root, `size ${t.size}`);
  });

  it('every inclusion proof is PATH(index, size) and folds to that size\'s root', () => {
    assert.equal(merkle.inclusion.length, 210);
    const roots = new Map(merkle.trees.map((t) => [t.size, t.root]));
    for (const p of merkle.inclusion) {
      const [m, n] = [Number(p.index), Number(p.size)];
      assert.deepEqual(path(m, leaves.slice(0, n)).map(toHex), p.proof, `PATH(${m}, ${n})`);
      const proof = p.proof.map((h) => fromHex(h, 32));
      const root = rootFromInclusion(leaves[m], p.index, p.size, proof);
      assert.equal(root && toHex(root), roots.get(p.size), `fold(${m}, ${n})`);
      if (proof.length > 0) {
        assert.equal(rootFromInclusion(leaves[m], p.index, p.size, proof.slice(1)), null, 'a short proof');
      }
      assert.equal(rootFromInclusion(leaves[m], p.index, p.size, [...proof, leaves[0]]), null, 'a long proof');
    }
  });

  it('every consistency proof is PROOF(first, second)', () => {
    assert.equal(merkle.consistency.length, 210);
    for (const p of merkle.consistency) {
      const [m, n] = [Number(p.first), Number(p.second)];
      assert.deepEqual(consistency(m, leaves.slice(0, n)).map(toHex), p.proof, `PROOF(${m}, ${n})`);
    }
  });

  it('the Certificate Transparency reference tree', () => {
    const ref = merkle.rfc6962_reference;
    const refLeaves = ref.leaves.map((l) => leafHash(fromHex(l)));
    for (const t of ref.roots) assert.equal(toHex(mth(refLeaves.slice(0, Number(t.size)))), t.root, `size ${t.size}`);
    assert.ok(ref.roots.at(-1).root.startsWith('5dc9da79'));
  });
});

describe('signing.json', () => {
  it('the trust anchor is belfry1: and the compressed G1 public key of the secret key', () => {
    assert.equal(signing.trust_anchor, `belfry1:${signing.group_public_key}`);
    assert.equal(toHex(parseAnchor(signing.trust_anchor)), signing.group_public_key);
    assert.equal(formatAnchor(parseAnchor(signing.trust_anchor)), signing.trust_anchor);
    const pk = bls12_381.longSignatures.getPublicKey(fromHex(signing.secret_key, 32));
    assert.equal(toHex(pk.toBytes(true)), signing.group_public_key);
  });

  it('the cluster id is SHA-256 of the cluster description', () => {
    assert.equal(signing.cluster_id_hash, 'SHA-256');
    assert.equal(toHex(clusterId(clusterOf(signing.cluster))), signing.cluster_id);
  });

  it('the signed tree head message and its signature', () => {
    const s = signing.sth;
    const message = treeHeadMessage(fromHex(signing.cluster_id, 32), s.tree_size, fromHex(s.root, 32), s.time);
    assert.equal(toHex(message), s.message);
    assert.equal(toHex(mth(leaves.slice(0, Number(s.tree_size)))), s.root);
    const pk = fromHex(signing.group_public_key, 48);
    assert.ok(verifySignature(fromHex(s.signature, 96), message, pk));
    // Deterministic IETF BLS: signing again with the test key gives the same bytes.
    const bls = bls12_381.longSignatures;
    const sig = bls.sign(bls.hash(message, DST), fromHex(signing.secret_key, 32));
    assert.equal(toHex(bls.Signature.toBytes(sig)), s.signature);
  });

  it('the DST is the NUL ciphersuite: the proof-of-possession DST does not verify', () => {
    const bls = bls12_381.longSignatures;
    const message = fromHex(signing.sth.message);
    const pk = fromHex(signing.group_public_key, 48);
    const sig = fromHex(signing.sth.signature, 96);
    assert.equal(DST, 'BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_');
    assert.equal(bls.verify(sig, bls.hash(message, 'BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_'), pk), false);
    assert.equal(verifySignature(sig, fromHex(signing.coin.message), pk), false, 'another message');
  });
});

describe('receipt.json', () => {
  const binary = fromHex(receipt.binary_hex);
  const jsonText = stringifyExact(receipt.json);

  it('the binary and JSON forms read to the same receipt and round-trip to each other', () => {
    const fromBinary = readReceipt(binary);
    const fromJson = readReceipt(jsonText);
    assert.equal(toHex(toBinary(fromJson)), receipt.binary_hex);
    assert.equal(toHex(toBinary(fromBinary)), receipt.binary_hex);
    assert.equal(stringifyExact(toJsonValue(fromBinary)), jsonText);
    assert.equal(toHex(fromBinary.entryBytes), merkle.entries[17].bytes);
  });

  it('both forms verify against the trust anchor, with every check passing', () => {
    for (const form of [binary, jsonText]) {
      const r = verifyReceipt(form, receipt.trust_anchor, { digest: receipt.json.entry.digest });
      assert.equal(r.ok, true, r.reason);
      assert.deepEqual(r.checks.map((c) => c.status), Array(7).fill('ok'));
      assert.equal(r.receipt.timeUtc, '2025-11-21T04:40:00.019000Z');
    }
  });

  it('a receipt for every entry of the size-20 head verifies, tick entries included', () => {
    for (const [i, v] of merkle.entries.entries()) {
      const p = merkle.inclusion.find((x) => x.index === BigInt(i) && x.size === 20n);
      const json = {
        ...receipt.json,
        entry: Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'bytes' && k !== 'leaf_hash')),
        leaf_index: BigInt(i),
        inclusion_proof: p.proof,
      };
      const r = verifyReceipt(stringifyExact(json), receipt.trust_anchor);
      assert.equal(r.ok, true, `entry ${i}: ${r.reason}`);
      const b = verifyReceipt(toBinary(readReceipt(stringifyExact(json))), receipt.trust_anchor);
      assert.equal(b.ok, true, `entry ${i} binary: ${b.reason}`);
    }
  });
});
