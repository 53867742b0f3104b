// The two forms of a belfry receipt (README "Receipts", docs/design.md §3.7)
// read into one plain object, and the byte strings a verifier recomputes from
// it: the entry's canonical bytes, the cluster id and the signed tree head
// message. Version 1 is the cluster's receipt; version 2 (docs/gateway.md) is
// an aggregated receipt: the gateway steps from a client's digest to the root
// the cluster logged, then the cluster's version-1 receipt of that root.
// Written from the documents, not from the Rust code.
import { sha256 } from '@noble/hashes/sha2.js';
import { Reader, concat, fromHex, toHex, uintBE } from './bytes.mjs';
import { parseJson } from './json.mjs';

export const MAGIC = 'BLFY';
export const VERSION = 1;
/** The version of an aggregated receipt (docs/gateway.md). */
export const AGGREGATED_VERSION = 2;
/** Most gateway layers in one aggregated receipt. */
export const MAX_AGGREGATION_STEPS = 8;
/** Longest inclusion proof: 64 levels cover any u64 tree size. */
export const MAX_PROOF_LEN = 64;
export const DIGEST_ENTRY_LEN = 52;
export const TICK_ENTRY_LEN = 213;
const POLICIES = ['lamport', 'clock'];

/**
 * A receipt that cannot be read, or whose entry is not canonical. `version`
 * is the version the receipt announced, when it got that far (so that a
 * verifier lists the checks of that version).
 */
export class ReceiptError extends Error {
  constructor(check, message, version = null) {
    super(message);
    this.check = check;
    this.version = version;
  }
}

const format = (why) => new ReceiptError('format', why);

/**
 * Reads either form of either version: bytes starting with "BLFY" are binary
 * (version 2 when the byte after the magic is 2), anything else JSON text
 * (version 2 when its `version` is 2).
 */
export function readReceipt(input) {
  const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : input;
  const magic = new TextEncoder().encode(MAGIC);
  if (bytes.length >= 4 && magic.every((b, i) => bytes[i] === b)) {
    return bytes[4] === AGGREGATED_VERSION ? readBinaryAggregated(bytes) : readBinary(bytes);
  }
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw format('neither a binary receipt (no BLFY magic) nor UTF-8 JSON');
  }
  return readJsonText(text);
}

/** The binary `.belfry` form of version 1: every length checked, no trailing bytes. */
export function readBinary(bytes) {
  const r = new Reader(bytes);
  try {
    if (toHex(r.take(4, 'magic')) !== toHex(new TextEncoder().encode(MAGIC))) throw format('no BLFY magic');
    const version = r.uint(1, 'version');
    if (version !== BigInt(VERSION)) throw format(`receipt version ${version}, this verifier reads 1 and 2`);
    const groupPublicKey = r.take(48, 'group public key');
    const n = r.uint(2, 'n');
    const f = r.uint(2, 'f');
    const policyByte = Number(r.uint(1, 'policy'));
    const granularityUs = r.uint(8, 'granularity_us');
    const genesisTime = r.uint(8, 'genesis_time');
    const kind = r.peek();
    let entryLen;
    if (kind === 0x01) entryLen = DIGEST_ENTRY_LEN;
    else if (kind === 0x02) entryLen = TICK_ENTRY_LEN;
    else if (kind === undefined) throw format('truncated before the entry');
    else throw new ReceiptError('entry', `unknown entry kind byte 0x${kind.toString(16).padStart(2, '0')} (0x01 digest, 0x02 tick)`);
    const entryBytes = r.take(entryLen, 'entry').slice();
    const leafIndex = r.uint(8, 'leaf_index');
    const treeSize = r.uint(8, 'tree_size');
    const proofLen = Number(r.uint(1, 'proof length'));
    if (proofLen > MAX_PROOF_LEN) throw format(`inclusion proof of ${proofLen} hashes (at most ${MAX_PROOF_LEN})`);
    const inclusionProof = [];
    for (let i = 0; i < proofLen; i++) inclusionProof.push(r.take(32, `proof hash ${i}`).slice());
    const root = r.take(32, 'root').slice();
    const time = r.uint(8, 'time');
    const signature = r.take(96, 'signature').slice();
    if (r.remaining() !== 0) throw format(`${r.remaining()} trailing bytes after the signature`);
    const cluster = {
      groupPublicKey: groupPublicKey.slice(),
      n,
      f,
      policy: policyName(policyByte),
      granularityUs,
      genesisTime,
    };
    checkPolicy(cluster);
    return {
      form: 'binary',
      version: VERSION,
      cluster,
      claimedClusterId: null,
      entry: decodeEntry(entryBytes),
      entryBytes,
      leafIndex,
      treeSize,
      inclusionProof,
      root,
      time,
      signature,
    };
  } catch (e) {
    if (e instanceof ReceiptError) throw e;
    throw format(e.message);
  }
}

