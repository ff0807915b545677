#!/usr/bin/env bash
# Builds Sitelink's RPMs from binaries made by `make build`: one per EL version
# (dist/sitelink-VERSION-RELEASE.elN.x86_64.rpm). Used by `make rpm` and by the packaging
# tests. Works with EL's rpm-build and with Debian's rpm 4.18 (rpm/macros.sitelink supplies
# the EL systemd macros Debian lacks).
#
#   packaging/build-rpm.sh [-b BINDIR] [-o OUTDIR] [-v VERSION] [-r RELEASE] [-e "7 8 9"]
#                          [-c CONFIG] [-z PAYLOAD]
#
#   -b  directory with sitelinkd, sitelinkctl and plugins/NAME (default: bin)
#   -o  where the RPMs go (default: dist)
#   -v  RPM version, digits and dots (default: 0.1.0)
#   -r  RPM release (default: 1)
#   -e  EL versions to build for (default: "7 8 9")
#   -c  the default config to ship (default: daemon/config/testdata/sitelink.example.yaml)
#   -z  payload compression, wN.gzdio or wN.xzdio (default: the spec's, w6.xzdio); both
#       are readable by rpm 4.11. The tests use w1.gzdio to build quickly.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bindir=$root/bin
outdir=$root/dist
version=0.1.0
release=1
els="7 8 9"
config=$root/daemon/config/testdata/sitelink.example.yaml
payload=

while getopts "b:o:v:r:e:c:z:h" opt; do
  case $opt in
    b) bindir=$OPTARG ;;
    o) outdir=$OPTARG ;;
    v) version=$OPTARG ;;
    r) release=$OPTARG ;;
    e) els=$OPTARG ;;
    c) config=$OPTARG ;;
    z) payload=$OPTARG ;;
    h) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) exit 2 ;;
  esac
done

die() { echo "build-rpm: $*" >&2; exit 1; }

command -v rpmbuild >/dev/null || die "rpmbuild not found (Debian: apt-get install rpm; EL: yum install rpm-build)"
[[ $version =~ ^[0-9]+(\.[0-9]+)*$ ]] || die "version $version: want digits and dots (e.g. 0.1.0)"
[[ $release =~ ^[0-9A-Za-z._+]+$ ]] || die "release $release: want letters, digits, . _ +"
for f in "$bindir/sitelinkd" "$bindir/sitelinkctl"; do
  [ -x "$f" ] || die "$f missing: run make build first"
done
compgen -G "$bindir/plugins/*" >/dev/null || die "no plugins in $bindir/plugins: run make build first"
[ -f "$config" ] || die "config $config missing"
[ -z "$payload" ] || [[ $payload =~ ^w[1-9]\.(gz|xz)dio$ ]] || die "payload $payload: want wN.gzdio or wN.xzdio (rpm 4.11 reads only those and bzip2)"

work=$(mktemp -d "${TMPDIR:-/tmp}/sitelink-rpm.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/SOURCES
mkdir -p "$src/bin/plugins" "$src/systemd" "$src/man" "$src/completion" "$src/doc"

cp -p "$bindir/sitelinkd" "$bindir/sitelinkctl" "$src/bin/"
# -a keeps the plugins' hard links (one binary under several names).
cp -a "$bindir"/plugins/* "$src/bin/plugins/"
cp -p "$root/systemd/sitelinkd.service" "$root/systemd/sitelinkd.sysconfig" "$src/systemd/"
cp -p "$root/systemd/sitelinkd.service.d/50-hardening.conf" "$src/systemd/"
cp -p "$config" "$src/sitelink.yaml"
cp -p "$root/packaging/dbus/org.sitelink.Sitelink1.conf" "$src/"
cp -p "$root/packaging/tmpfiles/sitelink.conf" "$src/tmpfiles.conf"
cp -p "$root/LICENSE" "$src/"

# Man pages: sitelinkctl's come from its command tree, sitelinkd(8) is written by hand.
"$bindir/sitelinkctl" gen-man "$src/man" || die "sitelinkctl gen-man failed"
cp -p "$root/packaging/man/sitelinkd.8" "$src/man/"
"$bindir/sitelinkctl" gen-completion "$work/completion" || die "sitelinkctl gen-completion failed"
cp -p "$work/completion/sitelinkctl.bash" "$src/completion/"

# Docs: the README and docs/*.md (with docs/plugins/*.md when there are any).
cp -p "$root/README.md" "$src/doc/"
cp -p "$root"/docs/*.md "$src/doc/"
if compgen -G "$root/docs/plugins/*.md" >/dev/null; then
  mkdir -p "$src/doc/plugins"
  cp -p "$root"/docs/plugins/*.md "$src/doc/plugins/"
fi

mkdir -p "$outdir"
# One rpmbuild per EL version, in parallel: most of the time is the payload's xz.
pids=()
for el in $els; do
  [[ $el =~ ^[0-9]+$ ]] || die "EL version $el: want a number"
  # No --target: rpmbuild re-reads its configuration per target, which drops --load.
  rpmbuild -bb --quiet \
    --load "$root/rpm/macros.sitelink" \
    --define "_topdir $work/top-el$el" \
    --define "_sourcedir $src" \
    --define "_rpmdir $outdir" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "sl_version $version" \
    --define "sl_release $release" \
    --define "rhel $el" \
    --define "dist .el$el" \
    ${payload:+--define "sl_payload $payload"} \
    "$root/rpm/sitelink.spec" >"$work/el$el.log" 2>&1 &
  pids+=("$!:$el")
done
failed=0
for p in "${pids[@]}"; do
  if ! wait "${p%%:*}"; then
    echo "build-rpm: rpmbuild for el${p#*:} failed:" >&2
    cat "$work/el${p#*:}.log" >&2
    failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
for el in $els; do
  echo "$outdir/sitelink-$version-$release.el$el.x86_64.rpm"
done
