#!/usr/bin/env bash
# Throughput cost of a table swap every 10 ms under full load: wrk runs against flowgate
# (one worker, bench/flowgate-bench.toml plus a token) with and without a pusher that PUTs
# a new table version every 10 ms, alternated ROUNDS times; prints the ratio of medians.
# Needs wrk and curl; the origin is the example origin on 127.0.0.1:18080.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-5}
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
echo "bench secret" > "$tmp/tokens"
sed "s|^listen = \"127.0.0.1:18109\"|listen = \"127.0.0.1:18109\"\ntoken_file = \"$tmp/tokens\"|" "$root/bench/flowgate-bench.toml" > "$tmp/flowgate.toml"
(cd "$root" && cargo build --release --bin flowgate --example origin >/dev/null 2>&1)
"$root/target/release/examples/origin" 127.0.0.1:18080 >/dev/null 2>&1 &
taskset -c 1 "$root/target/release/flowgate" serve --config "$tmp/flowgate.toml" 2>/dev/null &
sleep 1
v=1
push_loop() {
  while :; do
    v=$((v + 1))
    taskset -c 0 curl -s -o /dev/null -X PUT -H 'authorization: Bearer secret' -H 'content-type: application/json' \
      -d "{\"version\": $v, \"weights\": {\"bench\": {\"bench\": $((v % 7 + 1))}}}" http://127.0.0.1:18109/v1/table
    sleep 0.01
  done
}
run() { taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" http://127.0.0.1:18101/ 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
quiet=(); swapping=()
for _ in $(seq "$ROUNDS"); do
  quiet+=("$(run)")
  push_loop & pusher=$!
  swapping+=("$(run)")
  kill "$pusher"; wait "$pusher" 2>/dev/null || true
done
applied=$(curl -s http://127.0.0.1:18109/v1/table | tr -d ' \n' | sed 's/.*"version":\([0-9]*\).*/\1/')
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
q=$(median "${quiet[@]}"); s=$(median "${swapping[@]}")
echo "req/s without swaps: ${quiet[*]} (median $q)"
echo "req/s with a swap every 10 ms: ${swapping[*]} (median $s); last version applied: $applied"
awk -v q="$q" -v s="$s" 'BEGIN { printf "throughput with swaps / without: %.3f\n", s / q }'
