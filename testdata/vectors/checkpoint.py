"""Checkpoint vectors (docs/checkpoints.md), computed from the C2SP specs
(signed-note, tlog-checkpoint, tlog-cosignature) and docs/checkpoints.md,
not from belfry's code: hashlib for SHA-256, the `cryptography` package for
Ed25519 (RFC 8032, deterministic). The cluster and its signed head of size
20 come from signing.json; the replicas' and the witness's Ed25519 seeds
are fixed test seeds (never use them for anything else).

    python3 testdata/vectors/checkpoint.py          # rewrites checkpoint.json
    python3 testdata/vectors/checkpoint.py --check  # compares
"""

import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))
signing = json.load(open(os.path.join(HERE, "signing.json")))

cluster_id = bytes.fromhex(signing["cluster_id"])
group_key = bytes.fromhex(signing["group_public_key"])
sth = signing["sth"]
origin = "belfry/" + cluster_id.hex()


def key_id(name, sig_type, key):
    return hashlib.sha256(name.encode() + b"\n" + sig_type + key).digest()[:4]


def line(name, kid, sig):
    return "\u2014 %s %s\n" % (name, base64.b64encode(kid + sig).decode())


def vkey(name, sig_type, key):
    return "%s+%s+%s" % (name, key_id(name, sig_type, key).hex(),
                         base64.b64encode(sig_type + key).decode())


def ed25519(seed):
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return sk, pk


text = "%s\n%d\n%s\n" % (origin, sth["tree_size"],
                         base64.b64encode(bytes.fromhex(sth["root"])).decode())

# The cluster's line: key id over 0xff "belfry-sth-v1" and the group key;
# signature time u64 || the head's BLS signature.
cluster_type = b"\xffbelfry-sth-v1"
cluster_kid = key_id(origin, cluster_type, group_key)
cluster_line = line(origin, cluster_kid,
                    sth["time"].to_bytes(8, "big") + bytes.fromhex(sth["signature"]))

replicas = []
for i in range(4):
    sk, pk = ed25519(bytes([0x10 + i]) * 32)
    replicas.append({
        "seed": (bytes([0x10 + i]) * 32).hex(),
        "vkey": vkey(origin, b"\x01", pk),
        "line": line(origin, key_id(origin, b"\x01", pk), sk.sign(text.encode())),
    })

witness_name = "witness.example/w1"
wseed = bytes([0x77]) * 32
wsk, wpk = ed25519(wseed)
timestamp = 1763700100
cosigned_message = "cosignature/v1\ntime %d\n%s" % (timestamp, text)
witness_line = line(witness_name, key_id(witness_name, b"\x04", wpk),
                    timestamp.to_bytes(8, "big") + wsk.sign(cosigned_message.encode()))

note = text + "\n" + cluster_line + "".join(r["line"] for r in replicas)
cosigned = note + witness_line

out = {
    "about": "C2SP checkpoints of belfry (docs/checkpoints.md), computed by checkpoint.py "
             "from the C2SP specs with hashlib and the cryptography package. The cluster, "
             "its group key and its signed head of size 20 are signing.json's; the seeds "
             "are test seeds only.",
    "origin": origin,
    "cluster_id": cluster_id.hex(),
    "group_public_key": group_key.hex(),
    "tree_size": sth["tree_size"],
    "root": sth["root"],
    "time": sth["time"],
    "text": text,
    "cluster_key_id": cluster_kid.hex(),
    "cluster_line": cluster_line,
    "replica_seeds": [r["seed"] for r in replicas],
    "replica_vkeys": [r["vkey"] for r in replicas],
    "replica_lines": [r["line"] for r in replicas],
    "note": note,
    "witness_name": witness_name,
    "witness_seed": wseed.hex(),
    "witness_vkey": vkey(witness_name, b"\x04", wpk),
    "cosignature_timestamp": timestamp,
    "cosigned_message": cosigned_message,
    "witness_line": witness_line,
    "cosigned_note": cosigned,
}
text_out = json.dumps(out, indent=2, ensure_ascii=False) + "\n"
path = os.path.join(HERE, "checkpoint.json")
if "--check" in sys.argv:
    if open(path, encoding="utf-8").read() != text_out:
        sys.exit("checkpoint.json differs from what checkpoint.py computes")
    print("checkpoint.json: as computed")
else:
    open(path, "w", encoding="utf-8").write(text_out)
    print("wrote", path)
