#!/bin/sh
# Before/after of a change: examples/echo.lua of this tree (A) against the same
# server from another built checkout (B), in one run, runs alternating
# A B A B so machine drift falls on both; medians and the ratio A/B.
#   git worktree add /tmp/before REV && (cd /tmp/before && make build)
#   make build && sh bench/compare.sh /tmp/before
# Env: CMP_SECS=3 CMP_RUNS=5 CMP_COLUMNS="m32 m4k m1m r32 r4k upg" (as in run.sh:
# m* 32 B / 4 KiB / 1 MiB echo with BENCH_DEPTH in flight, r* one in flight,
# upg upgrades/s). Servers pinned to core 0, the load to core 1.
set -u
B=${1:?usage: sh bench/compare.sh OTHER_BUILT_TREE}
cd "$(dirname "$0")/.." || exit 1
A=$PWD OUT=$PWD/build/bench
SECS=${CMP_SECS:-3} RUNS=${CMP_RUNS:-5} COLUMNS=${CMP_COLUMNS:-"m32 m4k m1m r32 r4k upg"}
DEPTH=${BENCH_DEPTH:-32}
mkdir -p "$OUT"
for t in "$A" "$B"; do
  [ -f "$t/.rocks/lib/lua/5.4/ws/core.so" ] || { echo "$t: run 'make build' there first" >&2; exit 1; }
done
cc -std=c99 -O2 -Wall -Wextra -Werror bench/wsload.c -lssl -lcrypto -lz -o "$OUT/wsload" || exit 1

PIDS=""
trap 'for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done' EXIT
trap 'exit 130' INT TERM HUP
PORT=${BENCH_PORT:-18900}
# serve TREE: its echo.lua on a free port, pinned; sets SPORT
serve() {
  PORT=$((PORT + 1))
  while ss -tanH "( sport = :$PORT or dport = :$PORT )" 2>/dev/null | grep -q .; do PORT=$((PORT + 1)); done
  (cd "$1" && LUA_PATH="$1/.rocks/share/lua/5.4/?.lua;$1/.rocks/share/lua/5.4/?/init.lua;;" \
    LUA_CPATH="$1/.rocks/lib/lua/5.4/?.so;;" exec taskset -c 0 lua5.4 examples/echo.lua --port "$PORT") \
    >>"$OUT/compare-server.log" 2>&1 &
  PIDS="$PIDS $!" SPORT=$PORT
  i=0
  until ss -ltnH "sport = :$PORT" | grep -q .; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "server in $1 did not start" >&2; exit 1; }; sleep 0.1
  done
}
serve "$A"; PA=$SPORT
serve "$B"; PB=$SPORT

args() {
  case $1 in
    m32) echo "echo --conns 64 --size 32 --text --depth $DEPTH" ;;
    m4k) echo "echo --conns 64 --size 4096 --binary --depth $DEPTH" ;;
    m1m) echo "echo --conns 4 --size 1048576 --binary --depth 2" ;;
    r32) echo "echo --conns 64 --size 32 --text --depth 1" ;;
    r4k) echo "echo --conns 64 --size 4096 --binary --depth 1" ;;
    upg) echo "upgrade --conns 16" ;;
  esac
}
RES=$OUT/compare-results.txt
: >"$RES"
r=1
while [ "$r" -le "$RUNS" ]; do
  for c in $COLUMNS; do
    for side in A B; do
      [ $side = A ] && p=$PA || p=$PB
      # shellcheck disable=SC2046
      line=$(timeout -k 2 $((SECS + 60)) taskset -c 1 "$OUT/wsload" $(args "$c") --port "$p" --secs "$SECS" \
             --warmup 0.5 2>>"$OUT/compare-wsload.log" | grep '^RESULT')
      echo "$side $c $r ${line:-RESULT failed=1}" >>"$RES"
    done
  done
  echo "run $r/$RUNS done" >&2
  r=$((r + 1))
done
lua5.4 - "$RES" <<'EOF'
local runs = {}
for line in io.lines(arg[1]) do
  local side, col, fields = line:match("^(%S+) (%S+) %S+ RESULT ?(.*)$")
  local v = tonumber(fields:match("upgrades_per_s=(%S+)") or fields:match("msgs_per_s=(%S+)"))
  if fields:match("failed=1") or (tonumber(fields:match("errors=(%d+)")) or 0) > 0 then v = nil end
  runs[col] = runs[col] or { A = {}, B = {}, order = #runs }
  if v then table.insert(runs[col][side], v) end
end
local function median(xs)
  if #xs == 0 then return nil end
  table.sort(xs)
  local n = #xs
  return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end
print("| column | A (this tree) | B | A/B |")
print("|---|---:|---:|---:|")
for col in (os.getenv("CMP_COLUMNS") or "m32 m4k m1m r32 r4k upg"):gmatch("%S+") do
  local t = runs[col]
  local a, b = t and median(t.A), t and median(t.B)
  print(string.format("| %s | %s | %s | %s |", col, a and string.format("%.0f", a) or "failed",
    b and string.format("%.0f", b) or "failed", a and b and string.format("%.2f", a / b) or "-"))
end
EOF
