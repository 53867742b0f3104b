// Verifies a belfry receipt offline against the trust anchor alone. The checks
// run in a fixed order and the first that fails is named; nothing in the
// receipt is trusted, every hash is recomputed. A version-2 (aggregated)
// receipt's checks after `aggregation` are those of its inner version-1
// receipt, the cluster's receipt of the topmost gateway round's root.
//
//   format           the bytes are a receipt in either form (README table / JSON form;
//                    docs/gateway.md for version 2: 1-8 steps, proofs of at most 64 hashes)
//   anchor           the receipt's group public key is the trust anchor
//   cluster_id       cluster_id = SHA-256("belfry-cluster-v1" || ...) (and a JSON
//                    receipt's own cluster_id is that value)
//   digest           the document's SHA-256 is the entry's digest (version 2: the
//                    receipt's digest) when a document or digest is given; skipped otherwise
//   aggregation      version 2 only: the chain of gateway paths from the digest leads to
//                    the digest the inner receipt's entry carries
//   entry            the entry's canonical bytes round-trip (no reserved flag bits)
//   inclusion_proof  leaf_index < tree_size and the proof folds the leaf hash into root
//   signature        the BLS signature on the tree head message verifies under the anchor
import { bls12_381 } from '@noble/curves/bls12-381.js';
import { equalBytes, fromHex, toHex } from './bytes.mjs';
import { aggregateLeafHash, leafHash, rootFromInclusion } from './merkle.mjs';
import {
  AGGREGATED_VERSION, ReceiptError, clusterId, decodeEntry, encodeEntry, readReceipt, treeHeadMessage,
} from './receipt.mjs';

/** The IETF ciphersuite belfry signs with: keys in G1, signatures in G2. */
export const DST = 'BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_';
/** Every check, in order; `aggregation` is run for version-2 (aggregated) receipts only. */
export const CHECKS = ['format', 'anchor', 'cluster_id', 'digest', 'aggregation', 'entry', 'inclusion_proof', 'signature'];

/** The checks of a receipt of `version` (1 or 2), in order. */
export function checksFor(version) {
  return version === AGGREGATED_VERSION ? CHECKS : CHECKS.filter((c) => c !== 'aggregation');
}
const ANCHOR_PREFIX = 'belfry1:';

/** A trust anchor that cannot be used: a usage error, not a verdict on a receipt. */
export class AnchorError extends Error {}

/** The group public key of `belfry1:<96 hex>`; it must be a valid G1 point. */
export function parseAnchor(text) {
  const s = String(text).trim();
  if (!s.startsWith(ANCHOR_PREFIX) || !/^[0-9a-fA-F]{96}$/.test(s.slice(ANCHOR_PREFIX.length))) {
    throw new AnchorError(`trust anchor must be belfry1: followed by 96 hex digits, got ${JSON.stringify(s.slice(0, 120))}`);
  }
  const key = fromHex(s.slice(ANCHOR_PREFIX.length), 48, 'trust anchor');
  if (!validG1(key)) throw new AnchorError('trust anchor is not a valid compressed BLS12-381 G1 point');
  return key;
}

/** The trust anchor named by a cluster.toml's `trust_anchor = "belfry1:…"` line. */
export function anchorFromClusterToml(text) {
  const m = /^\s*trust_anchor\s*=\s*"([^"]*)"\s*(#.*)?$/m.exec(String(text));
  if (!m) throw new AnchorError('no trust_anchor = "belfry1:…" line in the cluster file');
  return m[1];
}

/** Formats the anchor for display: `belfry1:<96 hex>`. */
export function formatAnchor(key) {
  return ANCHOR_PREFIX + toHex(key);
}

function validG1(bytes) {
  try {
    bls12_381.G1.Point.fromBytes(bytes).assertValidity();
    return true;
  } catch {
    return false;
  }
}

