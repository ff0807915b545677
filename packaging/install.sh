#!/bin/bash
# install.sh - install (or upgrade) the Sitelink site connector on this machine and start
# it. The one command an operator runs as root on a fresh CentOS/RHEL 7, 8 or 9 VM:
#
#   curl -fsSLO https://REPO/install.sh
#   bash install.sh --repo https://REPO [--config my-sitelink.yaml]
#
# Options:
#   --repo URL        a Sitelink yum repository (made by `make repo`): URL/elN/ for this
#                     machine's EL version N, or URL itself; http(s):// or file://
#   --rpm FILE        install this RPM instead of using a repository
#   --config FILE     write FILE as /etc/sitelink/sitelink.yaml (checked first; the old one
#                     is kept as sitelink.yaml.bak-TIMESTAMP); default: keep the existing
#   --gateway H:P     also check that TCP host:port is reachable (repeatable)
#   --gpg-key URL     verify the repository's packages with this key (gpgcheck=1)
#   --timeout SECS    how long to wait for the service to come online (default 90)
#   --uninstall       stop and remove the package; keeps state and the log cache
#   --purge           with --uninstall: also remove /var/lib/sitelink and /var/log/sitelink
#
# Environment:
#   SITELINK_INSTALL_ANY_OS=1   run on a distribution other than EL 7/8/9 (for tests and
#                               trials), installing the package for SITELINK_EL_VERSION
#                               (default 9) with rpm --nodeps when yum/dnf are missing
#   SITELINK_IGNORE_SIZING=1    continue when CPU, memory or disk are below the minimum
#   NO_COLOR=1                  no colours (colours are used only on a terminal anyway)
#
# Every step prints one line: "<step> OK" (green) or "<step> FAIL: reason" (red) with the
# command to see more. Safe to run again: an installed package of the same version, an
# unchanged config and a running service are left as they are.
# Exit status: 0 all steps OK, 1 a step failed, 2 usage error.
set -uo pipefail

MIN_CPUS=2
MIN_MEM_MIB=1800        # 2 GiB VM: the kernel reserves some, MemTotal shows about 1.8-1.9 GiB
MIN_VAR_FREE_GIB=12     # the log cache keeps up to 10 GB, plus state and the package
CONFIG=/etc/sitelink/sitelink.yaml
UNIT=sitelinkd.service

repo="" rpmfile="" config="" gpgkey="" timeout=90 uninstall=0 purge=0
gateways=()

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  GREEN=$'\e[32m' RED=$'\e[31m' YELLOW=$'\e[33m' RESET=$'\e[0m'
else
  GREEN="" RED="" YELLOW="" RESET=""
fi

ok()   { echo "$1 ${GREEN}OK${RESET}${2:+ ($2)}"; }
warn() { echo "${YELLOW}warning:${RESET} $*"; }
# fail STEP REASON SEE: prints the FAIL line and exits.
fail() {
  echo "$1 ${RED}FAIL${RESET}: $2"
  [ -n "${3:-}" ] && echo "  see: $3"
  exit 1
}
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case $1 in
    --repo) repo=${2:-}; shift 2 || usage 2 ;;
    --rpm) rpmfile=${2:-}; shift 2 || usage 2 ;;
    --config) config=${2:-}; shift 2 || usage 2 ;;
    --gateway) gateways+=("${2:-}"); shift 2 || usage 2 ;;
    --gpg-key) gpgkey=${2:-}; shift 2 || usage 2 ;;
    --timeout) timeout=${2:-}; shift 2 || usage 2 ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$uninstall" = 0 ]; then
  if [ -z "$repo" ] && [ -z "$rpmfile" ]; then
    echo "install.sh: give --repo URL or --rpm FILE (see --help)" >&2; exit 2
  fi
  if [ -n "$repo" ] && [ -n "$rpmfile" ]; then
    echo "install.sh: give --repo or --rpm, not both" >&2; exit 2
  fi
fi
[ "$purge" = 1 ] && [ "$uninstall" = 0 ] && { echo "install.sh: --purge goes with --uninstall" >&2; exit 2; }
[[ $timeout =~ ^[0-9]+$ ]] || { echo "install.sh: --timeout wants seconds" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 2; }

# The package manager: dnf (EL8/9), yum (EL7), else plain rpm (only with the override).
pm=rpm
if command -v dnf >/dev/null 2>&1; then pm=dnf
elif command -v yum >/dev/null 2>&1; then pm=yum
fi

installed_evr() { rpm -q --qf '%{VERSION}-%{RELEASE}\n' sitelink 2>/dev/null | head -1 | grep -v 'not installed'; }

