// The RFC 9162 §2.1 definitions (MTH, PATH, PROOF) over leaf hashes, written
// straight from the RFC to reproduce the committed vectors. The verifier only
// folds proofs; building them is test code.
import { sha256 } from '@noble/hashes/sha2.js';
import { nodeHash } from '../lib/merkle.mjs';

function split(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[n]) given the leaf hashes of D. */
export function mth(leaves) {
  if (leaves.length === 0) return sha256(new Uint8Array(0));
  if (leaves.length === 1) return leaves[0];
  const k = split(leaves.length);
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** PATH(m, D[n]): the inclusion proof of leaf m. */
export function path(m, leaves) {
  if (leaves.length <= 1) return [];
  const k = split(leaves.length);
  return m < k
    ? [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))]
    : [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}

/** PROOF(m, D[n]): the consistency proof from size m. */
export function consistency(m, leaves) {
  return subproof(m, leaves, true);
}

function subproof(m, leaves, whole) {
  if (m === leaves.length) return whole ? [] : [mth(leaves)];
  const k = split(leaves.length);
  return m <= k
    ? [...subproof(m, leaves.slice(0, k), whole), mth(leaves.slice(k))]
    : [...subproof(m - k, leaves.slice(k), false), mth(leaves.slice(0, k))];
}
