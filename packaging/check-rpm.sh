#!/usr/bin/env bash
# Checks that Sitelink RPMs can be read and installed by rpm 4.11 (CentOS 7): gzip or xz
# payload, SHA-256 file digests, and no rpmlib() requirement outside rpm 4.11's set (no
# zstd payload, rich dependencies, large files, caret versions). `make rpm` runs it on
# what it built; the packaging tests run it too.
#
#   packaging/check-rpm.sh FILE.rpm...
set -euo pipefail

# rpmlib() features rpm 4.11.3 provides (lib/rpmds.c, rpmlibProvides), name and version.
rpm411=(
  "rpmlib(VersionedDependencies) 3.0.3-1"
  "rpmlib(CompressedFileNames) 3.0.4-1"
  "rpmlib(PayloadIsBzip2) 3.0.5-1"
  "rpmlib(PayloadIsXz) 5.2-1"
  "rpmlib(PayloadIsLzma) 4.4.2-1"
  "rpmlib(PayloadFilesHavePrefix) 4.0-1"
  "rpmlib(ExplicitPackageProvide) 4.0-1"
  "rpmlib(HeaderLoadSortsTags) 4.0.1-1"
  "rpmlib(ScriptletInterpreterArgs) 4.0.3-1"
  "rpmlib(PartialHardlinkSets) 4.0.4-1"
  "rpmlib(ConcurrentAccess) 4.1-1"
  "rpmlib(BuiltinLuaScripts) 4.2.2-1"
  "rpmlib(FileDigests) 4.6.0-1"
  "rpmlib(FileCaps) 4.6.1-1"
  "rpmlib(ScriptletExpansion) 4.9.0-1"
  "rpmlib(TildeInVersions) 4.10.0-1"
)

[ $# -gt 0 ] || { echo "usage: $0 FILE.rpm..." >&2; exit 2; }
bad=0
for f in "$@"; do
  problems=()
  comp=$(rpm -qp --qf '%{PAYLOADCOMPRESSOR}' "$f")
  case $comp in gzip|xz) ;; *) problems+=("payload compressor $comp (rpm 4.11 reads gzip, xz, bzip2)") ;; esac
  algo=$(rpm -qp --qf '%{FILEDIGESTALGO}' "$f")
  [ "$algo" = 8 ] || problems+=("file digest algorithm $algo, want 8 (SHA-256)")
  while read -r name op ver; do
    [ -n "$name" ] || continue
    known=""
    for e in "${rpm411[@]}"; do
      [ "${e%% *}" = "$name" ] && known=${e#* }
    done
    if [ -z "$known" ]; then
      problems+=("requires $name, which rpm 4.11 does not have")
    elif [ "$op" = "<=" ] && [ "$(printf '%s\n%s\n' "$ver" "$known" | sort -V | tail -1)" != "$known" ]; then
      problems+=("requires $name <= $ver, rpm 4.11 has $known")
    fi
  done < <(rpm -qp --requires "$f" | grep '^rpmlib(' || true)
  if [ ${#problems[@]} -eq 0 ]; then
    echo "$f: readable by rpm 4.11 ($comp payload, SHA-256 digests)"
  else
    for p in "${problems[@]}"; do echo "$f: $p" >&2; done
    bad=1
  fi
done
exit $bad