function policyName(byte) {
  if (byte >= POLICIES.length) throw format(`unknown policy byte ${byte} (0 lamport, 1 clock)`);
  return POLICIES[byte];
}

function checkPolicy(c) {
  if (c.policy === 'lamport' && c.granularityUs !== 0n) {
    throw format(`policy lamport with granularity_us ${c.granularityUs} (must be 0)`);
  }
  if (c.policy === 'clock' && c.granularityUs === 0n) {
    throw format('policy clock with granularity_us 0 (must be positive)');
  }
}

/**
 * The entry's fields from its canonical bytes. A byte string that does not
 * round-trip (reserved flag bits set) is kept with `problem` set, so that the
 * `entry` check can name it in its turn.
 */
export function decodeEntry(b) {
  const r = new Reader(b);
  const kind = Number(r.uint(1, 'kind'));
  if (kind === 0x01) {
    const digest = r.take(32, 'digest').slice();
    const witnessedAt = r.uint(8, 'witnessed_at');
    const key = r.uint(8, 'key');
    const witnesses = r.uint(2, 'witnesses');
    const flags = Number(r.uint(1, 'flags'));
    const entry = { kind: 'digest', digest, witnessedAt, key, witnesses, late: (flags & 1) === 1 };
    if ((flags & ~1) !== 0) entry.problem = `reserved flag bits set: 0x${flags.toString(16).padStart(2, '0')}`;
    return entry;
  }
  return {
    kind: 'tick',
    wave: r.uint(8, 'wave'),
    time: r.uint(8, 'time'),
    coinSig: r.take(96, 'coin_sig').slice(),
    leader: r.take(32, 'leader').slice(),
    stateRoot: r.take(32, 'state_root').slice(),
    prevRoot: r.take(32, 'prev_root').slice(),
    batchLen: r.uint(4, 'batch_len'),
  };
}

/** The entry's canonical bytes, rebuilt from its fields. */
export function encodeEntry(e) {
  if (e.kind === 'digest') {
    return concat(
      Uint8Array.of(0x01),
      e.digest,
      uintBE(e.witnessedAt, 8),
      uintBE(e.key, 8),
      uintBE(e.witnesses, 2),
      Uint8Array.of(e.late ? 1 : 0),
    );
  }
  return concat(
    Uint8Array.of(0x02),
    uintBE(e.wave, 8),
    uintBE(e.time, 8),
    e.coinSig,
    e.leader,
    e.stateRoot,
    e.prevRoot,
    uintBE(e.batchLen, 4),
  );
}

/** `SHA-256("belfry-cluster-v1" || key[48] || n u16 || f u16 || policy u8 || granularity_us u64 || genesis_time u64)`. */
export function clusterId(c) {
  return sha256(
    concat(
      'belfry-cluster-v1',
      c.groupPublicKey,
      uintBE(c.n, 2),
      uintBE(c.f, 2),
      Uint8Array.of(POLICIES.indexOf(c.policy)),
      uintBE(c.granularityUs, 8),
      uintBE(c.genesisTime, 8),
    ),
  );
}

/** `"belfry-sth-v1" || cluster_id[32] || tree_size u64 || root[32] || time u64`. */
export function treeHeadMessage(clusterIdBytes, treeSize, root, time) {
  return concat('belfry-sth-v1', clusterIdBytes, uintBE(treeSize, 8), root, uintBE(time, 8));
}

// ---- the JSON form: names fixed by docs/design.md §3.7, unknown fields refused

/** Reads the JSON form from text. */
export function readJsonText(text) {
  let doc;
  try {
    doc = parseJson(text);
  } catch (e) {
    throw format(e.message);
  }
  return readJson(doc);
}

