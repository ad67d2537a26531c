#!/bin/sh
# Install what the benchmark peers need, only what is missing (Debian 12).
# Failures are reported, not fatal: run.sh marks a peer it cannot start.
cd "$(dirname "$0")/.." || exit 1
PKGS="gcc libssl-dev zlib1g-dev openssl lua5.4 python3-websockets golang-go golang-github-gorilla-websocket-dev
      lua-http lua-cqueues lua-luaossl lua-lpeg libwebsockets-dev iproute2 util-linux"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "bench/deps.sh: installing:$missing"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing </dev/null \
    || echo "bench/deps.sh: apt-get failed" >&2
fi
# Node ws (pinned in spec/interop) and bufferutil (pinned here; its npm package
# ships prebuilt linux-x64 binaries, so no compiler or download at install).
for d in spec/interop bench; do
  if [ -f $d/package-lock.json ] && [ ! -d $d/node_modules ]; then
    (cd $d && npm ci --no-audit --no-fund --loglevel=error) || echo "bench/deps.sh: npm ci failed in $d" >&2
  fi
done
exit 0
