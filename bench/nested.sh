#!/bin/sh
# The standalone echo server against the same server nested in cqueues and
# luv (examples/*_echo.lua --nested), and the adapters (ws.accept in a
# cqueues coroutine / a luv-driven task): 32-byte echo, 64 connections,
# BENCH_DEPTH in flight each, alternating runs.
#   sh bench/nested.sh        (after make build)
# Env: BENCH_SECS=3 BENCH_RUNS=5 BENCH_DEPTH=32 BENCH_PORT=18800
# Server pinned to core 0, wsload to core 1. Prints msgs/s per run, the
# medians and each one's ratio to the standalone server.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD OUT=$ROOT/build/bench
mkdir -p "$OUT"
SECS=${BENCH_SECS:-3} RUNS=${BENCH_RUNS:-5} DEPTH=${BENCH_DEPTH:-32} PORT=${BENCH_PORT:-18800}
export LUA_PATH_5_4="$ROOT/.rocks/share/lua/5.4/?.lua;$ROOT/.rocks/share/lua/5.4/?/init.lua;;"
export LUA_CPATH_5_4="$ROOT/.rocks/lib/lua/5.4/?.so;;"
cc -std=c99 -O2 -Wall -Wextra -Werror bench/wsload.c -lcrypto -o "$OUT/wsload" || exit 1

SERVERS="standalone:examples/echo.lua cqueues-nested:examples/cqueues_echo.lua+--nested
luv-nested:examples/luv_echo.lua+--nested cqueues-accept:examples/cqueues_echo.lua luv-accept:examples/luv_echo.lua"
PIDS="" UP=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done' EXIT
for s in $SERVERS; do
  name=${s%%:*} cmd=$(echo "${s#*:}" | tr + ' ')
  PORT=$((PORT + 1))
  # shellcheck disable=SC2086
  taskset -c 0 lua5.4 $cmd --port $PORT >"$OUT/nested-$name.log" 2>&1 &
  PIDS="$PIDS $!"
  i=0; while [ $i -lt 50 ] && ! ss -ltnH "sport = :$PORT" | grep -q .; do sleep 0.1; i=$((i + 1)); done
  UP="$UP $name:$PORT"
done
RES=$OUT/nested.txt; : >"$RES"
r=1
while [ $r -le "$RUNS" ]; do
  for sp in $UP; do
    line=$(timeout $((SECS + 30)) taskset -c 1 "$OUT/wsload" echo --conns 64 --size 32 --text --depth "$DEPTH" \
           --port "${sp#*:}" --secs "$SECS" --warmup 0.5 2>/dev/null | grep '^RESULT')
    rate=$(echo "$line" | sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p')
    echo "${sp%:*} $r ${rate:-0}" | tee -a "$RES" >&2
    sleep 0.2
  done
  r=$((r + 1))
done
echo "32 B echo, 64 conns, depth $DEPTH, median of $RUNS x $SECS s (msgs/s, ratio to standalone):"
lua5.4 -e '
  local rates, order = {}, {}
  for name, rate in io.read("a"):gmatch("(%S+) %d+ ([%d.]+)") do
    if not rates[name] then rates[name] = {}; order[#order + 1] = name end
    table.insert(rates[name], tonumber(rate))
  end
  local function median(t) table.sort(t); return t[(#t + 1) // 2] end
  local base = median(rates.standalone)
  for _, name in ipairs(order) do
    local m = median(rates[name])
    print(string.format("%-16s %10.0f  %5.1f%%", name, m, 100 * m / base))
  end' <"$RES"
