#!/usr/bin/env bash
# Tunnel plugin benchmark (needs root): throughput through the plugin vs the plain veth
# path vs a standalone stock wireguard-go, failover times, RSS. Prints a Markdown report
# and writes JSON to testenv/bench/tunnel/results/. Extra arguments go to the program
# (-rounds 3 -t 5 -failovers 3 -v). Takes about 6 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export GOTOOLCHAIN=local CGO_ENABLED=0
testenv/bench/tunnel/install-wireguard-go.sh >/dev/null
go build -o .tools/bin/tunnelbench ./testenv/bench/tunnel
exec .tools/bin/tunnelbench "$@"
