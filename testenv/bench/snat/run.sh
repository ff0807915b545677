#!/bin/sh
# Benchmarks of the snat plugin (see docs/benchmarks/snat.md). Needs root, ip, nft, iperf3.
#   testenv/bench/snat/run.sh [-duration 5s] [-rounds 3] [-streams 1] [-json]
# 1. reconcile of 1,000 access rules (from empty, unchanged, one changed): Go benchmarks
# 2. iperf3 through the connector: SNAT (plugin rules) vs plain forwarding, and the ratio
set -eu
cd "$(dirname "$0")/../../.."
echo "== reconcile of 1,000 access rules"
go test -run '^$' -bench 'Reconcile1000|NftCLI1000' -benchtime 20x -count 3 ./plugins/snat/nft
echo "== iperf3 through the connector"
go run ./testenv/bench/snat "$@"
