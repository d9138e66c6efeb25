#!/usr/bin/env bash
# Build a minimal Debian bookworm root filesystem tarball for one runtime base image.
#
#   runtimes/base/build-rootfs.sh python|nodejs OUT.tar
#
# Used where no container registry is reachable: `docker import OUT.tar` gives the base image
# that runtimes/<kind>/Dockerfile builds on (elsewhere python:3.11-slim / node:20-slim do).
#   python: debootstrap --variant=minbase --include=python3 (bookworm's python3 is 3.11).
#   nodejs: debootstrap --variant=minbase plus the host's Node.js 20 binary, because bookworm
#           ships Node.js 18 only; the binary needs nothing beyond libc and libstdc++ (in minbase).
# Downloaded packages are kept in $TRIGGERHUB_DEB_CACHE (default <repo>/.cache/docker/debs).
set -euo pipefail

kind=${1:?usage: build-rootfs.sh python|nodejs OUT.tar}
out=${2:?usage: build-rootfs.sh python|nodejs OUT.tar}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mirror=${TRIGGERHUB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
deb_cache=${TRIGGERHUB_DEB_CACHE:-$repo/.cache/docker/debs}

case "$kind" in
  python) include=(--include=python3) ;;
  nodejs)
    node_bin=${TRIGGERHUB_NODE_BINARY:-$(command -v node || true)}
    if [[ -z $node_bin ]] || [[ $("$node_bin" --version) != v20.* ]]; then
      echo "build-rootfs.sh: the nodejs:20 base needs a Node.js 20 binary on the host;" \
        "found '${node_bin:-none}' ($("${node_bin:-false}" --version 2>/dev/null || echo missing))." \
        "Install Node.js 20 or point TRIGGERHUB_NODE_BINARY at one." >&2
      exit 1
    fi
    include=()
    ;;
  *) echo "build-rootfs.sh: unknown kind '$kind'; known: python, nodejs" >&2; exit 2 ;;
esac

command -v debootstrap >/dev/null || {
  echo "build-rootfs.sh: debootstrap is missing; installing it with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

root=$(mktemp -d "${TMPDIR:-/tmp}/triggerhub-rootfs-$kind.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$deb_cache"

debootstrap --variant=minbase "${include[@]}" --cache-dir="$deb_cache" \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
  echo "build-rootfs.sh: debootstrap failed; last lines of $root.log:" >&2
  tail -n 20 "$root.log" >&2
  exit 1
}
rm -f "$root.log"

if [[ $kind == nodejs ]]; then
  install -m 0755 "$node_bin" "$root/usr/local/bin/node"
fi

# Nothing in a runtime image needs apt's lists, docs, man pages or locales.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*

tar --numeric-owner -C "$root" -cf "$out" .
