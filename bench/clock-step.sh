#!/bin/bash
# A replica's own rounds across a 4 s step back of its wall clock: four
# `belfry node`s on loopback, replica 2 under libfaketime (wall clock only,
# as an NTP step), its offset file set from +0 s to -4 s after 2 s; every
# replica's `belfry_round` scraped every 0.5 s (BENCHMARKS.md, "Chaos with
# clock faults"). Usage: bench/clock-step.sh [BELFRY]  (needs faketime, curl)
set -euo pipefail
B=${1:-target/release/belfry}
LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
D=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
P0=$((20000 + RANDOM % 20000))
"$B" keygen --replicas 4 --out "$D/keys" \
  --hosts "127.0.0.1:$P0,127.0.0.1:$((P0 + 1)),127.0.0.1:$((P0 + 2)),127.0.0.1:$((P0 + 3))" > /dev/null
echo "+0s" > "$D/offset"
for i in 0 1 2 3; do
  if [ "$i" = 2 ]; then
    LD_PRELOAD=$LIB FAKETIME_TIMESTAMP_FILE="$D/offset" FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1 \
      "$B" node --config "$D/keys/replica-$i.toml" --metrics "127.0.0.1:$((P0 + 10 + i))" 2> "$D/n$i.log" &
  else
    "$B" node --config "$D/keys/replica-$i.toml" --metrics "127.0.0.1:$((P0 + 10 + i))" 2> "$D/n$i.log" &
  fi
done
round() { curl -s "127.0.0.1:$((P0 + 10 + $1))/metrics" | awk '/^belfry_round /{print $2}'; }
sleep 6
for t in $(seq 1 16); do
  if [ "$t" = 5 ]; then echo "-4s" > "$D/offset"; echo "--- replica 2's clock stepped back 4 s"; fi
  echo "t=$((t * 5 / 10)).$((t * 5 % 10)) s  r0=$(round 0) r1=$(round 1) r2=$(round 2) r3=$(round 3)"
  sleep 0.5
done
