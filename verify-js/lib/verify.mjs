// Verifies a belfry receipt offline against the trust anchor alone. The checks
// run in a fixed order and the first that fails is named; nothing in the
// receipt is trusted, every hash is recomputed.
//
//   format           the bytes are a receipt in either form (README table / JSON form)
//   anchor           the receipt's group public key is the trust anchor
//   cluster_id       cluster_id = SHA-256("belfry-cluster-v1" || ...) (and a JSON
//                    receipt's own cluster_id is that value)
//   digest           the document's SHA-256 is the entry's digest (when a document
//                    or digest is given; skipped otherwise)
//   entry            the entry's canonical bytes round-trip (no reserved flag bits)
//   inclusion_proof  leaf_index < tree_size and the proof folds the leaf hash into root
//   signature        the BLS signature on the tree head message verifies under the anchor
import { bls12_381 } from '@noble/curves/bls12-381.js';
import { equalBytes, fromHex, toHex } from './bytes.mjs';
import { leafHash, rootFromInclusion } from './merkle.mjs';
import {
  ReceiptError, clusterId, decodeEntry, encodeEntry, readReceipt, treeHeadMessage,
} from './receipt.mjs';

/** The IETF ciphersuite belfry signs with: keys in G1, signatures in G2. */
export const DST = 'BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_';
export const CHECKS = ['format', 'anchor', 'cluster_id', 'digest', 'entry', 'inclusion_proof', 'signature'];
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
 * proves: digest, leafIndex, treeSize, time (µs, BigInt) and timeUtc.
 * Throws AnchorError when the anchor itself is unusable.
 */
export function verifyReceipt(receipt, anchor, options = {}) {
  const anchorKey = typeof anchor === 'string' ? parseAnchor(anchor) : anchor;
  const expected = options.digest === undefined || options.digest === null
    ? null
    : typeof options.digest === 'string' ? fromHex(options.digest.trim(), 32, 'digest') : options.digest;
  const checks = CHECKS.map((check) => ({ check, status: 'not run', detail: '' }));
  const result = { ok: false, failed: null, reason: '', checks, receipt: null };
  const pass = (check, detail) => Object.assign(checks[CHECKS.indexOf(check)], { status: 'ok', detail });
  const fail = (check, reason) => {
    Object.assign(checks[CHECKS.indexOf(check)], { status: 'fail', detail: reason });
    return Object.assign(result, { failed: check, reason });
  };

  let r;
  try {
    r = readReceipt(receipt);
  } catch (e) {
    if (e instanceof ReceiptError) return fail(e.check, e.message);
    throw e;
  }
  if (!validG1(r.cluster.groupPublicKey)) {
    return fail('format', 'the receipt\'s group public key is not a valid compressed G1 point');
  }
  pass('format', `${r.form === 'binary' ? 'binary .belfry' : 'JSON'} receipt, version 1`);
  result.receipt = summary(r);

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
    Object.assign(checks[CHECKS.indexOf('digest')], { status: 'skipped', detail: 'no document or digest given' });
  } else if (r.entry.kind !== 'digest') {
    return fail('digest', 'the receipt is for a Tick entry, not a digest');
  } else if (!equalBytes(r.entry.digest, expected)) {
    return fail('digest', `the content's SHA-256 is ${toHex(expected)}, the receipt is for ${toHex(r.entry.digest)}`);
  } else {
    pass('digest', `SHA-256 ${toHex(expected)}`);
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

function summary(r) {
  return {
    form: r.form,
    kind: r.entry.kind,
    digest: r.entry.kind === 'digest' ? toHex(r.entry.digest) : null,
    leafIndex: r.leafIndex,
    treeSize: r.treeSize,
    time: r.time,
    timeUtc: utcMicros(r.time),
  };
}
