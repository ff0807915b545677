#!/usr/bin/env bash
# Proxy benchmarks on loopback: the proxy's relay vs HAProxy (and nginx stream when
# installed), measured in the same run. Usage: testenv/bench/proxy/run.sh
#   AGENTS=8000  slow agents for the latency/RSS run   DUR=5  seconds per throughput run
#   SOAK=600     also run a soak of SOAK seconds at AGENTS agents (fd/goroutine growth)
#   RATE_ROUNDS=1  rounds of the connection-rate runs (alternating the relays)
#   ONLY="soak"  run only the named sections (tput rate agents ingest soak; default: all)
#   INGEST_AGENTS=500 INGEST_SYNC="interval always"  cache-mode ingestion: agents, log cache policies
#   INGEST_DIR=/var/tmp  where the log cache of the ingestion runs lives (on disk, not tmpfs)
#   TPUT_ROUNDS=1  rounds of the throughput runs (relays alternating within each round;
#                  with more than one, medians and min-max per relay are printed)
#   STREAMS="1 8"  iperf3 stream counts of the throughput runs
#   NGINX=0        leave nginx out
#   HAPROXY_SPLICE=0  HAProxy without `option splice-auto` (copies through its buffers;
#                  the default lets it splice, its fastest TCP setting)
#   BASE=REV       also run the relay built from git revision REV ("base", ports 57xx) in the
#                  throughput and rate rounds, alternating with the others (before/after)
# Everything runs in a network namespace of its own (loopback only), created here.
set -euo pipefail
cd "$(dirname "$0")/../../.."
if [ -z "${PROXYBENCH_NETNS:-}" ]; then
  exec env PROXYBENCH_NETNS=1 unshare --net -- "$0" "$@"
fi
ip link set lo up
AGENTS=${AGENTS:-8000}
DUR=${DUR:-5}
SOAK=${SOAK:-0}
ONLY=${ONLY:-}
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
T=$(mktemp -d /tmp/proxybench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
command -v iperf3 >/dev/null || { echo "iperf3 missing (apt-get install iperf3)"; exit 1; }
command -v haproxy >/dev/null || { echo "haproxy missing"; exit 1; }
go build -o "$T/proxybench" ./testenv/bench/proxy/proxybench
if [ -n "${BASE:-}" ]; then
  mkdir "$T/base"
  git archive "$BASE" | tar -x -C "$T/base"
  (cd "$T/base" && go build -o "$T/proxybench-base" ./testenv/bench/proxy/proxybench)
fi

# Ports: 52xx iperf3/echo servers, 53xx sitelink, 54xx haproxy, 55xx nginx.
iperf3 -s -p 5201 >/dev/null 2>&1 & pids+=($!)
"$T/proxybench" echo -listen 127.0.0.1:5202 & pids+=($!)
"$T/proxybench" relay -routes "ip=127.0.0.1:5301>127.0.0.1:5201,echo=127.0.0.1:5302>127.0.0.1:5202" -stats 127.0.0.1:5309 & SL=$!; pids+=($SL)
cat > "$T/haproxy.cfg" <<CFG
global
  maxconn 9000
  nbthread 2
  tune.maxaccept 64
  maxpipes 400
defaults
  mode tcp
$( [ "${HAPROXY_SPLICE:-1}" = 0 ] || echo "  option splice-auto" )
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend ip
  bind 127.0.0.1:5401
  default_backend ip
backend ip
  server s 127.0.0.1:5201
frontend echo
  bind 127.0.0.1:5402
  default_backend echo
backend echo
  server s 127.0.0.1:5202
CFG
BS=""
if [ -n "${BASE:-}" ]; then
  "$T/proxybench-base" relay -routes "ip=127.0.0.1:5701>127.0.0.1:5201,echo=127.0.0.1:5702>127.0.0.1:5202" & BS=$!; pids+=($BS)
fi
haproxy -f "$T/haproxy.cfg" -db >/dev/null 2>&1 & HA=$!; pids+=($HA)
NG=""
if [ "${NGINX:-1}" != 0 ] && command -v nginx >/dev/null && [ -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  cat > "$T/nginx.conf" <<CFG
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 2;
worker_rlimit_nofile 20000;
pid $T/nginx.pid;
error_log $T/nginx.err;
daemon off;
events { worker_connections 19000; }
stream {
  server { listen 127.0.0.1:5501; proxy_pass 127.0.0.1:5201; }
  server { listen 127.0.0.1:5502; proxy_pass 127.0.0.1:5202; }
}
CFG
  nginx -c "$T/nginx.conf" -p "$T" & NG=$!; pids+=($NG)
fi
sleep 1
kill -0 "$HA" 2>/dev/null || { echo "haproxy did not start"; exit 1; }

echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
tput() { iperf3 -c 127.0.0.1 -p "$1" -t "$DUR" -P "$2" -J | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9) if "sum_received" in d.get("end",{}) else "error(%s)" % d.get("error"))'; sleep 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# summary NAME VALUES...: median and min-max of the values
summary() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[2:] if not x.startswith("error")]; print("%s median %.2f (min %.2f, max %.2f, n=%d)" % (sys.argv[1], statistics.median(v), min(v), max(v), len(v)) if v else sys.argv[1]+" no result")' "$@"; }
ratio() { python3 -c 'import statistics,sys; a,b=(statistics.median(float(x) for x in s.split()) for s in sys.argv[1:3]); print("%.2f" % (a/b))' "$1" "$2"; }
if want tput; then
TR=${TPUT_ROUNDS:-1}
echo "## relay throughput (Gbit/s, iperf3 -t $DUR, $TR rounds; order within a round: direct sitelink haproxy${BS:+ base}${NG:+ nginx}; load average $(loadavg))"
for p in ${STREAMS:-1 8}; do
  declare -A res=()
  for r in $(seq "$TR"); do
    # Alternate which relay goes first, so neither always follows the same one.
    order="sitelink haproxy"; [ $((r % 2)) = 0 ] && order="haproxy sitelink"
    [ -n "$BS" ] && order="$order base"
    [ -n "$NG" ] && order="$order nginx"
    line="streams=$p round=$r direct=$(tput 5201 $p)"; res[direct]+=" ${line##*=}"
    for w in $order; do
      case $w in sitelink) port=5301;; haproxy) port=5401;; base) port=5701;; nginx) port=5501;; esac
      v=$(tput $port $p); res[$w]+=" $v"; line="$line $w=$v"
    done
    echo "$line load=$(loadavg)"
  done
  if [ "$TR" -gt 1 ]; then
    for w in direct sitelink haproxy ${BS:+base} ${NG:+nginx}; do summary "streams=$p $w" ${res[$w]}; done
    echo "streams=$p sitelink/haproxy (ratio of medians) $(ratio "${res[sitelink]}" "${res[haproxy]}")${BS:+, base/haproxy $(ratio "${res[base]}" "${res[haproxy]}")}"
  fi
  unset res