# --- uninstall -------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
  step="package removed"
  if [ -z "$(installed_evr)" ]; then
    ok "$step" "sitelink was not installed"
  else
    log=$(mktemp)
    if [ "$pm" = rpm ]; then
      SITELINK_PURGE=$purge rpm -e sitelink >"$log" 2>&1
    else
      SITELINK_PURGE=$purge "$pm" -y remove sitelink >"$log" 2>&1
    fi || fail "$step" "$(tail -n 3 "$log" | tr '\n' ' ')" "$log"
    rm -f "$log"
    ok "$step"
  fi
  if [ "$purge" = 1 ]; then
    rm -rf /var/lib/sitelink /var/log/sitelink
    ok "data purged" "/var/lib/sitelink /var/log/sitelink"
  else
    echo "  state and log cache kept in /var/lib/sitelink and /var/log/sitelink (--purge removes them)"
  fi
  exit 0
fi

# --- 1. operating system ---------------------------------------------------------------
step="OS supported"
[ -r /etc/os-release ] || fail "$step" "no /etc/os-release: cannot tell which distribution this is"
IFS='|' read -r os_id os_like os_name os_ver < <(
  # shellcheck source=/dev/null
  . /etc/os-release; echo "${ID:-}|${ID_LIKE:-}|${PRETTY_NAME:-${NAME:-unknown}}|${VERSION_ID:-}")
el=""
case " $os_id $os_like " in
  *" rhel "*|*" centos "*|*" fedora "*) el=${os_ver%%.*} ;;
esac
[ "$os_id" = fedora ] && el=""   # Fedora itself is not EL
nodeps=""
if [[ $el =~ ^(7|8|9)$ ]]; then
  ok "$step" "$os_name, package for el$el"
elif [ "${SITELINK_INSTALL_ANY_OS:-}" = 1 ]; then
  el=${SITELINK_EL_VERSION:-9}
  [[ $el =~ ^(7|8|9)$ ]] || fail "$step" "SITELINK_EL_VERSION=$el: want 7, 8 or 9"
  nodeps=--nodeps   # this distribution's packages are not in the rpm database
  ok "$step" "$os_name is not EL 7/8/9; allowed by SITELINK_INSTALL_ANY_OS=1, package for el$el"
else
  fail "$step" "this is $os_name; Sitelink supports CentOS/RHEL 7, 8 and 9 (and rebuilds such as Rocky and AlmaLinux)" \
    "cat /etc/os-release (SITELINK_INSTALL_ANY_OS=1 tries anyway, unsupported)"
fi
arch=$(uname -m)
[ "$arch" = x86_64 ] || fail "$step" "this machine is $arch; Sitelink's package is for x86_64" "uname -m"
[ "$pm" = rpm ] && [ -z "$nodeps" ] && fail "$step" "neither dnf nor yum is installed" "rpm -q yum dnf"
command -v rpm >/dev/null 2>&1 || fail "$step" "rpm is not installed" "command -v rpm"
command -v systemctl >/dev/null 2>&1 || fail "$step" "systemd is not running this machine (no systemctl)" "ps -p 1"

