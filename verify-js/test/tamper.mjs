// Tampered copies of a real receipt, each with the check that must name the
// failure. Shared by the command-line tests and the browser test.
import { parseJson, readReceipt, stringifyExact } from '../lib/index.mjs';

const ENTRY_AT = 74; // README table: the entry starts at offset 74

function flip(bytes, at, xor = 0x01) {
  const out = bytes.slice();
  out[at] ^= xor;
  return out;
}

function setU64(bytes, at, v) {
  const out = bytes.slice();
  new DataView(out.buffer, out.byteOffset).setBigUint64(at, v);
  return out;
}

/** Tampered binary receipts derived from `bytes` (a digest entry's receipt). */
export function tamperedBinary(bytes, otherSignature, otherKey) {
  const r = readReceipt(bytes);
  const entryEnd = ENTRY_AT + 52;
  const [indexAt, sizeAt, proofAt] = [entryEnd, entryEnd + 8, entryEnd + 17];
  const sigAt = bytes.length - 96;
  const timeAt = sigAt - 8;
  const rootAt = timeAt - 32;
  return [
    { name: 'entry: witnessed_at changed', bytes: flip(bytes, ENTRY_AT + 40), check: 'inclusion_proof' },
    { name: 'entry: digest changed', bytes: flip(bytes, ENTRY_AT + 1), check: 'digest' }, // with its document
    { name: 'entry: reserved flag bit set', bytes: flip(bytes, ENTRY_AT + 51, 0x02), check: 'entry' },
    { name: 'entry: unknown kind byte', bytes: flip(bytes, ENTRY_AT, 0x06), check: 'entry' },
    { name: 'proof: a hash changed', bytes: flip(bytes, proofAt + 5), check: 'inclusion_proof' },
    // The proof of leaf 23 has the same shape in trees of 26 and 27 leaves, so
    // it still folds to the root: the signature is what binds the tree size.
    { name: 'tree size: one more', bytes: setU64(bytes, sizeAt, r.treeSize + 1n), check: 'signature' },
    { name: 'tree size: doubled', bytes: setU64(bytes, sizeAt, r.treeSize * 2n), check: 'inclusion_proof' },
    { name: 'tree size: not above the leaf index', bytes: setU64(bytes, sizeAt, r.leafIndex), check: 'inclusion_proof' },
    { name: 'leaf index: another', bytes: setU64(bytes, indexAt, r.leafIndex - 1n), check: 'inclusion_proof' },
    { name: 'root changed', bytes: flip(bytes, rootAt + 31), check: 'inclusion_proof' },
    { name: 'time changed', bytes: flip(bytes, timeAt + 7), check: 'signature' },
    { name: 'signature: a byte changed', bytes: flip(bytes, sigAt + 50), check: 'signature' },
    { name: 'signature: another valid signature', bytes: Uint8Array.from([...bytes.subarray(0, sigAt), ...otherSignature]), check: 'signature' },
    { name: 'cluster: n changed', bytes: flip(bytes, 54, 0x02), check: 'signature' },
    { name: 'group key: another cluster\'s', bytes: Uint8Array.from([...bytes.subarray(0, 5), ...otherKey, ...bytes.subarray(53)]), check: 'anchor' },
    { name: 'truncated', bytes: bytes.subarray(0, bytes.length - 1), check: 'format' },
    { name: 'a trailing byte', bytes: Uint8Array.from([...bytes, 0]), check: 'format' },
    { name: 'version 2', bytes: flip(bytes, 4, 0x03), check: 'format' },
    { name: 'not a receipt', bytes: new TextEncoder().encode('hello'), check: 'format' },
  ];
}

/** Tampered JSON receipts derived from JSON text. */
export function tamperedJson(text, otherKey) {
  const edit = (fn) => {
    const v = parseJson(text);
    fn(v);
    return stringifyExact(v, 2);
  };
  return [
    { name: 'json: cluster_id changed', text: edit((v) => { v.cluster_id = v.cluster_id.replace(/^./, (c) => (c === '0' ? '1' : '0')); }), check: 'cluster_id' },
    { name: 'json: cluster.n changed', text: edit((v) => { v.cluster.n += 3n; }), check: 'cluster_id' },
    // The documented order puts anchor before cluster_id (belfry verify too).
    { name: 'json: group key swapped', text: edit((v) => { v.cluster.group_public_key = otherKey; }), check: 'anchor' },
    { name: 'json: an unknown field', text: edit((v) => { v.comment = 'trust me'; }), check: 'format' },
    { name: 'json: a missing field', text: edit((v) => { delete v.root; }), check: 'format' },
    { name: 'json: entry.key changed', text: edit((v) => { v.entry.key += 1n; }), check: 'inclusion_proof' },
    { name: 'json: entry.late changed', text: edit((v) => { v.entry.late = !v.entry.late; }), check: 'inclusion_proof' },
    { name: 'json: a proof hash dropped', text: edit((v) => { v.inclusion_proof.pop(); }), check: 'inclusion_proof' },
    { name: 'json: tree_size one more', text: edit((v) => { v.tree_size += 1n; }), check: 'signature' },
    { name: 'json: tree_size doubled', text: edit((v) => { v.tree_size *= 2n; }), check: 'inclusion_proof' },
    { name: 'json: time changed', text: edit((v) => { v.time -= 1n; }), check: 'signature' },
    { name: 'json: signature changed', text: edit((v) => { v.signature = v.signature.slice(0, 100) + (v.signature[100] === 'a' ? 'b' : 'a') + v.signature.slice(101); }), check: 'signature' },
  ];
}