/** µs since the epoch (BigInt) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
export function utcMicros(us) {
  const ms = us / 1000n;
  if (ms > 8640000000000000n) return `${us} µs since the epoch`;
  const iso = new Date(Number(ms)).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  const frac = (us % 1000000n).toString().padStart(6, '0');
  return `${iso.slice(0, 19)}.${frac}Z`;
}

/**
 * Verifies `receipt` (bytes of either form, or JSON text) against `anchor`
 * (`belfry1:…` text or the 48 key bytes). `options.digest` (32 bytes or 64
 * hex) is the document's SHA-256 the entry must carry.
 *
 * Returns `{ ok, failed, reason, checks: [{ check, status, detail }], receipt }`:
 * `failed` names the first failing check (null when ok), `status` is ok, fail,
 * skipped or not run, and `receipt` (when it could be read) summarises what it
 * proves: version, digest, leafIndex, treeSize, time (µs, BigInt), timeUtc
 * and gatewayLayers (0 for version 1; for version 2 the number of gateway
 * steps, and leafIndex, treeSize and time are the inner receipt's: the time
 * proved is the cluster's signed time of the topmost root). `checks` lists
 * the checks of the receipt's version: seven for version 1, eight (with
 * `aggregation`) for version 2.
 * Throws AnchorError when the anchor itself is unusable.
 */