# --- 2. CPU, memory, disk against the README's sizing table -----------------------------
step="CPU and memory"
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)
mem_mib=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
mkdir -p /var/log
var_free_gib=$(df -Pk /var/log | awk 'NR==2 {print int($4/1024/1024)}')
short=()
[ "$cpus" -ge "$MIN_CPUS" ] || short+=("$cpus CPU(s), need $MIN_CPUS")
[ "$mem_mib" -ge "$MIN_MEM_MIB" ] || short+=("$mem_mib MiB memory, need 2 GiB")
[ "$var_free_gib" -ge "$MIN_VAR_FREE_GIB" ] || short+=("$var_free_gib GiB free under /var/log, need $MIN_VAR_FREE_GIB GiB")
summary="$cpus CPUs, $mem_mib MiB memory, $var_free_gib GiB free under /var/log"
if [ ${#short[@]} -eq 0 ]; then
  ok "$step" "$summary"
elif [ "${SITELINK_IGNORE_SIZING:-}" = 1 ]; then
  warn "below the minimum: ${short[*]} (continuing: SITELINK_IGNORE_SIZING=1)"
  ok "$step" "$summary, below minimum"
else
  fail "$step" "below the minimum (README, Operating Sitelink, Sizing): ${short[*]}" \
    "nproc; free -m; df -h /var/log (SITELINK_IGNORE_SIZING=1 continues anyway)"
fi

# --- 3. network ------------------------------------------------------------------------
step="network"
# fetch URL DEST: file://, http:// or https://.
fetch() {
  case $1 in
    file://*) cp -- "${1#file://}" "$2" 2>/dev/null ;;
    http://*|https://*)
      if command -v curl >/dev/null 2>&1; then curl -fsSL --connect-timeout 10 --max-time 120 -o "$2" "$1"
      elif command -v wget >/dev/null 2>&1; then wget -q -T 30 -O "$2" "$1"
      else echo "neither curl nor wget is installed" >&2; return 1
      fi ;;
    *) echo "unsupported URL $1 (want file://, http:// or https://)" >&2; return 1 ;;
  esac
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
notes=()
if [ -n "$repo" ]; then
  repo=${repo%/}
  base=""
  for cand in "$repo/el$el" "$repo"; do
    if fetch "$cand/repodata/repomd.xml" "$tmp/repomd.xml" 2>"$tmp/fetch.err"; then base=$cand; break; fi
  done
  [ -n "$base" ] || fail "$step" "cannot fetch $repo/el$el/repodata/repomd.xml nor $repo/repodata/repomd.xml: $(head -c 300 "$tmp/fetch.err")" \
    "curl -v $repo/el$el/repodata/repomd.xml; ip route; cat /etc/resolv.conf"
  notes+=("repository $base reachable")
else
  [ -r "$rpmfile" ] || fail "$step" "cannot read $rpmfile" "ls -l $rpmfile"
  notes+=("local package, no repository needed")
fi
if ! ip route show default 2>/dev/null | grep -q . && ! ip -6 route show default 2>/dev/null | grep -q .; then
  notes+=("no default route: the tunnel needs outbound UDP to the gateways")
  warn "no default route on this machine: sitelink's tunnel needs outbound UDP to the platform's gateways"
fi
for gw in "${gateways[@]}"; do
  host=${gw%:*} port=${gw##*:}
  if ! [[ $port =~ ^[0-9]+$ ]] || [ -z "$host" ] || [ "$host" = "$gw" ]; then
    fail "$step" "--gateway $gw: want host:port"
  fi
  timeout 5 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null ||
    fail "$step" "cannot connect to $gw (TCP, 5 s)" "curl -v telnet://$gw; ip route get \$(getent hosts $host | awk '{print \$1}')"
  notes+=("$gw reachable")
done
joined=$(printf '%s; ' "${notes[@]}")
ok "$step" "${joined%; }"

# --- 4. the package --------------------------------------------------------------------
step="package installed"
before=$(installed_evr)
log=$tmp/pm.log
# newer A B: true when version-release A sorts after B.
newer() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -1)" = "$1" ]; }
# rpm_install FILE: install or upgrade with plain rpm, unless the same or a newer one is there.
rpm_install() {
  local want
  want=$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$1" 2>"$log") || return 1
  if [ -n "$before" ] && ! newer "$want" "$before"; then return 0; fi
  # shellcheck disable=SC2086
  rpm -Uvh $nodeps "$1" >"$log" 2>&1
}
if [ -n "$rpmfile" ]; then
  case $pm in
    rpm) rpm_install "$rpmfile" ;;
    *)
      want=$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpmfile" 2>"$log")
      if [ -n "$before" ] && ! newer "$want" "$before"; then true
      elif [ "$pm" = yum ]; then yum -y localinstall "$rpmfile" >"$log" 2>&1
      else dnf -y install "$rpmfile" >"$log" 2>&1
      fi ;;
  esac || fail "$step" "$(tail -n 3 "$log" | tr '\n' ' ')" "cat $log; rpm -qp --requires $rpmfile"
elif [ "$pm" = rpm ]; then
  # No yum/dnf: pick the newest sitelink RPM from the repository's primary metadata.
  primary=$(grep -o '<location href="[^"]*primary\.xml[^"]*"' "$tmp/repomd.xml" | head -1 | sed 's/.*href="//; s/"$//')
  [ -n "$primary" ] || fail "$step" "$base/repodata/repomd.xml names no primary metadata" "cat $tmp/repomd.xml"
  fetch "$base/$primary" "$tmp/primary" 2>"$log" || fail "$step" "cannot fetch $base/$primary" "cat $log"
  case $primary in
    *.gz) gzip -dc "$tmp/primary" ;;
    *.xz) xz -dc "$tmp/primary" ;;
    *.zst) zstd -dc "$tmp/primary" ;;
    *) cat "$tmp/primary" ;;
  esac >"$tmp/primary.xml" 2>"$log" || fail "$step" "cannot decompress $primary" "cat $log"
  href=$(grep -o '<location [^>]*href="[^"]*"' "$tmp/primary.xml" | sed 's/.*href="//; s/"$//' |
    grep -E '(^|/)sitelink-[0-9][^/]*\.x86_64\.rpm$' | sort -V | tail -1)
  [ -n "$href" ] || fail "$step" "no sitelink package in $base" "zcat -f $base/$primary | grep location"
  fetch "$base/$href" "$tmp/sitelink.rpm" 2>"$log" || fail "$step" "cannot fetch $base/$href" "cat $log"
  rpm_install "$tmp/sitelink.rpm" || fail "$step" "$(tail -n 3 "$log" | tr '\n' ' ')" "cat $log"
