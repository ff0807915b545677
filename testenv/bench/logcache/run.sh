#!/usr/bin/env bash
# Benchmarks the logcache store (plugins/logcache/store) against dd conv=fdatasync and
# lumberjack on the same filesystem, in the same run, and prints the ratios.
#
# Usage: testenv/bench/logcache/run.sh [DIR]
#   DIR      where to write (default $LOGCACHE_BENCH_DIR or /var/tmp/logcache-bench); it
#            must be on the filesystem you want to measure. Needs about 4 GB free.
#   SMALL_N  256-byte records per benchmark (default 8000000, about 2 GB)
#   LARGE_N  64 KiB records per benchmark (default 32768, 2 GiB)
#   DD_MB    MiB written by each dd run (default 2048)
#   ROUNDS   how many times the throughput round is repeated (default 1)
#   SUMMARY_ONLY=1  print the summary of DIR/results.txt again, without measuring
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
DIR=${1:-${LOGCACHE_BENCH_DIR:-/var/tmp/logcache-bench}}
SMALL_N=${SMALL_N:-8000000}
LARGE_N=${LARGE_N:-32768}
DD_MB=${DD_MB:-2048}
ROUNDS=${ROUNDS:-1}

mkdir -p "$DIR"
BIN="$DIR/store.test"
OUT="$DIR/results.txt"
if [[ ${SUMMARY_ONLY:-} == 1 ]]; then
	MEASURE=0
else
	MEASURE=1
	: >"$OUT"
	(cd "$ROOT" && go test -c -o "$BIN" ./plugins/logcache/store)
fi
export LOGCACHE_BENCH_DIR="$DIR"

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "# filesystem: $(df -hT "$DIR" | awk 'NR==2 {print $1, $2, $3 " total"}'), dir $DIR"
echo "# $(go version)"

# dd_run prints the MB/s (10^6) of writing DD_MB MiB with bs=1M and one fdatasync at the end.
dd_run() {
	local out
	out=$(dd if=/dev/zero of="$DIR/dd.bin" bs=1M count="$DD_MB" conv=fdatasync 2>&1 | tail -1)
	rm -f "$DIR/dd.bin"
	echo "$out" | awk '{ for (i = 1; i <= NF; i++) if ($i == "copied,") s = $(i + 1); printf "%.1f\n", $1 / s / 1e6 }'
}

# bench PATTERN BENCHTIME: runs the benchmarks matching PATTERN, tees their result lines.
bench() {
	"$BIN" -test.run '^$' -test.bench "$1" -test.benchtime "$2" -test.count 1 -test.timeout 60m |
		{ grep -E '^Benchmark' || echo "no benchmark matched $1" >&2; } | tee -a "$OUT"
}

dd_record() {
	local r
	r=$(dd_run)
	echo "dd $r" >>"$OUT"
	echo "dd bs=1M count=$DD_MB conv=fdatasync: $r MB/s"
}

for round in $(seq "$ROUNDS"); do
	[[ $MEASURE == 1 ]] || break
	echo "## round $round"
	dd_record
	bench '^BenchmarkAppend$/^(interval|interval-nowriteback|always|never)$/^256B$' "${SMALL_N}x"
	bench '^BenchmarkWrite$/^interval$/^256B$' "${SMALL_N}x"
	bench '^BenchmarkLumberjack$/^256B$' "${SMALL_N}x"
	bench '^BenchmarkAppend$/^(interval|interval-nowriteback|never)$/^64KiB$' "${LARGE_N}x"
	bench '^BenchmarkWrite$/^interval$/^64KiB$' "${LARGE_N}x"
	bench '^BenchmarkLumberjack$/^64KiB$' "${LARGE_N}x"
	dd_record
done

if [[ $MEASURE == 1 ]]; then
	echo "## open and memory"
	bench '^BenchmarkOpen$' 20x
	# One process per ring size, so that each peak RSS is its own.
	bench '^BenchmarkRSS$/^max=64MiB$' "${SMALL_N}x"
	bench '^BenchmarkRSS$/^max=10GiB$' "${SMALL_N}x"
fi

# The summary reads results.txt only: SUMMARY_ONLY=1 prints it again without measuring.
summarize() {
	awk '
	function metric(unit,   i) { for (i = 3; i < NF; i++) if ($(i + 1) == unit) return $i; return "" }
	function median(name, u,   i, m, v, t, j) {
		m = cnt[name]; if (m == 0 || (name, u, 1) in val == 0) return ""
		for (i = 1; i <= m; i++) v[i] = val[name, u, i] + 0
		for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
	}
	$1 == "dd" { dd[++nd] = $2 + 0; ddlist = ddlist " " $2; next }
	/^Benchmark/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		if (!(name in cnt)) order[++k] = name
		c = ++cnt[name]
		for (i = 3; i < NF; i += 2) val[name, $(i + 1), c] = $i
	}
	END {
		for (i = 1; i <= nd; i++) for (j = i + 1; j <= nd; j++) if (dd[j] < dd[i]) { t = dd[i]; dd[i] = dd[j]; dd[j] = t }
		ddmed = (nd % 2) ? dd[(nd + 1) / 2] : (dd[nd / 2] + dd[nd / 2 + 1]) / 2
		printf "dd bs=1M conv=fdatasync runs (MB/s):%s; median %.1f (the \"x dd\" column divides by it)\n", ddlist, ddmed
		printf "figures are medians over %d round(s); lag = Write returned -> WaitDurable returned\n\n", cnt[order[1]]
		printf "%-44s %7s %9s %5s %5s %7s %7s %7s %7s %7s\n", "benchmark", "MB/s", "rec/s", "x dd", "x lj", "ack p50", "lag p50", "lag p99", "lag max", "fsync max"
		for (i = 1; i <= k; i++) {
			name = order[i]
			if (name !~ /^Benchmark(Append|Write|Lumberjack)\//) continue
			sz = name; sub(/.*\//, "", sz)
			m = median(name, "MB/s"); lj = median("BenchmarkLumberjack/" sz, "MB/s")
			printf "%-44s %7.1f %9.0f %5.2f %5s %7s %7s %7s %7s %7s\n", name, m, median(name, "rec/s"), m / ddmed,
				lj ? sprintf("%.2f", m / lj) : "-", median(name, "ack-p50-ms"), median(name, "lag-p50-ms"),
				median(name, "lag-p99-ms"), median(name, "lag-max-ms"), median(name, "fsync-max-ms")
		}
		print ""
		for (i = 1; i <= k; i++) {
			name = order[i]
			if (name ~ /^BenchmarkOpen\//) printf "%-44s %8.3f ms per Open (median)\n", name, median(name, "ms/open")
			if (name ~ /^BenchmarkRSS\//) printf "%-44s %8.1f MB peak RSS of the whole test process, %.0f rec/s\n", name, median(name, "peak-RSS-MB"), median(name, "rec/s")
		}
	}' "$OUT"
}
echo
echo "## summary"
summarize