/** Reads the JSON form of either version from a value parsed by `parseJson` (integers as BigInt). */
export function readJson(doc) {
  if (doc !== null && typeof doc === 'object' && !Array.isArray(doc) && doc.version === BigInt(AGGREGATED_VERSION)) {
    return readJsonAggregated(doc);
  }
  return readJsonV1(doc);
}

function readJsonV1(doc) {
  try {
    const j = fields(doc, 'receipt', [
      'version', 'cluster', 'cluster_id', 'entry', 'leaf_index', 'tree_size',
      'inclusion_proof', 'root', 'time', 'signature',
    ]);
    const version = uint(j.version, 'version', 8);
    if (version !== BigInt(VERSION)) throw format(`receipt version ${version}, this verifier reads 1 and 2`);
    const c = fields(j.cluster, 'cluster', ['group_public_key', 'n', 'f', 'policy', 'granularity_us', 'genesis_time']);
    if (!POLICIES.includes(c.policy)) throw format(`cluster.policy: ${JSON.stringify(c.policy)} (lamport or clock)`);
    const cluster = {
      groupPublicKey: fromHex(c.group_public_key, 48, 'cluster.group_public_key'),
      n: uint(c.n, 'cluster.n', 2),
      f: uint(c.f, 'cluster.f', 2),
      policy: c.policy,
      granularityUs: uint(c.granularity_us, 'cluster.granularity_us', 8),
      genesisTime: uint(c.genesis_time, 'cluster.genesis_time', 8),
    };
    checkPolicy(cluster);
    if (!Array.isArray(j.inclusion_proof)) throw format('inclusion_proof: not an array');
    if (j.inclusion_proof.length > MAX_PROOF_LEN) {
      throw format(`inclusion proof of ${j.inclusion_proof.length} hashes (at most ${MAX_PROOF_LEN})`);
    }
    return {
      form: 'json',
      version: VERSION,
      cluster,
      claimedClusterId: fromHex(j.cluster_id, 32, 'cluster_id'),
      entry: readJsonEntry(j.entry),
      entryBytes: null,
      leafIndex: uint(j.leaf_index, 'leaf_index', 8),
      treeSize: uint(j.tree_size, 'tree_size', 8),
      inclusionProof: j.inclusion_proof.map((h, i) => fromHex(h, 32, `inclusion_proof[${i}]`)),
      root: fromHex(j.root, 32, 'root'),
      time: uint(j.time, 'time', 8),
      signature: fromHex(j.signature, 96, 'signature'),
    };
  } catch (e) {
    if (e instanceof ReceiptError) throw e;
    throw format(e.message);
  }
}

function readJsonEntry(v) {
  const kind = v !== null && typeof v === 'object' ? v.kind : undefined;
  if (kind === 'digest') {
    const e = fields(v, 'entry', ['kind', 'digest', 'witnessed_at', 'key', 'witnesses', 'late']);
    if (typeof e.late !== 'boolean') throw format('entry.late: not true or false');
    return {
      kind,
      digest: fromHex(e.digest, 32, 'entry.digest'),
      witnessedAt: uint(e.witnessed_at, 'entry.witnessed_at', 8),
      key: uint(e.key, 'entry.key', 8),
      witnesses: uint(e.witnesses, 'entry.witnesses', 2),
      late: e.late,
    };
  }
  if (kind === 'tick') {
    const e = fields(v, 'entry', ['kind', 'wave', 'time', 'coin_sig', 'leader', 'state_root', 'prev_root', 'batch_len']);
    return {
      kind,
      wave: uint(e.wave, 'entry.wave', 8),
      time: uint(e.time, 'entry.time', 8),
      coinSig: fromHex(e.coin_sig, 96, 'entry.coin_sig'),
      leader: fromHex(e.leader, 32, 'entry.leader'),
      stateRoot: fromHex(e.state_root, 32, 'entry.state_root'),
      prevRoot: fromHex(e.prev_root, 32, 'entry.prev_root'),
      batchLen: uint(e.batch_len, 'entry.batch_len', 4),
    };
  }
  throw format(`entry.kind: ${JSON.stringify(kind)} (digest or tick)`);
}

/** The object's fields, exactly `names`: none missing, none unknown. */
function fields(v, what, names) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw format(`${what}: not an object`);
  for (const k of Object.keys(v)) {
    if (!names.includes(k)) throw format(`${what}: unknown field ${JSON.stringify(k)}`);
  }
  for (const k of names) {
    if (!(k in v)) throw format(`${what}: missing field ${JSON.stringify(k)}`);
  }
  return v;
}

