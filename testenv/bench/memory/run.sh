#!/usr/bin/env bash
# Memory of idle built-in plugins: RSS and PSS (/proc/PID/smaps_rollup) of five idle
# plugins under one sitelinkd, started from the one built-in binary (plugins/builtin,
# hard-linked as bin/plugins/NAME), against the same five started from separate
# single-plugin binaries (go build ./plugins/logcache, copied five times: what the
# package shipped before). Five logcache instances stand for five plugins: every
# built-in plugin maps the same file, and logcache needs no network to be idle.
#
#   testenv/bench/memory/run.sh            (as root, after make build)
set -euo pipefail
cd "$(dirname "$0")/../../.."
[ "$(id -u)" = 0 ] || { echo "run as root (plugins run as nobody)" >&2; exit 1; }
[ -x bin/sitelinkd ] && [ -x bin/plugins/logcache ] || { echo "make build first" >&2; exit 1; }

work=$(mktemp -d); chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

# measure DIR BIN1..BIN5: runs five logcache entries, entry i from BINi; prints the
# plugins' mean RSS and PSS in kB.
measure() {
  local d=$1; shift
  mkdir -p "$d/pd"; chmod 755 "$d"
  {
    printf 'daemon:\n  plugin_dir: %s\n  plugins_d: %s/pd\n  state_dir: %s/state\n  runtime_dir: %s/run\n  socket: %s/admin.sock\n  plugin_user: nobody\nplugins:\n' \
      "$(dirname "$1")" "$d" "$d" "$d" "$d"
    local i=0
    for b in "$@"; do
      i=$((i + 1)); mkdir -p "$d/c$i"; chown nobody "$d/c$i"
      printf '  lc%d:\n    binary: %s\n    config:\n      dir: %s/c%d\n' "$i" "$b" "$d" "$i"
    done
  } > "$d/c.yaml"
  bin/sitelinkd --config "$d/c.yaml" --log-format json > "$d/log" 2>&1 &
  local pid=$! ok=""
  for _ in $(seq 150); do
    if [ "$(bin/sitelinkctl --socket "$d/admin.sock" status 2>/dev/null | grep -cE '^lc[0-9] +running')" = "$#" ]; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { echo "plugins did not start:"; tail -5 "$d/log"; kill "$pid"; exit 1; }
  sleep 3   # idle
  local rss=0 pss=0 n=0
  for c in $(ps -eo pid=,ppid= | awk -v p="$pid" '$2==p {print $1}'); do
    rss=$((rss + $(awk '/^VmRSS:/ {print $2}' "/proc/$c/status")))
    pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$c/smaps_rollup")))
    n=$((n + 1))
  done
  kill "$pid"; wait "$pid" || true
  echo "$((rss / n)) $((pss / n))"
}

# The built-in binary, copied to a new inode so no other process shares its pages.
mkdir -p "$work/one"; cp bin/plugins/logcache "$work/one/logcache"  # run as logcache
b=$work/one/logcache
read -r one_rss one_pss < <(measure "$work/m1" "$b" "$b" "$b" "$b" "$b")
# Five separate single-plugin binaries (five inodes).
mkdir -p "$work/sep"
# The Makefile's build tags (BUILD_TAGS), so both sides are built alike.
tags=$(sed -n 's/^BUILD_TAGS *:= *//p' Makefile)
CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags '-s -w' -o "$work/sep/logcache1" ./plugins/logcache
for i in 2 3 4 5; do cp "$work/sep/logcache1" "$work/sep/logcache$i"; done
s=$work/sep
read -r sep_rss sep_pss < <(measure "$work/m2" "$s/logcache1" "$s/logcache2" "$s/logcache3" "$s/logcache4" "$s/logcache5")

echo "five idle plugins (kB per plugin)       RSS     PSS"
printf "one built-in binary (%d MB)          %7d %7d\n" "$(( $(stat -c %s "$b") / 1000000 ))" "$one_rss" "$one_pss"
printf "separate binaries (%d MB each)       %7d %7d\n" "$(( $(stat -c %s "$s/logcache1") / 1000000 ))" "$sep_rss" "$sep_pss"
awk -v a="$one_pss" -v b="$sep_pss" -v c="$one_rss" -v d="$sep_rss" \
  'BEGIN {printf "built-in / separate: RSS %.2f, PSS %.2f\n", c/d, a/b}'
