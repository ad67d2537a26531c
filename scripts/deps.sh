#!/bin/sh
# Install what is missing (Debian 12), and only that:
#   sh scripts/deps.sh run    what building and running the server needs
#   sh scripts/deps.sh test   that, plus the test toolchain (the default)
set -e
RUN_PKGS="lua5.4 liblua5.4-dev lua-socket luarocks libssl-dev zlib1g-dev gcc make"
TEST_PKGS="tinyproxy lua-sec lua-busted lua-check lua-ldoc python3-websockets python3-cryptography chromium clang libclang-rt-14-dev valgrind openssl
      lua5.1 liblua5.1-0-dev lua5.3 liblua5.3-dev luajit libluajit-5.1-dev pkg-config
      lua-bit32 lua-dkjson lua-cqueues lua-luv lua-copas nginx-light libnginx-mod-stream haproxy
      iproute2 procps systemd redis-server strace"
PKGS=$RUN_PKGS
[ "${1:-test}" = test ] && PKGS="$RUN_PKGS $TEST_PKGS"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ "${1:-test}" = test ]; then
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
fi
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing </dev/null
fi
# Node's ws for the interop tests, pinned by spec/interop/package-lock.json
if [ "${1:-test}" = test ] && [ -f spec/interop/package-lock.json ] && [ ! -d spec/interop/node_modules/ws ]; then
  (cd spec/interop && npm ci --no-audit --no-fund --loglevel=error)
fi
