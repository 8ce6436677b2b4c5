#!/usr/bin/env bash
# Resident memory of flowgate under full load for DURATION seconds (default 600): wrk
# (-t1 -c64, core 0) against flowgate (bench/flowgate-bench.toml, one worker, core 1) in
# front of an nginx origin (1 KiB, core 1); RSS sampled every 10 s. Prints the samples,
# the requests served, and the growth from the first sample after warm-up to the last.
# Needs nginx and wrk. Usage: DURATION=600 bench/rss-steady.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-600}
(cd "$root" && cargo build --release --bin flowgate >/dev/null 2>&1)
run=$(mktemp -d)
mkdir -p "$run/tmp"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.3; rm -rf "$run"' EXIT
cat > "$run/origin.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $run/origin.pid; error_log $run/origin.err warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $run/tmp; proxy_temp_path $run/tmp; fastcgi_temp_path $run/tmp;
  uwsgi_temp_path $run/tmp; scgi_temp_path $run/tmp;
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s; default_type text/plain;
  server { listen 127.0.0.1:18080; location / { return 200 "$(head -c 1023 /dev/zero | tr '\0' a)\n"; } }
}
EOF
taskset -c 1 nginx -c "$run/origin.conf" & pids+=($!)
taskset -c 1 "$root/target/release/flowgate" serve --config "$root/bench/flowgate-bench.toml" 2>/dev/null & fg=$!
pids+=($fg)
for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:18101/ 2>/dev/null && break; sleep 0.1; done
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
