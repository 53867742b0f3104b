// The RFC 9162 (Certificate Transparency) Merkle tree over SHA-256, as far as a
// receipt verifier needs it: the leaf and node hashes (the log's, and a
// gateway tree's leaves) and the root an inclusion proof leads to (RFC 9162
// §2.1.3.2).
import { sha256 } from '@noble/hashes/sha2.js';
import { concat } from './bytes.mjs';

/** `SHA-256(0x00 || entry)`. */
export function leafHash(entryBytes) {
  return sha256(concat(Uint8Array.of(0x00), entryBytes));
}

/** The 16 ASCII bytes that tag a gateway tree's leaves (docs/gateway.md). */
export const AGGREGATE_LEAF_TAG = 'belfry/aggregate';

/**
 * A gateway tree's leaf hash of a digest: `SHA-256(0x00 || "belfry/aggregate"
 * || digest)`. A log entry starts with its kind byte (0x01, 0x02), never `b`,
 * so a gateway leaf is never a log leaf.
 */
export function aggregateLeafHash(digest) {
  return sha256(concat(Uint8Array.of(0x00), AGGREGATE_LEAF_TAG, digest));
}

/** `SHA-256(0x01 || left || right)`. */
export function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(0x01), left, right));
}

/**
 * The root that `proof` leads to from `leaf` at `index` in a tree of `size`
 * leaves (BigInt), or null when the proof has the wrong shape for that
 * position (too short, too long, or the index outside the tree).
 */
export function rootFromInclusion(leaf, index, size, proof) {
  if (index >= size) return null;
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return null;
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : null;
}
