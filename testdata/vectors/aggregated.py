#!/usr/bin/env python3
"""Computes aggregated.json: vectors for aggregated receipts (receipt format
version 2, docs/gateway.md), written from the documents (docs/gateway.md,
docs/design.md section 3.7, the README's "Verify a receipt without belfry")
and not from belfry's Rust code.

Needs Python 3 and py_ecc (the IETF BLS signature, min-pk, ciphersuite
BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_); py_ecc is not a project
dependency, install it into a throwaway environment:

    python3 -m venv /tmp/pyecc && /tmp/pyecc/bin/pip install py_ecc
    /tmp/pyecc/bin/python testdata/vectors/aggregated.py          # writes aggregated.json
    /tmp/pyecc/bin/python testdata/vectors/aggregated.py --check  # fails if it differs

Inputs: signing.json (the test secret key and cluster), merkle_sha256.json
(log entries) and receipt.json (a self-check of the version-1 encoder). The
output is deterministic: BLS signatures are deterministic and every digest is
derived from a fixed string. Before writing, every case is run through the
small verifier at the end of this file, which must name exactly the expected
check for each form of each case.
"""

import hashlib
import json
import os
import sys

from py_ecc.bls import G2Basic  # the NUL ciphersuite: BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_
from py_ecc.optimized_bls12_381 import curve_order

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "aggregated.json")

MAGIC = b"BLFY"
AGGREGATE_TAG = b"belfry/aggregate"  # 16 ASCII bytes
MAX_STEPS = 8
MAX_PROOF_LEN = 64
POLICIES = ["lamport", "clock"]
DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_"
CHECKS = ["format", "anchor", "cluster_id", "digest", "aggregation", "entry", "inclusion_proof", "signature"]


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def u(v, width):
    return int(v).to_bytes(width, "big")


