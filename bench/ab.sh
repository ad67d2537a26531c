#!/bin/sh
# One fixed-work run of our echo server, for timing a change against its base:
#   sh bench/ab.sh ROCKS_TREE OUT_FILE 'SERVER ARGS' WSLOAD ARGS...
# starts examples/echo.lua (from the tree's checkout, with ws.core from
# ROCKS_TREE) pinned to core 0, runs build/bench/wsload pinned to core 1
# (give it --count N so every run does the same work), appends wsload's
# RESULT line to OUT_FILE and stops the server. Time two trees' runs in
# turn with any whole-process timer; the RESULT lines hold msg/s and latency.
set -u
cd "$(dirname "$0")/.." || exit 1
tree=$1 out=$2 sargs=$3; shift 3
port=$(( 20000 + $$ % 20000 ))
while ss -tanH "( sport = :$port )" 2>/dev/null | grep -q .; do port=$((port + 1)); done
LUA_PATH="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua;;" LUA_CPATH="$tree/lib/lua/5.4/?.so;;" \
  taskset -c 0 lua5.4 examples/echo.lua --port "$port" $sargs >/dev/null 2>&1 &
spid=$!
i=0
until ss -ltnH "sport = :$port" 2>/dev/null | grep -q . || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
taskset -c 1 build/bench/wsload "$@" --port "$port" | grep '^RESULT' >>"$out"
kill "$spid"; wait "$spid" 2>/dev/null
exit 0
