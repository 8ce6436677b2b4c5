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
# the median of each chain is reported, with the ratio; beside it the CPU time both proxies
# of a chain spent per request (utime + stime from /proc, the origin left out), which this
# shared machine's steal moves far less than req/s. Needs nginx and wrk.
# Usage: bench/hop-bench.sh; ROUNDS=3 DURATION=10 PEER_PROTOCOL=http2|http1.
# COUNT=a (the proxy the client talks to) or COUNT=b (the peer proxy) runs that proxy
# under callgrind instead and prints the instructions it executes per request (wrk,
# DURATION s, -c64), the figure that does not move with this machine's noise; the
# profile is left in /tmp/flowgate-hop-callgrind.out. FLOWGATE=path runs that binary.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}; PEER_PROTOCOL=${PEER_PROTOCOL:-http2}
# FLOWGATE=path runs that binary instead of building one (to compare two builds).
bin=${FLOWGATE:-$root/target/release/flowgate}
[ -n "${FLOWGATE:-}" ] || (cd "$root" && cargo build --release --bin flowgate >/dev/null 2>&1)
start_origin 1
nginx_proxy edge 18202 127.0.0.1:18080
taskset -c 1 nginx -c "$run/edge.conf" & pids+=($!); nginx_pids=($!)
nginx_proxy entry 18201 127.0.0.1:18202
taskset -c 1 nginx -c "$run/entry.conf" & pids+=($!); nginx_pids+=($!)

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
[drain]
delay = "0s"
timeout = "2s"
EOF
  local vg=()
  [ "${COUNT:-}" = "$1" ] && vg=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$cg_out")
  taskset -c 1 "${vg[@]}" "$bin" serve --config "$run/$1.toml" 2>>"$run/flowgate.err" & pids+=($!)
  [ "${COUNT:-}" = "$1" ] && counted=$!
  flowgate_pids+=($!)
  return 0
}
cg_out=/tmp/flowgate-hop-callgrind.out; counted=; flowgate_pids=()
flowgate_conf a 18301 18311 18309 b 18312
flowgate_conf b 18302 18312 18319 a 18311

wait_ok http://127.0.0.1:18201/
wait_ok http://127.0.0.1:18301/
# Until a's probes have found b usable (a proxy under callgrind starts slowly).
for _ in $(seq 100); do
  region=$(curl -fsS -D - -o /dev/null http://127.0.0.1:18301/ | tr -d '\r' | awk -F': ' 'tolower($1) == "x-flowgate-region" {print $2}' || true)
  [ "$region" = b ] && break
  sleep 0.2
done
[ "$region" = b ] || { echo "flowgate a did not forward to b (served by: $region)" >&2; exit 1; }

if [ -n "${COUNT:-}" ]; then
  taskset -c 0 wrk -t1 -c64 -d2s http://127.0.0.1:18301/ >/dev/null
  callgrind_control -i on "$counted" >/dev/null
  n=$(taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" http://127.0.0.1:18301/ | awk '/requests in/ {print $1}')
  callgrind_control -i off "$counted" >/dev/null
  kill -TERM "$counted"; wait "$counted" 2>/dev/null || true
  total=$(callgrind_annotate "$cg_out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  awk -v t="$total" -v n="$n" -v c="$COUNT" -v p="$PEER_PROTOCOL" \
    'BEGIN { printf "proxy %s, peer link %s: %d requests, %.0f instructions per request\n", c, p, n, t / n }'
  exit 0
fi
# ticks PID...: the CPU time (user + system, clock ticks) the processes have used so far.
ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{t += $1} END {print t}'; }
hz=$(getconf CLK_TCK)
# trial URL PID...: one measured wrk run; prints its req/s and the CPU microseconds the PIDs
# spent per request.
trial() {
  local url=$1; shift
  local t0 t1 out
  t0=$(ticks "$@")
  out=$(taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" "$url")
  t1=$(ticks "$@")
  awk -v t="$((t1 - t0))" -v hz="$hz" '/requests in/ {n = $1} /Requests\/sec/ {r = $2}
    END {printf "%s %.2f\n", r, t * 1e6 / hz / n}' <<<"$out"
}
taskset -c 0 wrk -t1 -c64 -d2s http://127.0.0.1:18201/ >/dev/null
taskset -c 0 wrk -t1 -c64 -d2s http://127.0.0.1:18301/ >/dev/null
nginx_runs=(); flowgate_runs=(); nginx_cpu=(); flowgate_cpu=()
measure_nginx() { read -r r c < <(trial http://127.0.0.1:18201/ "${nginx_pids[@]}"); nginx_runs+=("$r"); nginx_cpu+=("$c"); }
measure_flowgate() { read -r r c < <(trial http://127.0.0.1:18301/ "${flowgate_pids[@]}"); flowgate_runs+=("$r"); flowgate_cpu+=("$c"); }
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then measure_nginx; measure_flowgate; else measure_flowgate; measure_nginx; fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
n=$(median "${nginx_runs[@]}"); f=$(median "${flowgate_runs[@]}")
nc=$(median "${nginx_cpu[@]}"); fc=$(median "${flowgate_cpu[@]}")
echo "two nginx:    ${nginx_runs[*]} req/s (median $n); ${nginx_cpu[*]} us of CPU per request (median $nc)"
echo "two flowgate: ${flowgate_runs[*]} req/s (median $f); ${flowgate_cpu[*]} us of CPU per request (median $fc), peer link $PEER_PROTOCOL"
awk -v n="$n" -v f="$f" -v nc="$nc" -v fc="$fc" \
  'BEGIN { printf "flowgate chain / nginx chain: %.2f (req/s); CPU per request %.2f of nginx'"'"'s\n", f / n, fc / nc }'
