#!/bin/sh
# Workers benchmark: examples/echo.lua --workers 1 and 2 (SO_REUSEPORT), and
# the cost of a graceful drain. Not a test; prints a Markdown table.
#   make build && sh bench/workers.sh
# Env: BENCH_SECS=5  BENCH_IDLE_CONNS=10000  BENCH_GRACE="0 5"  BENCH_PORT=18900
# Measures, with wsload (bench/wsload.c):
# - 32 B text echo, 64 connections, 32 in flight each: msg/s;
# - upgrades/s: 16 slots churning connect + handshake + close;
# - idle memory per connection: (sum of the workers' VmRSS with N idle
#   connections - before) / N;
# - drain of N idle connections: wall time from SIGTERM to exit, and the CPU
#   the drain took (os.clock() in the server's "drained" log line).
# Nothing is pinned: the load generator shares the 2 cores with the workers,
# which is what limits the 2-worker figures here.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=$ROOT/build/bench
mkdir -p "$OUT"
SECS=${BENCH_SECS:-5} IDLE=${BENCH_IDLE_CONNS:-10000} GRACES=${BENCH_GRACE:-"0 5"}
PORT=${BENCH_PORT:-18900}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export LUA_PATH="$ROOT/.rocks/share/lua/5.4/?.lua;$ROOT/.rocks/share/lua/5.4/?/init.lua;;"
export LUA_CPATH="$ROOT/.rocks/lib/lua/5.4/?.so;;"
[ -f .rocks/lib/lua/5.4/ws/core.so ] || { echo "run 'make build' first" >&2; exit 1; }
cc -std=c99 -O2 -Wall -Wextra -Werror bench/wsload.c -lcrypto -o "$OUT/wsload" || exit 1
W=$OUT/wsload

SPID=""
cleanup() { [ -n "$SPID" ] && kill -TERM "$SPID" 2>/dev/null; sleep 0.3; [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

next_port() {
  PORT=$((PORT + 1))
  while ss -tanH "( sport = :$PORT or dport = :$PORT )" 2>/dev/null | grep -q .; do PORT=$((PORT + 1)); done
}

# start ARGS...: echo.lua in the background on a fresh port; SPID, LOG
start() {
  next_port
  LOG=$OUT/workers-$PORT.log
  lua5.4 examples/echo.lua --port "$PORT" "$@" >"$LOG" 2>&1 &
  SPID=$!
  i=0
  while [ $i -lt 100 ] && ! ss -ltnH "( sport = :$PORT )" | grep -q .; do sleep 0.05; i=$((i + 1)); done
  sleep 0.3
}

stop() { kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; SPID=""; }

# the server's processes: the workers (children) or the server itself
rss_sum() {
  pids=$(pgrep -P "$SPID"); [ -n "$pids" ] || pids=$SPID
  t=0
  for p in $pids; do
    r=$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' /proc/$p/status 2>/dev/null)
    t=$((t + ${r:-0}))
  done
  echo $t
}

field() { sed -n "s/.*[ (]$1=\([0-9.]*\).*/\1/p"; }

# hold N idle connections; sets LPID once "ready" was printed
hold_idle() {
  IDLE_OUT=$OUT/idle-$PORT.out
  "$W" idle --port "$PORT" --conns "$1" --secs 600 --timeout 60 >"$IDLE_OUT" 2>>"$OUT/wsload.log" &
  LPID=$!
  i=0
  while [ $i -lt 1200 ] && ! grep -q '^ready' "$IDLE_OUT" && kill -0 $LPID 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
}

echo "| workers | 32 B echo msg/s | upgrades/s | idle KiB/conn ($IDLE conns) |"
echo "|---|---|---|---|"
for n in 1 2; do
  start --workers "$n"
  echo=$("$W" echo --port "$PORT" --conns 64 --size 32 --text --depth 32 --secs "$SECS" --warmup 0.5 2>>"$OUT/wsload.log" | grep '^RESULT')
  up=$("$W" upgrade --port "$PORT" --conns 16 --secs "$SECS" --warmup 0.5 2>>"$OUT/wsload.log" | grep '^RESULT')
  base=$(rss_sum)
  hold_idle "$IDLE"
  conns=$(sed -n 's/^ready conns=\([0-9]*\).*/\1/p' "$IDLE_OUT")
  sleep 1
  rss=$(rss_sum)
  kill -TERM "$LPID" 2>/dev/null; wait "$LPID" 2>/dev/null
  per=$(awk -v a="$base" -v b="$rss" -v n="${conns:-0}" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "-" }')
  echo "| $n | $(echo "$echo" | field msgs_per_s) | $(echo "$up" | field upgrades_per_s) | $per (${conns:-0} open) |"
  stop
done

echo
echo "| drain of $IDLE idle connections | grace | SIGTERM to exit (s) | drain CPU (s) | closed |"
echo "|---|---|---|---|---|"
for g in $GRACES; do
  start --grace "$g"
  hold_idle "$IDLE"
  t0=$(date +%s.%N)
  kill -TERM "$SPID"
  wait "$SPID" 2>/dev/null
  t1=$(date +%s.%N)
  SPID=""
  kill -TERM "$LPID" 2>/dev/null; wait "$LPID" 2>/dev/null
  line=$(grep 'drained' "$LOG")
  echo "| single server | $g | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') | $(echo "$line" | field cpu) | $(echo "$line" | field closed) |"
done
