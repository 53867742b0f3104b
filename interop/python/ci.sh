#!/bin/sh
# The receipt verifier in Python (docs/verify-anywhere.md): verify_receipt.py,
# hashlib and py_ecc only, on the committed vector, on a receipt a real cluster
# made in `cargo test` (replica/cli/tests/checkpoint.rs leaves it in
# target/interop/checkpoint/), and on tampered copies, each of which must fail
# with the check belfry verify names.
set -eu
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
venv="$root/target/interop/pyecc"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import py_ecc' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check py_ecc==8.0.0
fi
py="$venv/bin/python"
work="$root/target/interop/python"
mkdir -p "$work"
python3 - "$root" "$work" <<'PY'
import json, sys, shutil
root, work = sys.argv[1], sys.argv[2]
v = json.load(open(root + "/testdata/vectors/receipt.json"))
b = bytes.fromhex(v["binary_hex"])
cases = [("vector", b, v["json"]["entry"]["digest"], "OK")]
# Expected: what `belfry verify` names for each (checked when written).
live = root + "/target/interop/checkpoint"
anchors = {"vector": v["trust_anchor"]}
try:
    lb = open(live + "/receipt.belfry", "rb").read()
    meta = json.load(open(live + "/receipt.json"))
    cases.append(("live", lb, meta["digest"], "OK"))
    anchors["live"] = meta["anchor"]
except FileNotFoundError:
    sys.exit("interop-python: %s/receipt.belfry is missing (run cargo test first)" % live)
def flip(x, i, mask=1):
    x = bytearray(x); x[i] ^= mask; return bytes(x)
n = len(b)
cases += [
    ("truncated", b[:-1], None, "FAIL format"),
    ("key", flip(b, 10), None, "FAIL format"),
    ("other-key", b[:5] + bytes.fromhex(meta["anchor"][8:]) + b[53:], None, "FAIL anchor"),
    ("digest", b, "00" * 32, "FAIL digest"),
    ("entry-digest", flip(b, 80), None, "FAIL inclusion_proof"),
    ("entry-flags", flip(b, 74 + 51, 2), None, "FAIL entry"),
    ("proof", flip(b, 74 + 52 + 17 + 3), None, "FAIL inclusion_proof"),
    ("root", flip(b, n - 136 + 1), None, "FAIL inclusion_proof"),
    ("time", flip(b, n - 104 + 7), None, "FAIL signature"),
    ("signature", flip(b, n - 1), None, "FAIL signature"),
    ("tree-size", flip(b, 74 + 52 + 15), None, "FAIL inclusion_proof"),
]
with open(work + "/cases", "w") as out:
    for name, data, digest, expect in cases:
        open("%s/%s.belfry" % (work, name), "wb").write(data)
        anchor = anchors.get(name, v["trust_anchor"])
        out.write("%s %s %s %s\n" % (name, anchor, digest or "-", expect.replace(" ", "/")))
PY
fails=0
while read -r name anchor digest expect; do
  expect=$(echo "$expect" | tr / ' ')
  if [ "$digest" = "-" ]; then
    got=$("$py" verify_receipt.py "$anchor" "$work/$name.belfry" || true)
  else
    got=$("$py" verify_receipt.py "$anchor" "$work/$name.belfry" "$digest" || true)
  fi
  case "$got" in
    "$expect"*) echo "interop-python: $name: $got" ;;
    *) echo "interop-python: $name: expected $expect, got $got" >&2; fails=$((fails + 1)) ;;
  esac
done < "$work/cases"
[ "$fails" -eq 0 ] || exit 1
echo "interop-python: passed ($(wc -l < verify_receipt.py) lines of Python)"
