#!/usr/bin/env bash
# Benchmarks the vrrp plugin against keepalived in the same run, with the same settings,
# in network namespaces: failover time after SIGKILL and SIGTERM of the master at 1 s,
# 100 ms and 50 ms advertisement intervals, and CPU/RSS of an instance at 100 ms.
# Needs root, iproute2 and keepalived. Results are Markdown on stdout (progress on
# stderr); docs/benchmarks/vrrp.md records a run.
#
# Usage: testenv/bench/vrrp/run.sh [flags]
#   ROUNDS_SLOW  rounds per scenario at 1 s (default 5)
#   ROUNDS_FAST  rounds per scenario at 100 ms and 50 ms (default 25)
#   CPU_SAMPLE   CPU/RSS sampling time (default 30s)
#   extra flags go to the program, e.g. -only "100 ms"
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=$(mktemp -d)/failoverbench
trap 'rm -rf "$(dirname "$BIN")"' EXIT
(cd "$ROOT" && go build -o "$BIN" ./plugins/vrrp/internal/failoverbench)
echo "# $(go version), $(date -u +%Y-%m-%dT%H:%MZ)"
cd "$ROOT"
"$BIN" -rounds-slow "${ROUNDS_SLOW:-5}" -rounds-fast "${ROUNDS_FAST:-25}" -cpu "${CPU_SAMPLE:-30s}" "$@"
