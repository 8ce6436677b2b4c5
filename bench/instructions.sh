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
# PROTO=h2 (or bench/instructions-h2.sh) counts HTTP/2 requests instead: h2load sends
# REQUESTS (20000) requests over h2c with prior knowledge, CONNS (8) connections of
# STREAMS (8) concurrent streams each, like ../shared/bench/proxy-bench.sh's h2 run.
# Needs valgrind, nginx and wrk (h2load for PROTO=h2). Leaves the profile in
# /tmp/flowgate-callgrind.out for `callgrind_annotate --inclusive=yes`. TARGET=nginx
# counts nginx as the proxy instead (one worker, upstream keep-alive, as in
# proxy-bench.sh), for a like-for-like figure.
# FLOWGATE=path counts that binary instead of building one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
path=${1:-/1k}
PROTO=${PROTO:-h1}
if [ "$PROTO" = h2 ]; then CONNS=${CONNS:-8}; else CONNS=${CONNS:-16}; fi
STREAMS=${STREAMS:-8}; REQUESTS=${REQUESTS:-20000}
out=/tmp/flowgate-callgrind.out
# FLOWGATE=path runs that binary instead of building one (to compare two builds).
bin=${FLOWGATE:-$root/target/release/flowgate}
[ -n "${FLOWGATE:-}" ] || (cd "$root" && cargo build --release --bin flowgate >/dev/null 2>&1)
start_origin 1
rm -f "$out"
if [ "${TARGET:-flowgate}" = nginx ]; then
  nginx_proxy proxy 18101 127.0.0.1:18080
  # nginx speaks h2c only on a listener marked for it (and then only h2c).
  [ "$PROTO" = h2 ] && sed -i 's/listen 127.0.0.1:18101;/listen 127.0.0.1:18101 http2;/' "$run/proxy.conf"
  cmd=(nginx -c "$run/proxy.conf")
else
  cmd=("$bin" serve --config "$root/bench/flowgate-bench.toml")
fi
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "${cmd[@]}" >/dev/null 2>&1 &
vg=$!; pids+=($vg)
url="http://127.0.0.1:18101$path"
if [ "$PROTO" = h2 ]; then
  for _ in $(seq 100); do h2load -n1 "$url" 2>/dev/null | grep -q '1 succeeded' && break; sleep 0.1; done
  load() { h2load -t1 -c"$CONNS" -m"$STREAMS" -n"$1" "$url" | awk '/^requests:/ {print $8}'; }
  load $((REQUESTS / 5)) >/dev/null
  callgrind_control -i on "$vg" >/dev/null
  n=$(load "$REQUESTS")
else
  wait_ok "$url"
  wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
  callgrind_control -i on "$vg" >/dev/null
  n=$(wrk -t1 -c"$CONNS" -d4s "$url" | awk '/requests in/ {print $1}')
fi
callgrind_control -i off "$vg" >/dev/null
kill -TERM "$vg"; wait "$vg" 2>/dev/null || true
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
awk -v t="$total" -v n="$n" -v p="$path" -v v="$PROTO" 'BEGIN { printf "%s %s: %d requests, %.0f instructions per request\n", v, p, n, t / n }'