function uint(v, what, widthBytes) {
  if (typeof v !== 'bigint' || v < 0n || v >= 1n << BigInt(8 * widthBytes)) {
    throw format(`${what}: not an integer in 0..2^${8 * widthBytes}`);
  }
  return v;
}

// ---- version 2: aggregated receipts (docs/gateway.md)
//
// An aggregated receipt reads into { form, version: 2, digest, steps:
// [{ leafIndex, treeSize, proof }] (bottom, the client's gateway, first),
// inner } where `inner` is the cluster's version-1 receipt of the topmost
// round root, read as above.

const format2 = (why) => new ReceiptError('format', why, AGGREGATED_VERSION);

/** A failure inside the inner receipt, named as such; its check is kept (`entry` stays `entry`). */
function innerError(e) {
  const why = e instanceof ReceiptError || e instanceof Error ? e.message : String(e);
  return new ReceiptError(e instanceof ReceiptError ? e.check : 'format', `inner receipt: ${why}`, AGGREGATED_VERSION);
}

/**
 * The binary form of version 2: `"BLFY" || 0x02 || digest[32] || steps u8
 * (1-8) || (leaf_index u64 || tree_size u64 || proof_len u8 (<= 64) ||
 * proof)* ||` the inner receipt's binary form (`"BLFY" || 0x01 || ...`, to
 * the end of the bytes).
 */
export function readBinaryAggregated(bytes) {
  const r = new Reader(bytes);
  let steps;
  let digest;
  try {
    if (toHex(r.take(4, 'magic')) !== toHex(new TextEncoder().encode(MAGIC))) throw format2('no BLFY magic');
    const version = r.uint(1, 'version');
    if (version !== BigInt(AGGREGATED_VERSION)) throw format2(`receipt version ${version}, expected ${AGGREGATED_VERSION}`);
    digest = r.take(32, 'digest').slice();
    const count = Number(r.uint(1, 'aggregation step count'));
    if (count < 1 || count > MAX_AGGREGATION_STEPS) {
      throw format2(`${count} aggregation steps (1 to ${MAX_AGGREGATION_STEPS})`);
    }
    steps = [];
    for (let i = 0; i < count; i++) {
      const leafIndex = r.uint(8, `aggregation step ${i} leaf_index`);
      const treeSize = r.uint(8, `aggregation step ${i} tree_size`);
      const len = Number(r.uint(1, `aggregation step ${i} proof length`));
      if (len > MAX_PROOF_LEN) throw format2(`aggregation step ${i}: proof of ${len} hashes (at most ${MAX_PROOF_LEN})`);
      const proof = [];
      for (let k = 0; k < len; k++) proof.push(r.take(32, `aggregation step ${i} proof hash ${k}`).slice());
      steps.push({ leafIndex, treeSize, proof });
    }
  } catch (e) {
    if (e instanceof ReceiptError) throw e;
    throw format2(e.message);
  }
  const rest = bytes.subarray(r.at);
  if (rest.length < 5) throw format2('truncated: no inner receipt after the aggregation steps');
  if (rest[4] !== VERSION) throw format2(`inner receipt: version ${rest[4]}, it must be a version-1 receipt`);
  let inner;
  try {
    inner = readBinary(rest);
  } catch (e) {
    throw innerError(e);
  }
  return { form: 'binary', version: AGGREGATED_VERSION, digest, steps, inner };
}

