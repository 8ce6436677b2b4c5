#!/usr/bin/env bash
# Resident memory of flowgate under full load for DURATION seconds (default 600): wrk
# (-t1 -c64, core 0) against flowgate (bench/flowgate-bench.toml, one worker, core 1) in
# front of an nginx origin (1 KiB, core 1); RSS sampled every 10 s. Prints the samples,
# the requests served, and the growth from the first sample after warm-up to the last.
# Needs nginx and wrk. Usage: DURATION=600 bench/rss-steady.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-600}
(cd "$root" && cargo build --release --bin flowgate >/dev/null 2>&1)
start_origin 1
taskset -c 1 "$root/target/release/flowgate" serve --config "$root/bench/flowgate-bench.toml" 2>/dev/null & fg=$!
pids+=($fg)
wait_ok http://127.0.0.1:18101/
rss() { awk '/^VmRSS/ {print $2}' "/proc/$fg/status"; }
echo "rss before load: $(rss) KiB"
taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" http://127.0.0.1:18101/ > "$run/wrk.out" & w=$!
samples=()
for _ in $(seq $((DURATION / 10))); do
  sleep 10
  kill -0 "$w" 2>/dev/null || break
  samples+=("$(rss)")
done
wait "$w"
echo "rss every 10 s (KiB): ${samples[*]}"
grep -E 'requests in|Requests/sec|Non-2xx|Socket errors' "$run/wrk.out" || true
first=${samples[1]:-${samples[0]}}; last=${samples[-1]}
max=$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)
echo "after warm-up: ${first} KiB -> ${last} KiB at the end (max ${max} KiB)"
