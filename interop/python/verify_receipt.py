"""Verify a binary belfry receipt (version 1) with hashlib and py_ecc alone.
Usage: python3 verify_receipt.py belfry1:<96 hex> RECEIPT.belfry [SHA256-HEX]
Prints OK and the signed time, or FAIL <check>; exit 0 valid, 1 invalid."""
import hashlib, struct, sys
from py_ecc.bls import G2Basic  # BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_

H = lambda *p: hashlib.sha256(b"".join(p)).digest()

def fail(check):
    print("FAIL", check); sys.exit(1)

anchor, b = bytes.fromhex(sys.argv[1].removeprefix("belfry1:")), open(sys.argv[2], "rb").read()
if len(b) < 75 or b[:5] != b"BLFY\x01": fail("format")
key, params, kind = b[5:53], b[53:74], b[74]
elen = {1: 52, 2: 213}.get(kind) or fail("entry")
entry, at = b[74:74 + elen], 74 + elen
if len(b) < at + 17: fail("format")
index, size, k = struct.unpack(">QQB", b[at:at + 17])
proof = [b[at + 17 + 32 * i: at + 49 + 32 * i] for i in range(k)]
at += 17 + 32 * k
if k > 64 or len(b) != at + 136: fail("format")
root, time, sig = b[at:at + 32], struct.unpack(">Q", b[at + 32:at + 40])[0], b[at + 40:]
if not G2Basic.KeyValidate(key): fail("format")
if key != anchor: fail("anchor")
cluster_id = H(b"belfry-cluster-v1", key, params)
if len(sys.argv) > 3 and (kind != 1 or entry[1:33] != bytes.fromhex(sys.argv[3])): fail("digest")
if kind == 1 and entry[51] & 0xFE: fail("entry")
r, fn, sn = H(b"\0", entry), index, size - 1  # RFC 9162 2.1.3.2
if index >= size: fail("inclusion_proof")
for p in proof:
    if sn == 0: fail("inclusion_proof")
    if fn & 1 or fn == sn:
        r = H(b"\1", p, r)
        while fn and not fn & 1:
            fn, sn = fn >> 1, sn >> 1
    else:
        r = H(b"\1", r, p)
    fn, sn = fn >> 1, sn >> 1
if sn != 0 or r != root: fail("inclusion_proof")
message = b"belfry-sth-v1" + cluster_id + struct.pack(">Q", size) + root + struct.pack(">Q", time)
try:
    ok = G2Basic.Verify(key, message, sig)
except Exception:
    ok = False
if not ok: fail("signature")
print("OK leaf %d of tree size %d, in the log by %d us since the epoch" % (index, size, time))
