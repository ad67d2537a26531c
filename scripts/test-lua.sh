#!/bin/sh
# Build lua-ws for one Lua and run the whole busted suite on it:
#   scripts/test-lua.sh lua5.1|lua5.3|lua5.4|luajit
# busted itself runs under that Lua, and so does every Lua server or client
# the specs start (spec/helpers.lua's H.LUA), so the specs are written for
# Lua 5.1 and up (spec/bits.lua).
# Each interpreter loads only its own build: LuaRocks trees per Lua
# (.rocks for 5.4, .rocks-NAME otherwise) and the path variable it reads
# (5.1 and LuaJIT: LUA_PATH/LUA_CPATH; 5.3: LUA_PATH_5_3...; 5.4: _5_4).
# Prints busted's output, then one line "lua-NAME: N passed, N failed";
# exits non-zero if anything failed.
cd "$(dirname "$0")/.." || exit 2
LUA=${1:?usage: scripts/test-lua.sh lua5.1|lua5.3|lua5.4|luajit}
NAME=$(basename "$LUA")
case $NAME in
  luajit*|lua5.1) V=5.1 ;;
  lua5.[34]) V=${NAME#lua} ;;
  *) echo "scripts/test-lua.sh: unknown Lua '$LUA'"; exit 2 ;;
esac
LOG=build/test-logs
mkdir -p "$LOG"
t0=$(date +%s)

if ! make -s build LUA="$LUA" LUAV="$V"; then
  echo "lua-$NAME: 0 passed, 1 failed (build)"
  exit 1
fi

if [ "$NAME" = lua5.4 ]; then T=$(pwd)/.rocks; else T=$(pwd)/.rocks-$NAME; fi
unset LUA_PATH LUA_CPATH LUA_PATH_5_3 LUA_CPATH_5_3 LUA_PATH_5_4 LUA_CPATH_5_4
TP="$T/share/lua/$V/?.lua;$T/share/lua/$V/?/init.lua;;"
TC="$T/lib/lua/$V/?.so;;"
case $V in
  5.1) export LUA_PATH="$TP" LUA_CPATH="$TC" ;;
  5.3) export LUA_PATH_5_3="$TP" LUA_CPATH_5_3="$TC" ;;
  5.4) export LUA_PATH_5_4="$TP" LUA_CPATH_5_4="$TC" ;;
esac

failed=0
# the interpreter must load its own ws.core (package.searchpath is 5.2+)
if ! "$LUA" -e "assert(require('ws.core').accept_key('dGhlIHNhbXBsZSBub25jZQ==') == 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
      local p = package.searchpath and package.searchpath('ws.core', package.cpath)
      assert(not package.searchpath or (p and p:find('$T/', 1, true)), tostring(p))"; then
  echo "--- $LUA does not load its own ws.core"
  failed=1
fi

# suites tagged #slow (many processes, real proxies, Redis) run on Lua 5.4
# only; the rest on every Lua
EXCLUDE=""
[ "$NAME" = lua5.4 ] || EXCLUDE="--exclude-tags=slow"
LUA="$LUA" "$LUA" /usr/bin/busted -o plainTerminal $EXCLUDE ${SPECS:-spec} >"$LOG/lua-$NAME.log" 2>&1
rc=$?
# busted's summary, reworded so that scripts/test.sh does not count it twice
sed "s|^\([0-9][0-9]*\) success|busted on $NAME: \1 success|" "$LOG/lua-$NAME.log"
# (the last summary: a spec may print a nested busted run's own)
set -- $(sed -n 's/^\([0-9][0-9]*\) success\(es\)\{0,1\} \/ \([0-9][0-9]*\) failures* \/ \([0-9][0-9]*\) errors*.*$/\1 \3 \4/p' \
  "$LOG/lua-$NAME.log" | tail -n 1)
if [ $# -eq 3 ]; then
  passed=$1; failed=$((failed + $2 + $3))
  [ $rc -ne 0 ] && [ $(($2 + $3)) -eq 0 ] && failed=$((failed + 1))
else
  echo "--- busted reported nothing (exit $rc)"
  passed=0; failed=$((failed + 1))
fi
echo "lua-$NAME ($(( $(date +%s) - t0 )) s): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