export function verifyReceipt(receipt, anchor, options = {}) {
  const anchorKey = typeof anchor === 'string' ? parseAnchor(anchor) : anchor;
  const expected = options.digest === undefined || options.digest === null
    ? null
    : typeof options.digest === 'string' ? fromHex(options.digest.trim(), 32, 'digest') : options.digest;
  const result = { ok: false, failed: null, reason: '', checks: [], receipt: null };
  const row = (check) => result.checks.find((c) => c.check === check);
  const pass = (check, detail) => Object.assign(row(check), { status: 'ok', detail });
  const fail = (check, reason) => {
    Object.assign(row(check), { status: 'fail', detail: reason });
    return Object.assign(result, { failed: check, reason });
  };
  const listChecks = (version) => {
    result.checks = checksFor(version).map((check) => ({ check, status: 'not run', detail: '' }));
  };

  let top;
  try {
    top = readReceipt(receipt);
  } catch (e) {
    if (e instanceof ReceiptError) {
      listChecks(e.version);
      return fail(e.check, e.message);
    }
    throw e;
  }
  listChecks(top.version);
  const aggregated = top.version === AGGREGATED_VERSION;
  // From here on `r` is the cluster's version-1 receipt: the receipt itself,
  // or the inner receipt of an aggregated one.
  const r = aggregated ? top.inner : top;
  if (!validG1(r.cluster.groupPublicKey)) {
    return fail('format', 'the receipt\'s group public key is not a valid compressed G1 point');
  }
  const form = r.form === 'binary' ? 'binary .belfry' : 'JSON';
  pass('format', aggregated
    ? `${form} receipt, version 2: ${top.steps.length} gateway step${top.steps.length === 1 ? '' : 's'}, then the cluster's version-1 receipt`
    : `${form} receipt, version 1`);
  result.receipt = summary(top);

  if (!equalBytes(r.cluster.groupPublicKey, anchorKey)) {
    return fail('anchor', `the receipt is signed for ${formatAnchor(r.cluster.groupPublicKey)}, not the trust anchor ${formatAnchor(anchorKey)}`);
  }
  pass('anchor', 'the receipt\'s group public key is the trust anchor');

  const cid = clusterId(r.cluster);
  if (r.claimedClusterId !== null && !equalBytes(r.claimedClusterId, cid)) {
    return fail('cluster_id', `cluster_id ${toHex(r.claimedClusterId)} does not match the cluster description (computes to ${toHex(cid)})`);
  }
  pass('cluster_id', `${toHex(cid)} (n ${r.cluster.n}, f ${r.cluster.f}, policy ${r.cluster.policy})`);

  if (expected === null) {
    Object.assign(row('digest'), { status: 'skipped', detail: 'no document or digest given' });
  } else if (aggregated) {
    if (!equalBytes(top.digest, expected)) {
      return fail('digest', `the content's SHA-256 is ${toHex(expected)}, the receipt is for ${toHex(top.digest)}`);
    }
    pass('digest', `SHA-256 ${toHex(expected)}`);
  } else if (r.entry.kind !== 'digest') {
    return fail('digest', 'the receipt is for a Tick entry, not a digest');
  } else if (!equalBytes(r.entry.digest, expected)) {
    return fail('digest', `the content's SHA-256 is ${toHex(expected)}, the receipt is for ${toHex(r.entry.digest)}`);
  } else {
    pass('digest', `SHA-256 ${toHex(expected)}`);
  }

  if (aggregated) {
    // h = digest; per step, bottom first: h = the root the step's proof leads
    // to from SHA-256(0x00 || "belfry/aggregate" || h). The cluster must
    // have logged h as a digest entry.
    let h = top.digest;
    for (const [i, s] of top.steps.entries()) {
      if (s.leafIndex >= s.treeSize) {
        return fail('aggregation', `aggregation step ${i}: leaf index ${s.leafIndex} is not in a round of tree size ${s.treeSize}`);
      }
      const root = rootFromInclusion(aggregateLeafHash(h), s.leafIndex, s.treeSize, s.proof);
      if (root === null) {
        return fail('aggregation', `aggregation step ${i}: a proof of ${s.proof.length} hashes does not fit leaf ${s.leafIndex} of a round of tree size ${s.treeSize}`);
      }
      h = root;
    }
    if (r.entry.kind !== 'digest') {
      return fail('aggregation', `the chain from the digest leads to ${toHex(h)}, but the cluster's receipt is for a Tick entry`);
    }
    if (!equalBytes(r.entry.digest, h)) {
      return fail('aggregation', `the chain from the digest leads to ${toHex(h)}, the cluster's receipt is for ${toHex(r.entry.digest)}`);
    }
    const n = top.steps.length;
    pass('aggregation', `${n} gateway layer${n === 1 ? '' : 's'}: the chain from the digest leads to ${toHex(h)}, the digest the cluster logged`);
  }

  // The binary form carries the canonical bytes as they are: they must decode
  // and re-encode to themselves. The JSON form's fields are encoded.
  const entryBytes = r.entryBytes ?? encodeEntry(r.entry);
  if (r.entry.problem !== undefined) return fail('entry', `entry bytes are not canonical: ${r.entry.problem}`);
  if (!equalBytes(encodeEntry(decodeEntry(entryBytes)), entryBytes)) {
    return fail('entry', 'entry bytes are not canonical');
  }
  pass('entry', `${r.entry.kind} entry, ${entryBytes.length} bytes`);

  if (r.leafIndex >= r.treeSize) {
    return fail('inclusion_proof', `leaf index ${r.leafIndex} is not in a tree of size ${r.treeSize}`);
  }
  const root = rootFromInclusion(leafHash(entryBytes), r.leafIndex, r.treeSize, r.inclusionProof);
  if (root === null || !equalBytes(root, r.root)) {
    return fail('inclusion_proof', 'the inclusion proof does not lead from the entry to the root');
  }
  pass('inclusion_proof', `leaf ${r.leafIndex} of tree size ${r.treeSize}, ${r.inclusionProof.length} proof hashes lead to root ${toHex(r.root)}`);

  const message = treeHeadMessage(cid, r.treeSize, r.root, r.time);
  if (!verifySignature(r.signature, message, anchorKey)) {
    return fail('signature', 'the tree head signature does not verify under the trust anchor');
  }
  pass('signature', `BLS12-381 (${DST}) on the tree head of size ${r.treeSize}, signed ${utcMicros(r.time)}`);
  return Object.assign(result, { ok: true });
}

/** IETF BLS verify, min-pk; a signature that is not a G2 point does not verify. */
export function verifySignature(signature, message, publicKey) {
  const bls = bls12_381.longSignatures;
  try {
    return bls.verify(signature, bls.hash(message, DST), publicKey);
  } catch {
    return false;
  }
}

function summary(top) {
  const aggregated = top.version === AGGREGATED_VERSION;
  const r = aggregated ? top.inner : top;
  return {
    form: r.form,
    version: top.version,
    kind: aggregated ? 'digest' : r.entry.kind,
    digest: aggregated ? toHex(top.digest) : r.entry.kind === 'digest' ? toHex(r.entry.digest) : null,
    // What the cluster logged: the topmost round's root for version 2.
    loggedDigest: r.entry.kind === 'digest' ? toHex(r.entry.digest) : null,
    gatewayLayers: aggregated ? top.steps.length : 0,
    leafIndex: r.leafIndex,
    treeSize: r.treeSize,
    time: r.time,
    timeUtc: utcMicros(r.time),
  };
}