done
fi
if want rate; then
echo "## new connections per second (connect, 100 B echo, close; 64 workers, ${DUR}s; cpu: the relay's CPU time per connection; load average $(loadavg))"
NGP=""; [ -n "$NG" ] && NGP="$NG,$(pgrep -d, -P "$NG")"
declare -A rr=()
rate() { local out; out=$("$T/proxybench" rate "$@"); echo "$out load=$(loadavg)"; rr[$label]+=" $(echo "$out" | awk '{print $2}')"; }
for r in $(seq "${RATE_ROUNDS:-1}"); do
  order="sitelink haproxy"; [ $((r % 2)) = 0 ] && order="haproxy sitelink"
  for label in direct $order ${BS:+base} ${NG:+nginx}; do
    case $label in
      direct) rate -target 127.0.0.1:5202 -duration "${DUR}s" -label direct;;
      sitelink) rate -target 127.0.0.1:5302 -duration "${DUR}s" -label sitelink -pids "$SL";;
      haproxy) rate -target 127.0.0.1:5402 -duration "${DUR}s" -label haproxy -pids "$HA";;
      base) rate -target 127.0.0.1:5702 -duration "${DUR}s" -label base -pids "$BS";;
      nginx) rate -target 127.0.0.1:5502 -duration "${DUR}s" -label nginx -pids "$NGP";;
    esac
  done
done
if [ "${RATE_ROUNDS:-1}" -gt 1 ]; then
  for w in direct sitelink haproxy ${BS:+base} ${NG:+nginx}; do summary "conn/s $w" ${rr[$w]}; done
  echo "conn/s sitelink/haproxy (ratio of medians) $(ratio "${rr[sitelink]}" "${rr[haproxy]}")${BS:+, base/haproxy $(ratio "${rr[base]}" "${rr[haproxy]}")}"
fi
fi
if want agents; then
echo "## $AGENTS agents, 100 B every 3 s (latency of the round trip; RSS of the proxy process)"
"$T/proxybench" agents -target 127.0.0.1:5202 -conns "$AGENTS" -duration 15s -label direct
"$T/proxybench" agents -target 127.0.0.1:5302 -conns "$AGENTS" -duration 15s -pid "$SL" -label sitelink
curl -s 127.0.0.1:5309/stats || true
"$T/proxybench" agents -target 127.0.0.1:5402 -conns "$AGENTS" -duration 15s -pid "$HA" -label "haproxy(pid $HA; rss of the master process)"
if [ -n "$NG" ]; then
  for w in $(pgrep -P "$NG"); do NGW=$w; done
  "$T/proxybench" agents -target 127.0.0.1:5502 -conns "$AGENTS" -duration 15s -pid "${NGW:-$NG}" -label "nginx(one worker of 2)"
