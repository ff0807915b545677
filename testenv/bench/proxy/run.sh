#!/usr/bin/env bash
# Proxy benchmarks on loopback: the proxy's relay vs HAProxy (and nginx stream when
# installed), measured in the same run. Usage: testenv/bench/proxy/run.sh
#   AGENTS=8000  slow agents for the latency/RSS run   DUR=5  seconds per throughput run
#   SOAK=600     also run a soak of SOAK seconds at AGENTS agents (fd/goroutine growth)
set -euo pipefail
cd "$(dirname "$0")/../../.."
AGENTS=${AGENTS:-8000}
DUR=${DUR:-5}
SOAK=${SOAK:-0}
T=$(mktemp -d /tmp/proxybench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
command -v iperf3 >/dev/null || { echo "iperf3 missing (apt-get install iperf3)"; exit 1; }
command -v haproxy >/dev/null || { echo "haproxy missing"; exit 1; }
go build -o "$T/proxybench" ./testenv/bench/proxy/proxybench

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
haproxy -f "$T/haproxy.cfg" -db >/dev/null 2>&1 & HA=$!; pids+=($HA)
NG=""
if command -v nginx >/dev/null && [ -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
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
echo "## relay throughput (Gbit/s, iperf3 -t $DUR)"
for p in 1 8; do
  line="streams=$p direct=$(tput 5201 $p) sitelink=$(tput 5301 $p) haproxy=$(tput 5401 $p)"
  [ -n "$NG" ] && line="$line nginx=$(tput 5501 $p)"
  echo "$line"
done
echo "## new connections per second (connect, 100 B echo, close; 64 workers, ${DUR}s)"
"$T/proxybench" rate -target 127.0.0.1:5202 -duration "${DUR}s" -label direct
"$T/proxybench" rate -target 127.0.0.1:5302 -duration "${DUR}s" -label sitelink
"$T/proxybench" rate -target 127.0.0.1:5402 -duration "${DUR}s" -label haproxy
[ -n "$NG" ] && "$T/proxybench" rate -target 127.0.0.1:5502 -duration "${DUR}s" -label nginx
echo "## $AGENTS agents, 100 B every 3 s (latency of the round trip; RSS of the proxy process)"
"$T/proxybench" agents -target 127.0.0.1:5202 -conns "$AGENTS" -duration 15s -label direct
"$T/proxybench" agents -target 127.0.0.1:5302 -conns "$AGENTS" -duration 15s -pid "$SL" -label sitelink
curl -s 127.0.0.1:5309/stats || true
"$T/proxybench" agents -target 127.0.0.1:5402 -conns "$AGENTS" -duration 15s -pid "$HA" -label "haproxy(pid $HA; rss of the master process)"
if [ -n "$NG" ]; then
  for w in $(pgrep -P "$NG"); do NGW=$w; done
  "$T/proxybench" agents -target 127.0.0.1:5502 -conns "$AGENTS" -duration 15s -pid "${NGW:-$NG}" -label "nginx(one worker of 2)"
fi
if [ "$SOAK" -gt 0 ]; then
  echo "## soak: $AGENTS agents for ${SOAK}s"
  before=$(curl -s 127.0.0.1:5309/stats)
  "$T/proxybench" agents -target 127.0.0.1:5302 -conns "$AGENTS" -duration "${SOAK}s" -pid "$SL" -label soak
  sleep 2
  after=$(curl -s 127.0.0.1:5309/stats)
  echo "before: $before"; echo "after:  $after"
  b=$(echo "$before" | awk '{print $2+0, $4+0}'); a=$(echo "$after" | awk '{print $2+0, $4+0}')
  [ "$b" = "$a" ] || { echo "soak: goroutines/fds changed ($b -> $a)"; exit 1; }
fi