def load(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return json.load(f)


# ---- RFC 9162 section 2.1 over SHA-256 ----------------------------------------------


def log_leaf_hash(entry_bytes):
    return sha256(b"\x00", entry_bytes)


def aggregate_leaf_hash(digest):
    """A gateway tree's leaf: SHA-256(0x00 || "belfry/aggregate" || digest)."""
    assert len(digest) == 32 and len(AGGREGATE_TAG) == 16
    return sha256(b"\x00", AGGREGATE_TAG, digest)


def node_hash(left, right):
    return sha256(b"\x01", left, right)


def split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    """MTH(D[n]) over leaf hashes."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    """PATH(m, D[n]): the inclusion proof of leaf m, leaf side first."""
    if len(leaves) <= 1:
        return []
    k = split(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def root_from_inclusion(leaf, index, size, proof):
    """RFC 9162 section 2.1.3.2; None when the proof does not fit."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


# ---- the version-1 receipt (docs/design.md section 3.7, README) ------------------------


def encode_entry(e):
    if e["kind"] == "digest":
        return (b"\x01" + bytes.fromhex(e["digest"]) + u(e["witnessed_at"], 8) + u(e["key"], 8)
                + u(e["witnesses"], 2) + bytes([1 if e["late"] else 0]))
    return (b"\x02" + u(e["wave"], 8) + u(e["time"], 8) + bytes.fromhex(e["coin_sig"])
            + bytes.fromhex(e["leader"]) + bytes.fromhex(e["state_root"])
            + bytes.fromhex(e["prev_root"]) + u(e["batch_len"], 4))


def cluster_id(c):
    return sha256(b"belfry-cluster-v1", bytes.fromhex(c["group_public_key"]), u(c["n"], 2), u(c["f"], 2),
                  bytes([POLICIES.index(c["policy"])]), u(c["granularity_us"], 8), u(c["genesis_time"], 8))


def sth_message(cid, tree_size, root, time):
    return b"belfry-sth-v1" + cid + u(tree_size, 8) + root + u(time, 8)


def v1_binary(j):
    c = j["cluster"]
    return (MAGIC + bytes([j["version"]]) + bytes.fromhex(c["group_public_key"]) + u(c["n"], 2) + u(c["f"], 2)
            + bytes([POLICIES.index(c["policy"])]) + u(c["granularity_us"], 8) + u(c["genesis_time"], 8)
            + encode_entry(j["entry"]) + u(j["leaf_index"], 8) + u(j["tree_size"], 8)
            + bytes([len(j["inclusion_proof"])]) + b"".join(bytes.fromhex(h) for h in j["inclusion_proof"])
            + bytes.fromhex(j["root"]) + u(j["time"], 8) + bytes.fromhex(j["signature"]))


# ---- the version-2 receipt (docs/gateway.md) ---------------------------------------


def v2_binary(j):
    """"BLFY" || 0x02 || digest[32] || steps u8 || (leaf_index u64 || tree_size u64 ||
    proof_len u8 || proof)* || the inner receipt's binary form."""
    out = MAGIC + bytes([j["version"]]) + bytes.fromhex(j["digest"]) + bytes([len(j["aggregation"])])
    for s in j["aggregation"]:
        out += u(s["leaf_index"], 8) + u(s["tree_size"], 8) + bytes([len(s["proof"])])
        out += b"".join(bytes.fromhex(h) for h in s["proof"])
    return out + v1_binary(j["receipt"])


def entry_fields(v):
    return {k: x for k, x in v.items() if k not in ("bytes", "leaf_hash")}


# ---- building the cases ------------------------------------------------------------


signing = load("signing.json")
merkle = load("merkle_sha256.json")
receipt_v1 = load("receipt.json")

SK = int(signing["secret_key"], 16)
PK = G2Basic.SkToPk(SK)
assert PK.hex() == signing["group_public_key"], "py_ecc derives another public key"
CLUSTER = dict(group_public_key=signing["group_public_key"], **signing["cluster"])
CID = cluster_id(CLUSTER)
assert CID.hex() == signing["cluster_id"]
ANCHOR = signing["trust_anchor"]

# Self-checks of the version-1 pieces against the committed vectors.
for e in merkle["entries"]:
    assert encode_entry(entry_fields(e)).hex() == e["bytes"]
    assert log_leaf_hash(bytes.fromhex(e["bytes"])).hex() == e["leaf_hash"]
ALL_LEAVES = [bytes.fromhex(e["leaf_hash"]) for e in merkle["entries"]]
assert mth(ALL_LEAVES).hex() == signing["sth"]["root"]
s = signing["sth"]
assert sth_message(CID, s["tree_size"], bytes.fromhex(s["root"]), s["time"]).hex() == s["message"]
assert G2Basic.Sign(SK, bytes.fromhex(s["message"])).hex() == s["signature"]
assert v1_binary(receipt_v1["json"]).hex() == receipt_v1["binary_hex"]

# Another cluster's key, for the wrong-anchor case.
OTHER_SK = int.from_bytes(sha256(b"belfry aggregated vector: another cluster's key"), "big") % curve_order
OTHER_ANCHOR = "belfry1:" + G2Basic.SkToPk(OTHER_SK).hex()

# The cluster log of every positive case: entries 0-6 of merkle_sha256.json,
# except that entry 5 (a digest entry, after the tick at 4, whose prev_root
# stays right) carries the topmost round root as its digest.
LOG_SIZE = 7
LOGGED_AT = 5


def digest_of(label):
    return sha256(("belfry aggregated vector " + label).encode())


def round_layer(digests, index):
    """One gateway round: its leaves, root, and the path of leaf `index`."""
    leaves = [aggregate_leaf_hash(d) for d in digests]
    root = mth(leaves)
    proof = path(index, leaves)
    assert root_from_inclusion(leaves[index], index, len(leaves), proof) == root
    return {
        "round_digests": [d.hex() for d in digests],
        "leaf_hashes": [h.hex() for h in leaves],
        "root": root.hex(),
        "leaf_index": index,
        "tree_size": len(digests),
        "proof": [h.hex() for h in proof],
        "digest": digests[index].hex(),
        "leaf_hash": leaves[index].hex(),
    }


def cluster_log(top_root, time, receipt_of=LOGGED_AT):
    entries = []
    for i, v in enumerate(merkle["entries"][:LOG_SIZE]):
        e = entry_fields(v)
        if i == LOGGED_AT:
            assert e["kind"] == "digest"
            e["digest"] = top_root.hex()
        b = encode_entry(e)
        entries.append(dict(e, bytes=b.hex(), leaf_hash=log_leaf_hash(b).hex()))
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in entries]
    root = mth(leaves)
    message = sth_message(CID, LOG_SIZE, root, time)
    signature = G2Basic.Sign(SK, message)
    assert G2Basic.Verify(PK, message, signature)
    log = {
        "entries": entries,
        "tree_size": LOG_SIZE,
        "root": root.hex(),
        "time": time,
        "sth_message": message.hex(),
        "signature": signature.hex(),
    }
    return log, inner_receipt(log, receipt_of)


