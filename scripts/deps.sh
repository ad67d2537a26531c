#!/bin/sh
# Install what the build and the tests need, only what is missing (Debian 12).
set -e
PKGS="lua5.4 lua-cqueues lua-luv lua-copas liblua5.4-dev lua-socket lua-sec lua-busted luarocks libssl-dev zlib1g-dev
      python3-websockets chromium clang libclang-rt-14-dev valgrind openssl make gcc
      lua5.1 liblua5.1-0-dev lua5.3 liblua5.3-dev luajit libluajit-5.1-dev pkg-config
      lua-bit32 lua-dkjson nginx-light libnginx-mod-stream haproxy iproute2 procps systemd
      redis-server"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing </dev/null
fi
# Node's ws for the interop tests, pinned by spec/interop/package-lock.json
if [ -f spec/interop/package-lock.json ] && [ ! -d spec/interop/node_modules/ws ]; then
  (cd spec/interop && npm ci --no-audit --no-fund --loglevel=error)
fi