/** The JSON form of version 2: exactly `version`, `digest`, `aggregation`, `receipt`. */
function readJsonAggregated(doc) {
  let digest;
  let steps;
  try {
    const j = fields(doc, 'receipt', ['version', 'digest', 'aggregation', 'receipt']);
    if (!Array.isArray(j.aggregation)) throw format2('aggregation: not an array');
    if (j.aggregation.length < 1 || j.aggregation.length > MAX_AGGREGATION_STEPS) {
      throw format2(`${j.aggregation.length} aggregation steps (1 to ${MAX_AGGREGATION_STEPS})`);
    }
    steps = j.aggregation.map((v, i) => {
      const s = fields(v, `aggregation[${i}]`, ['leaf_index', 'tree_size', 'proof']);
      if (!Array.isArray(s.proof)) throw format2(`aggregation[${i}].proof: not an array`);
      if (s.proof.length > MAX_PROOF_LEN) {
        throw format2(`aggregation[${i}]: proof of ${s.proof.length} hashes (at most ${MAX_PROOF_LEN})`);
      }
      return {
        leafIndex: uint(s.leaf_index, `aggregation[${i}].leaf_index`, 8),
        treeSize: uint(s.tree_size, `aggregation[${i}].tree_size`, 8),
        proof: s.proof.map((h, k) => fromHex(h, 32, `aggregation[${i}].proof[${k}]`)),
      };
    });
    digest = fromHex(j.digest, 32, 'digest');
  } catch (e) {
    if (e instanceof ReceiptError) throw new ReceiptError(e.check, e.message, AGGREGATED_VERSION);
    throw format2(e.message);
  }
  const v = doc.receipt;
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && v.version !== BigInt(VERSION)) {
    throw format2(`inner receipt: version ${v.version}, it must be a version-1 receipt`);
  }
  let inner;
  try {
    inner = readJsonV1(doc.receipt);
  } catch (e) {
    throw innerError(e);
  }
  return { form: 'json', version: AGGREGATED_VERSION, digest, steps, inner };
}

// ---- writing: both forms round-trip (used by tests and by anyone converting)

/** The binary `.belfry` form of a receipt read by `readReceipt` (either version). */
export function toBinary(r) {
  if (r.version === AGGREGATED_VERSION) {
    return concat(
      MAGIC,
      Uint8Array.of(AGGREGATED_VERSION),
      r.digest,
      Uint8Array.of(r.steps.length),
      ...r.steps.flatMap((s) => [uintBE(s.leafIndex, 8), uintBE(s.treeSize, 8), Uint8Array.of(s.proof.length), ...s.proof]),
      toBinary(r.inner),
    );
  }
  return concat(
    MAGIC,
    Uint8Array.of(VERSION),
    r.cluster.groupPublicKey,
    uintBE(r.cluster.n, 2),
    uintBE(r.cluster.f, 2),
    Uint8Array.of(POLICIES.indexOf(r.cluster.policy)),
    uintBE(r.cluster.granularityUs, 8),
    uintBE(r.cluster.genesisTime, 8),
    r.entryBytes ?? encodeEntry(r.entry),
    uintBE(r.leafIndex, 8),
    uintBE(r.treeSize, 8),
    Uint8Array.of(r.inclusionProof.length),
    ...r.inclusionProof,
    r.root,
    uintBE(r.time, 8),
    r.signature,
  );
}

/** The JSON form (as a plain object; integers as BigInt) of a receipt read by `readReceipt` (either version). */
export function toJsonValue(r) {
  if (r.version === AGGREGATED_VERSION) {
    return {
      version: BigInt(AGGREGATED_VERSION),
      digest: toHex(r.digest),
      aggregation: r.steps.map((s) => ({ leaf_index: s.leafIndex, tree_size: s.treeSize, proof: s.proof.map(toHex) })),
      receipt: toJsonValue(r.inner),
    };
  }
  const c = r.cluster;
  const e = r.entry;
  const entry = e.kind === 'digest'
    ? { kind: 'digest', digest: toHex(e.digest), witnessed_at: e.witnessedAt, key: e.key, witnesses: e.witnesses, late: e.late }
    : {
      kind: 'tick', wave: e.wave, time: e.time, coin_sig: toHex(e.coinSig), leader: toHex(e.leader),
      state_root: toHex(e.stateRoot), prev_root: toHex(e.prevRoot), batch_len: e.batchLen,
    };
  return {
    version: BigInt(VERSION),
    cluster: {
      group_public_key: toHex(c.groupPublicKey), n: c.n, f: c.f, policy: c.policy,
      granularity_us: c.granularityUs, genesis_time: c.genesisTime,
    },
    cluster_id: toHex(clusterId(c)),
    entry,
    leaf_index: r.leafIndex,
    tree_size: r.treeSize,
    inclusion_proof: r.inclusionProof.map(toHex),
    root: toHex(r.root),
    time: r.time,
    signature: toHex(r.signature),
  };
}

/** JSON text with BigInt integers written exactly. */
export function stringifyExact(v, indent) {
  return JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `\u0000${x}` : x), indent)
    .replace(/"\\u0000(\d+)"/g, '$1');
}