def inner_receipt(log, index):
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in log["entries"]]
    return {
        "version": 1,
        "cluster": dict(CLUSTER),
        "cluster_id": CID.hex(),
        "entry": entry_fields(log["entries"][index]),
        "leaf_index": index,
        "tree_size": log["tree_size"],
        "inclusion_proof": [h.hex() for h in path(index, leaves)],
        "root": log["root"],
        "time": log["time"],
        "signature": log["signature"],
    }


def utc(us):
    import datetime
    t = datetime.datetime.fromtimestamp(us // 1_000_000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%06dZ" % (us % 1_000_000)


def positive(name, about, layers, time):
    """A case from its layers (bottom first): the chain, the log, the receipt."""
    chain = [layers[0]["digest"]]
    for i, layer in enumerate(layers):
        assert layer["digest"] == chain[-1], f"{name}: layer {i} does not hold the root below"
        chain.append(layer["root"])
    log, inner = cluster_log(bytes.fromhex(chain[-1]), time)
    receipt = {
        "version": 2,
        "digest": chain[0],
        "aggregation": [{"leaf_index": l["leaf_index"], "tree_size": l["tree_size"], "proof": l["proof"]}
                        for l in layers],
        "receipt": inner,
    }
    return {
        "name": name,
        "about": about,
        "trust_anchor": ANCHOR,
        "document_digest": chain[0],
        "layers": layers,
        "chain": chain,
        "cluster_log": log,
        "inner_receipt_binary_hex": v1_binary(inner).hex(),
        "json": receipt,
        "binary_hex": v2_binary(receipt).hex(),
        "expect": {
            "ok": True,
            "digest": chain[0],
            "gateway_layers": len(layers),
            "logged_digest": chain[-1],
            "leaf_index": LOGGED_AT,
            "tree_size": LOG_SIZE,
            "time": time,
            "time_utc": utc(time),
        },
    }


one = positive(
    "one_layer",
    "One gateway round of 5 digests (SHA-256 of \"belfry aggregated vector 0\" .. \"4\"); the receipt "
    "is for leaf 3. The cluster logged the round's root as entry 5 of a log of 7.",
    [round_layer([digest_of(str(i)) for i in range(5)], 3)],
    1763700000007000,
)
lower = round_layer([digest_of(f"lower {i}") for i in range(6)], 4)
upper = round_layer([digest_of("upper 0"), bytes.fromhex(lower["root"]), digest_of("upper 2")], 1)
two = positive(
    "two_layers",
    "Stacked gateways: a lower round of 6 digests (\"belfry aggregated vector lower 0\" .. \"5\"), the "
    "receipt for its leaf 4; the lower root is leaf 1 of an upper round of 3 (leaves 0 and 2: "
    "\"belfry aggregated vector upper 0\" and \"upper 2\"). The cluster logged the upper root.",
    [lower, upper],
    1763700000007100,
)
single = positive(
    "one_layer_round_of_one",
    "A round that held one digest (\"belfry aggregated vector single\"): tree size 1, an empty proof, the "
    "round's root is the digest's gateway leaf hash.",
    [round_layer([digest_of("single")], 0)],
    1763700000007200,
)
POSITIVE = [one, two, single]


def mutate(base, fn):
    j = json.loads(json.dumps(base["json"]))
    fn(j)
    return j


def flip_hex(h, at=0):
    b = bytearray(bytes.fromhex(h))
    b[at] ^= 0x01
    return b.hex()


def neg(name, about, check, base, fn=None, anchor=ANCHOR, digest="base", forms=("json", "binary"),
        binary=None):
    j = mutate(base, fn or (lambda _: None))
    case = {
        "name": name,
        "about": about,
        "expected_check": check,
        "trust_anchor": anchor,
        "document_digest": base["document_digest"] if digest == "base" else digest,
    }
    if "json" in forms:
        case["json"] = j
    if "binary" in forms:
        case["binary_hex"] = (binary(j) if binary else v2_binary(j)).hex()
    return case


def set_step(i, **kw):
    def fn(j):
        j["aggregation"][i].update(kw)
    return fn


def flip_proof(step, k):
    def fn(j):
        j["aggregation"][step]["proof"][k] = flip_hex(j["aggregation"][step]["proof"][k], 31)
    return fn


def tick_inner(j):
    log = one["cluster_log"]
    j["receipt"] = inner_receipt(log, 4)


def inner_version_2_binary(j):
    b = bytearray(v2_binary(j))
    b[len(b) - len(v1_binary(j["receipt"])) + 4] = 2  # the inner receipt's version byte
    return bytes(b)


NEGATIVE = [
    neg("proof_hash_changed", "One-layer: a hash of the step's proof changed (one bit).", "aggregation", one,
        flip_proof(0, 1)),
    neg("upper_proof_hash_changed", "Two layers: a hash of the upper step's proof changed.", "aggregation", two,
        flip_proof(1, 0)),
    neg("leaf_index_equals_tree_size", "One-layer: leaf_index 5 in a round of tree_size 5 (leaf_index >= "
        "tree_size is the aggregation check's, as docs/gateway.md step 5 says).", "aggregation", one,
        set_step(0, leaf_index=5)),
    neg("leaf_index_beyond_tree_size", "One-layer: leaf_index 2^64 - 1 in a round of tree_size 5.",
        "aggregation", one, set_step(0, leaf_index=2**64 - 1)),
    neg("tree_size_zero", "One-layer: tree_size 0.", "aggregation", one, set_step(0, tree_size=0)),
    neg("leaf_index_another", "One-layer: leaf_index 2 instead of 3 (the proof folds to another root).",
        "aggregation", one, set_step(0, leaf_index=2)),
    neg("proof_one_hash_short", "One-layer: the proof's last hash dropped (it no longer fits the tree).",
        "aggregation", one, lambda j: j["aggregation"][0]["proof"].pop()),
    neg("proof_one_hash_long", "One-layer: a hash appended to the proof (it no longer fits the tree).",
        "aggregation", one, lambda j: j["aggregation"][0]["proof"].append(j["digest"])),
    neg("client_digest_changed", "One-layer: the receipt's digest is a neighbour's in the same round (leaf 1), "
        "checked without a document: the path does not lead from it to the root.", "aggregation", one,
        lambda j: j.update(digest=one["layers"][0]["round_digests"][1]), digest=None),
    neg("other_document", "One-layer, untouched, checked against another document's digest (the round "
        "neighbour at leaf 1).", "digest", one, digest=one["layers"][0]["round_digests"][1]),
    neg("logged_digest_changed", "One-layer: the inner receipt's entry digest changed (one bit). It also breaks "
        "the inclusion proof, but aggregation is checked first.", "aggregation", one,
        lambda j: j["receipt"]["entry"].update(digest=flip_hex(j["receipt"]["entry"]["digest"], 0))),
    neg("logged_entry_is_a_tick", "One-layer: the inner receipt is a valid receipt of another entry of the same "
        "signed head (the tick at leaf 4), not of the round root.", "aggregation", one, tick_inner),
    neg("steps_swapped", "Two layers, the upper step first.", "aggregation", two,
        lambda j: j["aggregation"].reverse()),
    neg("upper_step_dropped", "Two layers, only the lower step kept: it leads to the lower root, which the "
        "cluster did not log.", "aggregation", two, lambda j: j["aggregation"].pop()),
    neg("wrong_anchor", "One-layer, untouched, checked against another cluster's trust anchor.", "anchor", one,
        anchor=OTHER_ANCHOR),
    neg("zero_steps", "Version 2 with no aggregation step.", "format", one,
        lambda j: j.update(aggregation=[])),
    neg("nine_steps", "Version 2 with 9 aggregation steps (the step repeated; at most 8).", "format", one,
        lambda j: j.update(aggregation=j["aggregation"] * 9)),
    neg("proof_of_65_hashes", "One step whose proof has 65 hashes (at most 64).", "format", one,
        lambda j: j["aggregation"][0].update(proof=[j["digest"]] * 65)),
    neg("inner_version_2", "The inner receipt says version 2 (it must be a version-1 receipt).", "format", one,
        lambda j: j["receipt"].update(version=2), forms=("json",)),
    neg("inner_version_2_binary", "The inner receipt's version byte is 2 (it must be a version-1 receipt).",
        "format", one, forms=("binary",), binary=inner_version_2_binary),
    neg("trailing_byte", "A byte after the inner receipt's signature.", "format", one, forms=("binary",),
        binary=lambda j: v2_binary(j) + b"\x00"),
    neg("json_unknown_step_field", "A step with a field the format does not have.", "format", one,
        lambda j: j["aggregation"][0].update(note="trust me"), forms=("json",)),
    neg("json_unknown_field", "A top-level field the format does not have.", "format", one,
        lambda j: j.update(gateway="gw-1"), forms=("json",)),
    neg("inner_cluster_id_changed", "The inner receipt's cluster_id changed (only the JSON form carries one).",
        "cluster_id", one, lambda j: j["receipt"].update(cluster_id=flip_hex(j["receipt"]["cluster_id"], 0)),
        forms=("json",)),
    neg("inner_inclusion_proof_changed", "A hash of the inner receipt's inclusion proof changed.",
        "inclusion_proof", one,
        lambda j: j["receipt"]["inclusion_proof"].__setitem__(0, flip_hex(j["receipt"]["inclusion_proof"][0], 5))),
    neg("inner_time_changed", "The inner receipt's time changed (only the signature binds it).", "signature",
        one, lambda j: j["receipt"].update(time=j["receipt"]["time"] + 1)),
    neg("two_layers_inner_signature_changed", "Two layers: the inner receipt's signature is another head's.",
        "signature", two, lambda j: j["receipt"].update(signature=one["cluster_log"]["signature"])),
]

# A step's leaf_index and tree_size are bound by nothing but the fold: like a
# version-1 receipt's tree_size (README step 5), a size whose proof has the
# same shape folds to the same root. Leaf 3 of 5 and leaf 3 of 6 both take
# three hashes, and the third (the subtree right of leaves 0-3) is used the
# same way, so this verifies. Implementations must agree on that too.
malleable = json.loads(json.dumps(one))
malleable["name"] = "one_layer_tree_size_one_more"
malleable["about"] = (
    "one_layer with its step's tree_size changed from 5 to 6: the proof of leaf 3 has the same shape in "
    "trees of 5 and 6 leaves and folds to the same root, so the receipt still verifies. Nothing signs a "
    "step's tree_size or leaf_index; the receipt proves the digest was aggregated into the logged root, "
    "not its position in the round.")
malleable["json"]["aggregation"][0]["tree_size"] = 6
malleable["binary_hex"] = v2_binary(malleable["json"]).hex()
del malleable["layers"], malleable["cluster_log"], malleable["chain"], malleable["inner_receipt_binary_hex"]
malleable["same_as"] = "one_layer"
POSITIVE.append(malleable)


# ---- an independent check of every case: a small verifier from docs/gateway.md --------


class Fail(Exception):
    def __init__(self, check, why):
        super().__init__(f"{check}: {why}")
        self.check = check


def parse_binary(b):
    at = 0

    def take(n):
        nonlocal at
        if at + n > len(b):
            raise Fail("format", "truncated")
        out = b[at:at + n]
        at += n
        return out

    if take(4) != MAGIC or take(1) != b"\x02":
        raise Fail("format", "not version 2")
    digest = take(32)
    count = take(1)[0]
    if not 1 <= count <= MAX_STEPS:
        raise Fail("format", f"{count} steps")
    steps = []
    for _ in range(count):
        li, ts, n = int.from_bytes(take(8), "big"), int.from_bytes(take(8), "big"), take(1)[0]
        if n > MAX_PROOF_LEN:
            raise Fail("format", f"proof of {n}")
        steps.append((li, ts, [take(32) for _ in range(n)]))
    if take(4) != MAGIC or take(1) != b"\x01":
        raise Fail("format", "inner not version 1")
    gpk, n, f, pol, gran, gen = take(48), take(2), take(2), take(1)[0], take(8), take(8)
    kind = take(1)[0]
    if kind not in (1, 2):
        raise Fail("entry", "kind")
    entry = bytes([kind]) + take(51 if kind == 1 else 212)
    li, ts, n_ = int.from_bytes(take(8), "big"), int.from_bytes(take(8), "big"), take(1)[0]
    if n_ > MAX_PROOF_LEN:
        raise Fail("format", "inner proof")
    proof = [take(32) for _ in range(n_)]
    root, time, sig = take(32), int.from_bytes(take(8), "big"), take(96)
    if at != len(b):
        raise Fail("format", "trailing bytes")
    cluster = dict(group_public_key=gpk.hex(), n=int.from_bytes(n, "big"), f=int.from_bytes(f, "big"),
                   policy=POLICIES[pol], granularity_us=int.from_bytes(gran, "big"),
                   genesis_time=int.from_bytes(gen, "big"))
    return dict(digest=digest, steps=steps, cluster=cluster, claimed_cid=None, entry=entry, leaf_index=li,
                tree_size=ts, proof=proof, root=root, time=time, signature=sig)


def parse_json(j):
    def exact(obj, names):
        if not isinstance(obj, dict) or set(obj) != set(names):
            raise Fail("format", f"fields {sorted(obj) if isinstance(obj, dict) else obj}")

    exact(j, ["version", "digest", "aggregation", "receipt"])
    if j["version"] != 2 or not 1 <= len(j["aggregation"]) <= MAX_STEPS:
        raise Fail("format", "version or steps")
    steps = []
    for s in j["aggregation"]:
        exact(s, ["leaf_index", "tree_size", "proof"])
        if len(s["proof"]) > MAX_PROOF_LEN:
            raise Fail("format", "proof length")
        steps.append((s["leaf_index"], s["tree_size"], [bytes.fromhex(h) for h in s["proof"]]))
    r = j["receipt"]
    if r["version"] != 1:
        raise Fail("format", "inner version")
    return dict(digest=bytes.fromhex(j["digest"]), steps=steps, cluster=r["cluster"],
                claimed_cid=bytes.fromhex(r["cluster_id"]), entry=encode_entry(r["entry"]),
                leaf_index=r["leaf_index"], tree_size=r["tree_size"],
                proof=[bytes.fromhex(h) for h in r["inclusion_proof"]], root=bytes.fromhex(r["root"]),
                time=r["time"], signature=bytes.fromhex(r["signature"]))


def verify(form, anchor, document_digest):
    """The first failing check's name, or None; in docs/gateway.md's order."""
    try:
        r = parse_binary(form) if isinstance(form, bytes) else parse_json(form)
        if r["cluster"]["group_public_key"] != anchor[len("belfry1:"):]:
            raise Fail("anchor", "")
        cid = cluster_id(r["cluster"])
        if r["claimed_cid"] is not None and r["claimed_cid"] != cid:
            raise Fail("cluster_id", "")
        if document_digest is not None and bytes.fromhex(document_digest) != r["digest"]:
            raise Fail("digest", "")
        h = r["digest"]
        for li, ts, proof in r["steps"]:
            h = root_from_inclusion(aggregate_leaf_hash(h), li, ts, proof)
            if h is None:
                raise Fail("aggregation", "a step does not fit")
        if r["entry"][0] != 0x01 or r["entry"][1:33] != h:
            raise Fail("aggregation", "not the logged digest")
        if r["entry"][0] == 0x01 and r["entry"][51] & ~1:
            raise Fail("entry", "flags")
        if root_from_inclusion(log_leaf_hash(r["entry"]), r["leaf_index"], r["tree_size"], r["proof"]) != r["root"]:
            raise Fail("inclusion_proof", "")
        msg = sth_message(cid, r["tree_size"], r["root"], r["time"])
        if not G2Basic.Verify(bytes.fromhex(anchor[len("belfry1:"):]), msg, r["signature"]):
            raise Fail("signature", "")
        return None
    except Fail as e:
        return e.check


for c in POSITIVE:
    for form in (c["json"], bytes.fromhex(c["binary_hex"])):
        got = verify(form, c["trust_anchor"], c["document_digest"])
        assert got is None, f"{c['name']}: fails {got}"
        assert verify(form, c["trust_anchor"], None) is None
    assert v2_binary(c["json"]).hex() == c["binary_hex"]
for c in NEGATIVE:
    assert "json" in c or "binary_hex" in c
    for key in ("json", "binary_hex"):
        if key in c:
            form = c[key] if key == "json" else bytes.fromhex(c[key])
            got = verify(form, c["trust_anchor"], c["document_digest"])
            assert got == c["expected_check"], f"{c['name']} {key}: {got}, expected {c['expected_check']}"
assert len({c["name"] for c in POSITIVE + NEGATIVE}) == len(POSITIVE) + len(NEGATIVE)

doc = {
    "about": (
        "Aggregated receipts (version 2, docs/gateway.md), computed by testdata/vectors/aggregated.py (Python "
        "hashlib and py_ecc; written from the documents, not from belfry's code) from signing.json's test key "
        "and cluster and merkle_sha256.json's entries. A gateway leaf is SHA-256(0x00 || \"belfry/aggregate\" "
        "|| digest), interior nodes SHA-256(0x01 || l || r) (RFC 9162). Each positive case gives every layer's "
        "round (digests, leaf hashes, root, the path of the chosen leaf), the chain of digests from the "
        "client's to the logged one, the cluster log (entries 0-6 of merkle_sha256.json with entry 5's digest "
        "replaced by the topmost root, its head, the signed message and signature), and the receipt in JSON "
        "and binary form; each must verify with every check ok, proving expect.time. Each negative case must "
        "fail, with trust_anchor and document_digest (null: no document), at expected_check, in every form it "
        "gives (json, binary_hex). Checks in order: " + ", ".join(CHECKS) + "."
    ),
    "trust_anchor": ANCHOR,
    "cluster": CLUSTER,
    "cluster_id": CID.hex(),
    "aggregate_leaf_tag": AGGREGATE_TAG.decode(),
    "other_trust_anchor": OTHER_ANCHOR,
    "checks": CHECKS,
    "positive": POSITIVE,
    "negative": NEGATIVE,
}
text = json.dumps(doc, indent=1) + "\n"
if "--check" in sys.argv[1:]:
    with open(OUT, encoding="utf-8") as f:
        if f.read() != text:
            sys.exit("aggregated.json differs from what aggregated.py computes")
    print("aggregated.json is what aggregated.py computes")
else:
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(POSITIVE)} positive, {len(NEGATIVE)} negative cases")
