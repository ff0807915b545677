#!/usr/bin/env bash
# Makes Sitelink's yum repository from the RPMs in DIST (`make repo`):
#
#   REPO/el7/  sitelink-*.el7.x86_64.rpm + repodata/   (same for el8, el9)
#   REPO/sitelink-elN.repo                             a .repo file for /etc/yum.repos.d
#   REPO/install.sh                                    the operator's one command
#
# One repository per EL version, so that yum on CentOS 7 never sees (and prefers) the el9
# build of the same version. Metadata is gzip-compressed with SHA-256 checksums, which
# CentOS 7's yum reads.
#
#   packaging/make-repo.sh [-d DIST] [-o REPO] [-u BASEURL]
#
#   -d  directory with the RPMs (default: dist)
#   -o  the repository directory (default: DIST/repo); rebuilt from scratch
#   -u  the URL the repository will be served at, for the .repo files
#       (default: file://REPO)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dist=$root/dist
out=""
url=""
while getopts "d:o:u:h" opt; do
  case $opt in
    d) dist=$OPTARG ;;
    o) out=$OPTARG ;;
    u) url=$OPTARG ;;
    h) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) exit 2 ;;
  esac
done
die() { echo "make-repo: $*" >&2; exit 1; }

command -v createrepo_c >/dev/null || die "createrepo_c not found (Debian: apt-get install createrepo-c; EL: yum install createrepo_c)"
dist=$(cd "$dist" && pwd) || die "no directory $dist"
out=${out:-$dist/repo}
url=${url:-file://$out}
url=${url%/}

shopt -s nullglob
rpms=("$dist"/sitelink-*.el[0-9]*.x86_64.rpm)
[ ${#rpms[@]} -gt 0 ] || die "no sitelink-*.elN.x86_64.rpm in $dist: run make rpm first"

rm -rf "$out"
mkdir -p "$out"
for f in "${rpms[@]}"; do
  el=$(basename "$f" | sed -n 's/.*\.el\([0-9][0-9]*\)\.x86_64\.rpm$/\1/p')
  mkdir -p "$out/el$el"
  ln -f "$f" "$out/el$el/" 2>/dev/null || cp -p "$f" "$out/el$el/"
done
for d in "$out"/el*/; do
  el=$(basename "$d")
  createrepo_c --quiet --general-compress-type=gz --checksum=sha256 "$d" >/dev/null ||
    die "createrepo_c $d failed"
  cat >"$out/sitelink-$el.repo" <<EOF
# Sitelink site connector ($el). Copy to /etc/yum.repos.d/, then: yum install sitelink
[sitelink]
name=Sitelink site connector
baseurl=$url/$el/
enabled=1
metadata_expire=300
# The packages are signed for releases: set gpgcheck=1 and gpgkey=URL of the key.
gpgcheck=0
EOF
  echo "$out/$el"
done
install -m 0755 "$root/packaging/install.sh" "$out/install.sh"
