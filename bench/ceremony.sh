#!/bin/bash
# Times each `belfry ceremony` step for N operators on this machine, every
# operator's step a process of its own, one after another (BENCHMARKS.md,
# "Keys without a trusted dealer"). Usage: bench/ceremony.sh N [BELFRY]
set -euo pipefail
n=$1
B=${2:-${CARGO_TARGET_DIR:-target}/release/belfry}
B=$(realpath "$B")
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cd "$d"
"$B" ceremony plan --replicas "$n" --shared s >/dev/null
t() { local s; s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc; }
mean() { echo "scale=3; ($(paste -sd+)) / $n" | bc; }
J=$(for i in $(seq 0 $((n-1))); do t "$B" ceremony join --shared s --id "$i" --host "127.0.0.1:$((9000+i))" --secret "o$i/c.toml"; done | mean)
D=$(for i in $(seq 0 $((n-1))); do t "$B" ceremony deal --shared s --secret "o$i/c.toml"; done | mean)
V=$(for i in $(seq 0 $((n-1))); do t "$B" ceremony verify --shared s --secret "o$i/c.toml"; done | mean)
F=$(for i in $(seq 0 $((n-1))); do t "$B" ceremony finish --shared s --secret "o$i/c.toml" --out "o$i/out"; done | mean)
echo "n=$n, seconds per operator: join $J deal $D verify $V finish $F;" \
  "deal file $(stat -c %s s/deal/deal-0.toml) B, verify file $(stat -c %s s/verify/verify-0.toml) B," \
  "shared directory $(du -sk s | cut -f1) KiB"
