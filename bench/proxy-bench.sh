#!/usr/bin/env bash
# Whole-proxy comparison: flowgate beside nginx, HAProxy and Pingora in one run of the
# shared script (one core each, keep-alive to the origin). Extra args are passed as env, e.g.
#   bench/proxy-bench.sh                       # full run, ~9 min
#   BODIES=1k ROUNDS=2 bench/proxy-bench.sh    # shorter
#   PINGORA=0 bench/proxy-bench.sh             # without Pingora
# Pingora is the smallest proxy its docs describe (one HttpPeer to the script's origin,
# threads = 1, h2c on): ../shared/bench/pingora-anchor, built here on first use (needs
# cmake; its build takes about 9 minutes on 2 cores) into PINGORA_TARGET, or taken ready
# built from PINGORA_BIN.
# Prints the script's markdown table; JSON lands in /tmp/proxy-bench/last.json.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${PROXY_BENCH:-$root/../shared/bench/proxy-bench.sh}
[ -x "$shared" ] || [ -f "$shared" ] || { echo "no $shared (set PROXY_BENCH)" >&2; exit 2; }
(cd "$root" && cargo build --release --bin flowgate)
export PROXY_NAME=flowgate PROXY_PORT=18101
export PROXY_CMD="exec $root/target/release/flowgate serve --config $here/flowgate-bench.toml"
if [ "${PINGORA:-1}" != 0 ]; then
  pingora=${PINGORA_BIN:-}
  if [ -z "$pingora" ]; then
    anchor=${PINGORA_ANCHOR:-$(dirname "$shared")/pingora-anchor}
    target=${PINGORA_TARGET:-/tmp/pingora-anchor-target}
    [ -d "$anchor" ] || { echo "no $anchor (set PINGORA_ANCHOR or PINGORA_BIN, or PINGORA=0)" >&2; exit 2; }
    CARGO_TARGET_DIR=$target cargo build --release --manifest-path "$anchor/Cargo.toml"
    pingora=$target/release/pingora-anchor
  fi
  export PROXY2_NAME=pingora PROXY2_PORT=18111
  export PROXY2_CMD="exec $pingora 127.0.0.1:\$PROXY2_PORT \$ORIGIN_ADDR 1"
fi
exec bash "$shared"
