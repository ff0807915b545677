#!/usr/bin/env bash
# Installs the pinned stock wireguard-go (the gateway peer of the tunnel plugin's tests and
# benchmark) into the repository's .tools/bin as "wireguard", unless it is already there.
# The same pin is in plugins/tunnel/tunneltest/wireguardgo.go; the tests install it
# themselves when missing, so this is only a convenience (e.g. `make tools`).
set -euo pipefail
MODULE=golang.zx2c4.com/wireguard
VERSION=v0.0.0-20260522210424-ecfc5a8d5446
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin="$root/.tools/bin"
if go version -m "$bin/wireguard" 2>/dev/null | awk -v m="$MODULE" -v v="$VERSION" '$1=="mod" && $2==m && $3==v {ok=1} END {exit !ok}'; then
  echo "$bin/wireguard"
  exit 0
fi
mkdir -p "$bin"
GOBIN="$bin" CGO_ENABLED=0 GOTOOLCHAIN=local go install "$MODULE@$VERSION"
echo "$bin/wireguard"
