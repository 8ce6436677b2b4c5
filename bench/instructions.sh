#!/usr/bin/env bash
# Instructions flowgate executes per proxied request (valgrind's callgrind), the one
# figure on this shared machine that does not move with its noise: the same binary and
# load give the same count, so it shows what an optimisation bought to within ~1 %.
#
# flowgate (bench/flowgate-bench.toml, one worker) runs under callgrind in front of an
# nginx origin like proxy-bench.sh's (1 KiB from memory at /1k, a 16 KiB file at /16k,
# keep-alive); wrk warms it up, counting is switched on, wrk sends 4 s of GET /1k over
# CONNS connections, counting is switched off, and the total is divided by the requests
# wrk made. Usage: bench/instructions.sh [PATH] (default /1k); CONNS=16.
# Needs valgrind, nginx and wrk. Leaves the profile in /tmp/flowgate-callgrind.out for
# `callgrind_annotate --inclusive=yes`. TARGET=nginx counts nginx as the proxy instead
# (one worker, upstream keep-alive, as in proxy-bench.sh), for a like-for-like figure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
path=${1:-/1k}
CONNS=${CONNS:-16}
out=/tmp/flowgate-callgrind.out
(cd "$root" && cargo build --release --bin flowgate >/dev/null 2>&1)
run=$(mktemp -d)
mkdir -p "$run/www" "$run/tmp"
head -c 16384 /dev/zero | tr '\0' a > "$run/www/16k"
cat > "$run/origin.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $run/origin.pid; error_log $run/origin.err warn;
events { worker_connections 1024; }
http {
  client_body_temp_path $run/tmp; proxy_temp_path $run/tmp; fastcgi_temp_path $run/tmp;
  uwsgi_temp_path $run/tmp; scgi_temp_path $run/tmp;
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s; default_type text/plain;
  server {
    listen 127.0.0.1:18080;
    root $run/www;
    location = /1k { return 200 "$(head -c 1023 /dev/zero | tr '\0' a)\n"; }
    location / { }
  }
}
EOF
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$run"' EXIT
nginx -c "$run/origin.conf" & pids+=($!)
rm -f "$out"
if [ "${TARGET:-flowgate}" = nginx ]; then
  cat > "$run/proxy.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $run/proxy.pid; error_log $run/proxy.err warn;
events { worker_connections 1024; }
http {
  client_body_temp_path $run/tmp; proxy_temp_path $run/tmp; fastcgi_temp_path $run/tmp;
  uwsgi_temp_path $run/tmp; scgi_temp_path $run/tmp;
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  upstream origin { server 127.0.0.1:18080; keepalive 256; }
  server {
    listen 127.0.0.1:18101;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
  cmd=(nginx -c "$run/proxy.conf")
else
  cmd=("$root/target/release/flowgate" serve --config "$root/bench/flowgate-bench.toml")
fi
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "${cmd[@]}" >/dev/null 2>&1 &
vg=$!; pids+=($vg)
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:18101$path" 2>/dev/null && break
  sleep 0.2
done
wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:18101$path" >/dev/null
callgrind_control -i on "$vg" >/dev/null
n=$(wrk -t1 -c"$CONNS" -d4s "http://127.0.0.1:18101$path" | awk '/requests in/ {print $1}')
callgrind_control -i off "$vg" >/dev/null
kill -TERM "$vg"; wait "$vg" 2>/dev/null || true
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
awk -v t="$total" -v n="$n" -v p="$path" 'BEGIN { printf "%s: %d requests, %.0f instructions per request\n", p, n, t / n }'
