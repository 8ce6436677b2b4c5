#!/usr/bin/env bash
# Cross-region hop: client -> proxy (region a) -> peer proxy (region b) -> origin, flowgate
# against a chain of two nginx, in one run on this machine.
#
#   nginx chain     nginx (18201, proxy_pass keep-alive) -> nginx (18202) -> origin
#   flowgate chain  flowgate a (public 18301; its table sends all of a's traffic to b)
#                   -> flowgate b (peer listener 18312, over PEER_PROTOCOL) -> origin
#
# The origin is an nginx serving 1 KiB from memory (18080). Every proxy runs one worker;
# proxies and origin share core 1, wrk (-t1 -c64) has core 0. Rounds are interleaved and
# the median of each chain is reported, with the ratio. Needs nginx and wrk.
# Usage: bench/hop-bench.sh; ROUNDS=3 DURATION=10 PEER_PROTOCOL=http2|http1.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}; PEER_PROTOCOL=${PEER_PROTOCOL:-http2}
(cd "$root" && cargo build --release --bin flowgate >/dev/null 2>&1)
run=$(mktemp -d)
mkdir -p "$run/tmp"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.3; rm -rf "$run"' EXIT

nginx_conf() { # NAME LISTEN BODY
  cat > "$run/$1.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $run/$1.pid; error_log $run/$1.err warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $run/tmp; proxy_temp_path $run/tmp; fastcgi_temp_path $run/tmp;
  uwsgi_temp_path $run/tmp; scgi_temp_path $run/tmp;
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s; default_type text/plain;
  $3
  server { listen 127.0.0.1:$2; $4 }
}
EOF
  taskset -c 1 nginx -c "$run/$1.conf" & pids+=($!)
}
body=$(head -c 1023 /dev/zero | tr '\0' a)
nginx_conf origin 18080 "" "location / { return 200 \"$body\\n\"; }"
proxy_to() { echo "location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"; }
nginx_conf edge 18202 "upstream up { server 127.0.0.1:18080; keepalive 256; }" "$(proxy_to)"
nginx_conf entry 18201 "upstream up { server 127.0.0.1:18202; keepalive 256; }" "$(proxy_to)"

cat > "$run/table.json" <<EOF
{"version": 1, "weights": {"a": {"b": 100}, "b": {"b": 100}}, "peer_modes": {"a": "direct", "b": "direct"}}
EOF
flowgate_conf() { # REGION PUBLIC PEER ADMIN OTHER OTHER_PEER
  cat > "$run/$1.toml" <<EOF
region = "$1"
table = "$run/table.json"
[listen]
public = "127.0.0.1:$2"
peer = "127.0.0.1:$3"
[admin]
listen = "127.0.0.1:$4"
[origins.origin]
endpoints = ["127.0.0.1:18080"]
max_concurrency = 100000
[[routes]]
origin = "origin"
[peers.$5]
proxies = ["127.0.0.1:$6"]
protocol = "$PEER_PROTOCOL"
[log]
level = "warn"
[runtime]
workers = 1
EOF
  taskset -c 1 "$root/target/release/flowgate" serve --config "$run/$1.toml" 2>>"$run/flowgate.err" & pids+=($!)
}
flowgate_conf a 18301 18311 18309 b 18312
flowgate_conf b 18302 18312 18319 a 18311

for url in http://127.0.0.1:18201/ http://127.0.0.1:18301/; do
  ok=0
  for _ in $(seq 100); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then ok=1; break; fi
    sleep 0.1
  done
  [ "$ok" = 1 ] || { echo "no answer from $url" >&2; cat "$run"/*.err >&2; exit 1; }
done
region=$(curl -fsS -D - -o /dev/null http://127.0.0.1:18301/ | tr -d '\r' | awk -F': ' 'tolower($1) == "x-flowgate-region" {print $2}')
[ "$region" = b ] || { echo "flowgate a did not forward to b (served by: $region)" >&2; exit 1; }

rps() { taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
taskset -c 0 wrk -t1 -c64 -d2s http://127.0.0.1:18201/ >/dev/null
taskset -c 0 wrk -t1 -c64 -d2s http://127.0.0.1:18301/ >/dev/null
nginx_runs=(); flowgate_runs=()
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then
    nginx_runs+=("$(rps http://127.0.0.1:18201/)"); flowgate_runs+=("$(rps http://127.0.0.1:18301/)")
  else
    flowgate_runs+=("$(rps http://127.0.0.1:18301/)"); nginx_runs+=("$(rps http://127.0.0.1:18201/)")
  fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
n=$(median "${nginx_runs[@]}"); f=$(median "${flowgate_runs[@]}")
echo "two nginx:    ${nginx_runs[*]} req/s (median $n)"
echo "two flowgate: ${flowgate_runs[*]} req/s (median $f), peer link $PEER_PROTOCOL"
awk -v n="$n" -v f="$f" 'BEGIN { printf "flowgate chain / nginx chain: %.2f\n", f / n }'