fi
fi
if want ingest; then
  # The real path: agents -> proxy plugin (cache listener) -> sitelinkd -> logcache plugin
  # -> store, each agent's records acknowledged only once durable under the log cache's
  # sync policy. The peer: the same records, wrapped as the proxy stores them, appended
  # straight to a store with the same options, by as many goroutines as there are agents.
  IA=${INGEST_AGENTS:-500}
  # Each agent keeps up to IW records unacknowledged; the proxy appends what it has read
  # (at most 64 KiB, 128 records, per connection) and waits for the acknowledgement
  # before reading more. The peer appends batches of IB records from IA goroutines: the
  # same records in flight at the store.
  IW=${INGEST_WINDOW:-256}; IB=${INGEST_BATCH:-128}
  ID=$(mktemp -d "${INGEST_DIR:-/var/tmp}/proxybench-ingest.XXXXXX"); chmod 755 "$ID"
  trap 'cleanup; rm -rf "$ID"' EXIT
  for b in sitelinkd:./daemon/cmd/sitelinkd sitelinkctl:./daemon/cmd/sitelinkctl plugins/logcache:./plugins/logcache plugins/proxy:./plugins/proxy; do
    CGO_ENABLED=0 go build -o "$ID/bin/${b%%:*}" "${b#*:}"
  done
  chmod 755 "$ID/bin" "$ID/bin/plugins"
  echo "## cache-mode ingestion: $IA agents, 512-byte records, ${DUR}s after 2s warm-up; sitelinkd+logcache+proxy vs the store alone"
  for pol in ${INGEST_SYNC:-interval always}; do
    R="$ID/$pol"; mkdir -p "$R/cache" "$R/plugins.d"; chown 65534:65534 "$R/cache"
    cat > "$R/sitelink.yaml" <<CFG
daemon:
  plugin_dir: $ID/bin/plugins
  plugins_d: $R/plugins.d
  state_dir: $R/state
  runtime_dir: $R/run
  socket: $R/admin.sock
  plugin_user: nobody
plugins:
  logcache:
    config: {dir: $R/cache, max_bytes: 1GiB, segment_bytes: 64MiB, sync: $pol}
  proxy:
    after: [logcache]
    config:
      listeners: [{name: ingest, address: "127.0.0.1:5601", mode: cache}]
      cluster: {node: bench, listen: "127.0.0.1:5608", peers: ["127.0.0.1:5609"], timeout: 500ms}
CFG
    "$ID/bin/sitelinkd" --config "$R/sitelink.yaml" >"$R/daemon.log" 2>&1 & D=$!; pids+=($D)
    "$T/proxybench" ingest -target 127.0.0.1:5601 -agents "$IA" -window "$IW" -duration "${DUR}s" -label "sitelink(sync=$pol)" \
      || { tail -20 "$R/daemon.log"; exit 1; }
    if [ -z "${shown:-}" ]; then
      shown=1
      echo "## sitelinkctl proxy cluster (one configured peer, not running)"
      "$ID/bin/sitelinkctl" --socket "$R/admin.sock" proxy cluster || true
    fi
    kill "$D"; wait "$D" 2>/dev/null || true
    "$T/proxybench" storeappend -dir "$R/direct" -sync "$pol" -callers "$IA" -batch "$IB" -duration "${DUR}s" -label "store(sync=$pol)"
  done
fi
if [ "$SOAK" -gt 0 ] && want soak; then
  # Idle before and after (every agent gone: back to the same goroutines and fds), and
  # with all agents connected at the start and at the end of the soak (no growth while
  # they run); RSS is reported, not judged.
  echo "## soak: $AGENTS agents for ${SOAK}s"
  before="$(curl -s 127.0.0.1:5309/stats) rss_kb $(awk '/VmRSS/{print $2}' /proc/$SL/status)"
  out=$("$T/proxybench" agents -target 127.0.0.1:5302 -conns "$AGENTS" -duration "${SOAK}s" -pid "$SL" -label soak \
    -stats http://127.0.0.1:5309/stats)
  echo "$out"
  for _ in $(seq 50); do
    after=$(curl -s 127.0.0.1:5309/stats)
    [ "$(echo "$after" | awk '{print $6+0}')" = 0 ] && break
    sleep 0.2
  done
  after="$after rss_kb $(awk '/VmRSS/{print $2}' /proc/$SL/status)"
  echo "idle before: $before"; echo "idle after:  $after"
  b=$(echo "$before" | awk '{print $2+0, $4+0}'); a=$(echo "$after" | awk '{print $2+0, $4+0}')
  [ "$b" = "$a" ] || { echo "soak: idle goroutines/fds changed ($b -> $a)"; exit 1; }
  c0=$(echo "$out" | awk '/stats connected/{print $5+0, $7+0}'); c1=$(echo "$out" | awk '/stats end/{print $5+0, $7+0}')
  [ -n "$c0" ] && [ "$c0" = "$c1" ] || { echo "soak: connected goroutines/fds changed ($c0 -> $c1)"; exit 1; }
  echo "soak: ok (idle $b, connected $c0 goroutines/fds)"
fi