else
  # yum/dnf: a .repo file for this repository, then install or upgrade from it.
  {
    echo "[sitelink]"
    echo "name=Sitelink site connector"
    echo "baseurl=$base/"
    echo "enabled=1"
    echo "metadata_expire=60"
    if [ -n "$gpgkey" ]; then echo "gpgcheck=1"; echo "gpgkey=$gpgkey"; else echo "gpgcheck=0"; fi
  } >/etc/yum.repos.d/sitelink.repo
  [ -n "$gpgkey" ] || warn "no --gpg-key: the repository's packages are not signature-checked"
  "$pm" -q clean metadata --disablerepo='*' --enablerepo=sitelink >/dev/null 2>&1
  if [ -z "$before" ]; then
    "$pm" -y install sitelink >"$log" 2>&1
  else
    "$pm" -y "$([ "$pm" = dnf ] && echo upgrade || echo update)" sitelink >"$log" 2>&1
  fi || fail "$step" "$(tail -n 3 "$log" | tr '\n' ' ')" "$pm --enablerepo=sitelink info sitelink; cat $log"
fi
after=$(installed_evr)
[ -n "$after" ] || fail "$step" "sitelink is not installed after the transaction" "rpm -q sitelink; cat $log"
[ -x /usr/sbin/sitelinkd ] || fail "$step" "/usr/sbin/sitelinkd is missing" "rpm -V sitelink"
if [ -z "$before" ]; then ok "$step" "sitelink $after"
elif [ "$before" = "$after" ]; then ok "$step" "sitelink $after, already installed"
else ok "$step" "sitelink $before -> $after"
fi

# --- 5. the configuration ---------------------------------------------------------------
step="config"
config_changed=0
if [ -n "$config" ]; then
  [ -r "$config" ] || fail "config written" "cannot read $config" "ls -l $config"
  /usr/sbin/sitelinkd --check-config "$config" >"$tmp/check.log" 2>&1 ||
    fail "config written" "$config is not valid: $(head -n 5 "$tmp/check.log" | tr '\n' ' ')" "sitelinkd --check-config $config"
  if cmp -s "$config" "$CONFIG"; then
    chown root:sitelink "$CONFIG" && chmod 0640 "$CONFIG"
    ok "config written" "$CONFIG already has this content"
  else
    [ -f "$CONFIG" ] && cp -p "$CONFIG" "$CONFIG.bak-$(date +%Y%m%d%H%M%S)"
    if ! install -m 0640 -o root -g sitelink "$config" "$CONFIG.tmp" || ! mv -f "$CONFIG.tmp" "$CONFIG"; then
      fail "config written" "cannot write $CONFIG" "ls -l /etc/sitelink"
    fi
    config_changed=1
    ok "config written" "$CONFIG"
  fi
else
  /usr/sbin/sitelinkd --check-config "$CONFIG" >"$tmp/check.log" 2>&1 ||
    fail "config kept" "$CONFIG is not valid: $(head -n 5 "$tmp/check.log" | tr '\n' ' ')" "sitelinkd --check-config $CONFIG"
  ok "config kept" "$CONFIG"
fi

# --- 6. the service --------------------------------------------------------------------
step="service online"
see="systemctl status $UNIT; journalctl -u $UNIT -n 50 --no-pager; sitelinkctl status"
systemctl daemon-reload >/dev/null 2>&1
systemctl enable "$UNIT" >"$log" 2>&1 || fail "$step" "systemctl enable failed: $(tail -n 2 "$log" | tr '\n' ' ')" "$see"
if systemctl is-active --quiet "$UNIT"; then
  if [ "$config_changed" = 1 ]; then
    systemctl restart "$UNIT" >"$log" 2>&1 || fail "$step" "systemctl restart failed" "$see"
  fi
else
  # --no-block: a Type=notify start waits for READY; the loop below waits with a deadline.
  systemctl reset-failed "$UNIT" >/dev/null 2>&1
  systemctl start --no-block "$UNIT" >"$log" 2>&1 || fail "$step" "systemctl start failed: $(tail -n 2 "$log" | tr '\n' ' ')" "$see"
fi
deadline=$((SECONDS + timeout))
state=""
while :; do
  state=$(systemctl is-active "$UNIT" 2>/dev/null)
  if [ "$state" = active ] && sitelinkctl status >"$tmp/status" 2>&1; then
    ok "$step" "$(head -n 1 "$tmp/status" | sed 's/^[^a-z]*//')"
    exit 0
  fi
  [ "$state" = failed ] && fail "$step" "sitelinkd failed to start" "$see"
  [ $SECONDS -ge $deadline ] && fail "$step" "sitelinkd is $state after ${timeout}s: $(tail -n 1 "$tmp/status" 2>/dev/null)" "$see"
  sleep 1
done
