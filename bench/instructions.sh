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
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
path=${1:-/1k}
CONNS=${CONNS:-16}
out=/tmp/flowgate-callgrind.out
(cd "$root" && cargo build --release --bin flowgate >/dev/null 2>&1)
start_origin 1
rm -f "$out"
if [ "${TARGET:-flowgate}" = nginx ]; then
  nginx_proxy proxy 18101 127.0.0.1:18080
  cmd=(nginx -c "$run/proxy.conf")
else
  cmd=("$root/target/release/flowgate" serve --config "$root/bench/flowgate-bench.toml")
fi
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "${cmd[@]}" >/dev/null 2>&1 &
vg=$!; pids+=($vg)
wait_ok "http://127.0.0.1:18101$path"
wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:18101$path" >/dev/null
callgrind_control -i on "$vg" >/dev/null
n=$(wrk -t1 -c"$CONNS" -d4s "http://127.0.0.1:18101$path" | awk '/requests in/ {print $1}')
callgrind_control -i off "$vg" >/dev/null
kill -TERM "$vg"; wait "$vg" 2>/dev/null || true
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
awk -v t="$total" -v n="$n" -v p="$path" 'BEGIN { printf "%s: %d requests, %.0f instructions per request\n", p, n, t / n }'
