#!/usr/bin/env bash
# Instructions flowgate executes per HTTP/2 (h2c) request: bench/instructions.sh with
# PROTO=h2. Usage: bench/instructions-h2.sh [PATH]; CONNS=8 STREAMS=8 REQUESTS=20000.
PROTO=h2 exec "$(dirname "${BASH_SOURCE[0]}")/instructions.sh" "$@"
