#!/bin/sh
# Build lua-ws for one Lua and test it there:
#   scripts/test-lua.sh lua5.1|lua5.3|lua5.4|luajit
# (a) the busted suites whose subject is a separate process (conformance,
#     interop, server, hostile, deflate, browser, broadcast): busted runs
#     under lua5.4 as always, and every Lua server/client process the specs
#     start runs under LUA (see spec/compat/lua.sh);
# (b) spec/compat/smoke.lua, in-process under LUA: the codec, a server and
#     20 clients in one ws.loop, and the examples as subprocesses.
# Each interpreter loads only its own build: LuaRocks trees per Lua
# (.rocks for 5.4, .rocks-NAME otherwise) and the path variable each reads
# (5.1 and LuaJIT: LUA_PATH/LUA_CPATH; 5.3: LUA_PATH_5_3...; 5.4: _5_4).
# Prints the suites' output, then one line "lua-NAME: N passed, N failed";
# exits non-zero if anything failed.
cd "$(dirname "$0")/.." || exit 2
LUA=${1:?usage: scripts/test-lua.sh lua5.1|lua5.3|lua5.4|luajit}
NAME=$(basename "$LUA")
# the Lua ABI version of an interpreter (LuaJIT is 5.1)
abi() {
  case "$(basename "$1")" in
    luajit*|lua5.1) echo 5.1 ;;
    lua5.[234]) basename "$1" | sed 's/^lua//' ;;
  esac
}
V=$(abi "$LUA")
[ -n "$V" ] || { echo "scripts/test-lua.sh: unknown Lua '$LUA'"; exit 2; }
DRIVER=lua5.4
ROOT=$(pwd)
LOG=build/test-logs
mkdir -p "$LOG"
SPECS=${COMPAT_SPECS:-"spec/conformance_spec.lua spec/interop_spec.lua spec/server_spec.lua spec/hostile_spec.lua spec/deflate_spec.lua spec/browser_spec.lua spec/broadcast_spec.lua"}
passed=0; failed=0
t0=$(date +%s)

# -- build: the tree for LUA, and the 5.4 tree the busted driver uses
for L in "$LUA" $DRIVER; do
  if ! make -s build LUA="$L" LUAV="$(abi "$L")"; then
    echo "--- build for $L failed"
    failed=$((failed + 1))
  fi
  [ "$L" = $DRIVER ] && break
done
if [ "$failed" -gt 0 ]; then
  echo "lua-$NAME: $passed passed, $failed failed"
  exit 1
fi
echo "built for $NAME and $DRIVER in $(( $(date +%s) - t0 )) s"

tree() { if [ "$1" = lua5.4 ]; then echo "$ROOT/.rocks"; else echo "$ROOT/.rocks-$1"; fi; }
T=$(tree "$NAME"); D=$(tree $DRIVER)
unset LUA_PATH LUA_CPATH LUA_PATH_5_3 LUA_CPATH_5_3 LUA_PATH_5_4 LUA_CPATH_5_4
export LUA_PATH_5_4="$D/share/lua/5.4/?.lua;$D/share/lua/5.4/?/init.lua;;"
export LUA_CPATH_5_4="$D/lib/lua/5.4/?.so;;"
TP="$T/share/lua/$V/?.lua;$T/share/lua/$V/?/init.lua;;"
TC="$T/lib/lua/$V/?.so;;"
case $V in
  5.1) export LUA_PATH="$TP" LUA_CPATH="$TC" ;;
  5.2) export LUA_PATH_5_2="$TP" LUA_CPATH_5_2="$TC" ;;
  5.3) export LUA_PATH_5_3="$TP" LUA_CPATH_5_3="$TC" ;;
  5.4) export LUA_PATH_5_4="$TP" LUA_CPATH_5_4="$TC" ;;
esac

# the right ws.core for each interpreter
if ! "$LUA" -e 'local c = require "ws.core"; assert(c.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")' \
  || ! "$LUA" -e "local p = package.searchpath and package.searchpath('ws.core', package.cpath)
      assert(not package.searchpath or (p and p:find('$T/', 1, true)), tostring(p))" \
  || ! $DRIVER -e "assert(package.searchpath('ws.core', package.cpath):find('$D/', 1, true))"; then
  echo "--- $LUA does not load its own ws.core"
  failed=$((failed + 1))
fi

# -- (a) the process suites, servers under LUA
t1=$(date +%s)
COMPAT_LUA="$LUA" COMPAT_DRIVER=$DRIVER LUA="sh $ROOT/spec/compat/lua.sh" \
  $DRIVER /usr/bin/busted -o plainTerminal $SPECS >"$LOG/lua-$NAME-busted.log" 2>&1
rc=$?
# busted's own summary line, reworded so that scripts/test.sh does not count it twice
sed "s|^\([0-9][0-9]*\) success|busted ($DRIVER driving $NAME servers, $(( $(date +%s) - t1 )) s): \1 success|" "$LOG/lua-$NAME-busted.log"
set -- $(sed -n 's/^\([0-9][0-9]*\) successes* \/ \([0-9][0-9]*\) failures* \/ \([0-9][0-9]*\) errors*.*$/\1 \2 \3/p' \
  "$LOG/lua-$NAME-busted.log")
if [ $# -eq 3 ]; then
  passed=$((passed + $1)); failed=$((failed + $2 + $3))
  [ $rc -ne 0 ] && [ $(($2 + $3)) -eq 0 ] && failed=$((failed + 1))
else
  echo "--- busted reported nothing (exit $rc)"
  failed=$((failed + 1))
fi

# -- (b) in-process smoke test under LUA
t1=$(date +%s)
"$LUA" spec/compat/smoke.lua "$LUA" >"$LOG/lua-$NAME-smoke.log" 2>&1
rc=$?
sed 's/^\(compat .*\): \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1 ('"$(( $(date +%s) - t1 ))"' s): \2 passed \/ \3 failed/' \
  "$LOG/lua-$NAME-smoke.log"
set -- $(sed -n 's/^compat .*: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1 \2/p' "$LOG/lua-$NAME-smoke.log")
if [ $# -eq 2 ]; then
  passed=$((passed + $1)); failed=$((failed + $2))
  [ $rc -ne 0 ] && [ "$2" -eq 0 ] && failed=$((failed + 1))
else
  echo "--- spec/compat/smoke.lua reported nothing (exit $rc)"
  failed=$((failed + 1))
fi

echo "lua-$NAME ($(( $(date +%s) - t0 )) s): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
