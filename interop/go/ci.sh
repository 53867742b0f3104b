#!/bin/sh
# The checkpoint interoperability check (docs/checkpoints.md): Go's
# golang.org/x/mod/sumdb/note, from Debian, verifies belfry checkpoints —
# the committed vector (testdata/vectors/checkpoint.json) and the one a real
# cluster served in `cargo test` (replica/cli/tests/checkpoint.rs leaves it in
# target/interop/checkpoint/). Installs Go and the module when missing.
set -eu
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/golang.org/x/mod/sumdb/note ]; then
  echo "interop-go: installing golang-go golang-golang-x-mod-dev"
  apt-get update -qq && apt-get install -y -qq golang-go golang-golang-x-mod-dev >/dev/null
fi
# GOPATH mode: the program and Debian's packaged module, nothing fetched.
export GO111MODULE=off GOPATH="$(pwd):/usr/share/gocode" GOCACHE="$root/target/interop/go-cache"
bin="$root/target/interop/belfry-checkpoint"
go build -o "$bin" belfry-checkpoint
vec="$root/target/interop/vector"
mkdir -p "$vec"
python3 - "$root/testdata/vectors/checkpoint.json" "$vec" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
open(sys.argv[2] + "/checkpoint", "w").write(v["cosigned_note"])
open(sys.argv[2] + "/vkeys", "w").write("\n".join(v["replica_vkeys"] + [v["witness_vkey"]]) + "\n")
open(sys.argv[2] + "/origin", "w").write(v["origin"] + "\n")
PY
for d in "$vec" "$root/target/interop/checkpoint"; do
  if [ ! -f "$d/checkpoint" ]; then
    echo "interop-go: $d/checkpoint is missing (run cargo test first)" >&2
    exit 1
  fi
  "$bin" "$d/checkpoint" "$d/vkeys" "$(cat "$d/origin")"
done
echo "interop-go: passed"
