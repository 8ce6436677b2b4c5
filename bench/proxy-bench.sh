#!/usr/bin/env bash
# Whole-proxy comparison: flowgate beside nginx and HAProxy in one run of the shared
# script (one core each, keep-alive to the origin). Extra args are passed as env, e.g.
#   bench/proxy-bench.sh                       # full run, ~7 min
#   BODIES=1k ROUNDS=2 bench/proxy-bench.sh    # shorter
# Prints the script's markdown table; JSON lands in /tmp/proxy-bench/last.json.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${PROXY_BENCH:-$root/../shared/bench/proxy-bench.sh}
[ -x "$shared" ] || [ -f "$shared" ] || { echo "no $shared (set PROXY_BENCH)" >&2; exit 2; }
(cd "$root" && cargo build --release --bin flowgate)
export PROXY_NAME=flowgate PROXY_PORT=18101
export PROXY_CMD="exec $root/target/release/flowgate serve --config $here/flowgate-bench.toml"
exec bash "$shared"
