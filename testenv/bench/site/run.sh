#!/usr/bin/env bash
# Whole-site benchmark (needs root, wg, nft, iperf3): the gap in the remote user's traffic
# after SIGKILL of the master connector's sitelinkd at the default and the low-latency
# VRRP profiles, and iperf3 throughput remote user → app through gateway, tunnel and
# SNAT compared with stock wireguard-go + one nft rule on the same path. Prints Markdown
# (progress on stderr); docs/benchmarks/site.md records a run. Extra arguments go to the
# program (-rounds-default 5 -rounds-low 10 -t 5 -iperf-runs 3). About 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export GOTOOLCHAIN=local CGO_ENABLED=0
for t in ip wg nft iperf3; do command -v "$t" >/dev/null || { echo "site bench: $t missing (make deps)" >&2; exit 1; }; done
[ -x bin/sitelinkd ] || make build >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/sitebench" ./testenv/bench/site
"$tmp/sitebench" -bin "$PWD/bin" "$@"
