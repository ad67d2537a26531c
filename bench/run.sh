#!/bin/sh
# Echo-server benchmark: lua-ws (examples/echo.lua) against peers, in one run.
#   make bench        (or: sh bench/run.sh after make build)
# Env: BENCH_SECS=5 BENCH_RUNS=3 (median of runs)  BENCH_IDLE_CONNS=10000
#      BENCH_QUICK=1 (1 s x 1 run, 1000 idle conns)  BENCH_SERVERS="ours gorilla ..."
#      BENCH_DEPTH=32 / BENCH_DEPTH_BIG=2: messages in flight per connection for
#      32 B and 4 KiB / for 1 MiB; deep enough that the server, not the
#      ping-pong of wake-ups between the two cores, is the bottleneck
#      BENCH_BASE=TREE: also a server "base", ours with the Lua modules and ws.core
#      of rocks tree TREE (a copy of .rocks before a change), in every group
#      ours is in: a change and its base measured in one run, in turn
#      BENCH_BASE_ARGS="--receive-loop": more arguments for base's echo
#      servers (a base from before conn:serve needs this one)
#      server "loop": ours with --receive-loop (handlers as a loop over
#      conn:receive(), one task switch per message, where ours uses conn:serve)
#      BENCH_CODEC=0 (skip codec.lua)  BENCH_PORT=18700 (ports are tried upward from it)
#      BENCH_COLUMNS="deep rt1 pmd upg idle" (all by default), groups of columns:
#        deep: 32 B / 4 KiB / 1 MiB echo, BENCH_DEPTH messages in flight
#        rt1:  32 B / 4 KiB echo, one message in flight per connection, and
#              the server's CPU µs per message
#        pmd:  permessage-deflate echo, 4 KiB and 64 KiB JSON-like text, with
#              no context takeover and with it (servers restarted with deflate on);
#              also the server's CPU µs per message (wsload --pid), steadier
#              than msgs/s when other work shares the cores
#        tls:  wss:// echo 64 x 32 B and 4 x 1 MiB, TLS upgrades/s (TLS 1.3,
#              TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256 certificate, for
#              every server; ours is examples/wss_echo.lua); the upgrades come
#              from bench/tlsup.go (Go's TLS client: OpenSSL 3.0's, in wsload,
#              costs more per handshake than any server), with each server's
#              CPU µs per upgrade
#        fan:  fan-out, one publisher and BENCH_FAN_SUBS (1000) receivers on one
#              chat server (every message to all the others), 32 B and 4 KiB,
#              BENCH_FAN_DEPTH (4) messages not yet everywhere at a time;
#              ours is examples/chat.lua
#        cli:  client throughput: our client, Node ws's and python-websockets'
#              (bench/peers/client_*; and base's with BENCH_BASE) each on one
#              connection, 32 messages in flight, 32 B and 4 KiB, through the
#              libwebsockets echo server; also each client's CPU µs per message
#        upg:  upgrades/s    idle: RSS per idle connection
# Servers run pinned to core 0, the load generator to core 1, over loopback.
# Output: a Markdown table on stdout; raw results and logs in build/bench/.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=$ROOT/build/bench
mkdir -p "$OUT"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  SECS=${BENCH_SECS:-1} RUNS=${BENCH_RUNS:-1} IDLE=${BENCH_IDLE_CONNS:-1000}
  WARMUP=0.2; export BENCH_CODEC_SECS=${BENCH_CODEC_SECS:-0.05}
else
  SECS=${BENCH_SECS:-5} RUNS=${BENCH_RUNS:-3} IDLE=${BENCH_IDLE_CONNS:-10000}; WARMUP=0.5
fi
DEPTH=${BENCH_DEPTH:-32} DEPTH_BIG=${BENCH_DEPTH_BIG:-2}
SERVERS=${BENCH_SERVERS:-"ours gorilla node-ws py-websockets lua-http lws"}
BASE=${BENCH_BASE:-}
case " $SERVERS " in *" base "*) ;; *) [ -n "$BASE" ] && SERVERS="$SERVERS base" ;; esac
COLUMNS=${BENCH_COLUMNS:-"deep rt1 pmd tls fan cli upg idle"}
FAN_SUBS=${BENCH_FAN_SUBS:-1000} FAN_DEPTH=${BENCH_FAN_DEPTH:-4}
has() { case " $COLUMNS " in *" $1 "*) return 0 ;; esac; return 1; }
# permessage-deflate peers: those with the extension (lua-http and our lws
# peer have it off)
PMD_SERVERS=""
for s in $SERVERS; do case $s in ours|base|loop|gorilla|node-ws|py-websockets) PMD_SERVERS="$PMD_SERVERS $s" ;; esac; done
# and TLS, and fan-out (the same ones; chat.lua has no receive loop to compare)
TLS_SERVERS=$PMD_SERVERS FAN_SERVERS=$(echo "$PMD_SERVERS" | sed 's/ loop\b//')
CERT=$OUT/tls/cert.pem KEY=$OUT/tls/key.pem
PORT=${BENCH_PORT:-18700}
RES=$OUT/results.txt
: >"$RES"; rm -f "$OUT"/*.log "$OUT/codec.md"

timeout 1200 sh bench/deps.sh >&2   # apt/npm only when something is missing

# 10k client sockets here, 10k accepted sockets in the server
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

OURS_PATH="$ROOT/.rocks/share/lua/5.4/?.lua;$ROOT/.rocks/share/lua/5.4/?/init.lua;;"
OURS_CPATH="$ROOT/.rocks/lib/lua/5.4/?.so;;"
BASE=${BENCH_BASE:-$ROOT/.rocks}
BASE_PATH="$BASE/share/lua/5.4/?.lua;$BASE/share/lua/5.4/?/init.lua;;" BASE_CPATH="$BASE/lib/lua/5.4/?.so;;"
# Debian installs lua-http (and basexx, fifo, lpeg_patterns) for Lua 5.1-5.3
# only; the files are version-neutral and the C deps exist for 5.4.
LH_PATH="/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua;/usr/share/lua/5.3/?.lua;/usr/share/lua/5.3/?/init.lua;/usr/share/lua/5.2/?.lua;/usr/share/lua/5.2/?/init.lua;;"

echo "building wsload and peers..." >&2
cc -std=c99 -O2 -Wall -Wextra -Werror bench/wsload.c -lssl -lcrypto -lz -o "$OUT/wsload" || exit 1
if has tls && [ ! -f "$CERT" ]; then
  mkdir -p "$OUT/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=127.0.0.1 \
    -keyout "$KEY" -out "$CERT" 2>/dev/null || exit 1
fi
[ -f .rocks/lib/lua/5.4/ws/core.so ] || { echo "run 'make build' first" >&2; exit 1; }
if command -v go >/dev/null 2>&1; then
  (cd "$OUT" && export GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$OUT/gocache" &&
    timeout 300 go build -o "$OUT/gorilla_echo" "$ROOT/bench/peers/gorilla_echo.go" &&
    timeout 300 go build -o "$OUT/gorilla_fanout" "$ROOT/bench/peers/gorilla_fanout.go" &&
    timeout 300 go build -o "$OUT/tlsup" "$ROOT/bench/tlsup.go") >&2 \
    || echo "gorilla peers or tlsup did not build" >&2
fi
cc -O2 -Wall -Wextra -Werror bench/peers/lws_echo.c -lwebsockets -o "$OUT/lws_echo" \
  || echo "libwebsockets peer did not build" >&2

PIDS=""
cleanup() {
  for _p in $PIDS; do kill -TERM "$_p" 2>/dev/null; done
  sleep 0.3
  for _p in $PIDS; do kill -KILL "$_p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# A port no socket uses, not even one in TIME_WAIT or FIN_WAIT from a killed
# server (some servers bind without SO_REUSEADDR).
next_port() {
  PORT=$((PORT + 1))
  while ss -tanH "( sport = :$PORT or dport = :$PORT )" 2>/dev/null | grep -q .; do PORT=$((PORT + 1)); done
}

# start NAME [deflate|tls]: the server pinned to core 0 on a fresh port; sets
# SPID (taskset execs, so it is the server's own pid, whose VmRSS we read) and
# SPORT. deflate: permessage-deflate on; tls: wss://. Returns 1 if it never listens.
# Ours run --quiet: no line per connection, as the peers' servers write none.
start() {
  log=$OUT/$1.log
  next_port; set -- "$1" "$PORT" "${2:-}"; SPORT=$PORT
  peer_args=$3
  [ "$3" = tls ] && peer_args="tls $CERT $KEY"
  # ours and base: the same scripts, each with its own tree
  LP=$OURS_PATH LC=$OURS_CPATH EXTRA=""
  [ "$1" = base ] && LP=$BASE_PATH LC=$BASE_CPATH EXTRA=${BENCH_BASE_ARGS:-}
  [ "$1" = loop ] && EXTRA=--receive-loop
  if [ "$3" = fan ]; then   # the fan-out servers
    case $1 in
      ours|base) LUA_PATH=$LP LUA_CPATH=$LC taskset -c 0 lua5.4 examples/chat.lua --port "$2" >>"$log" 2>&1 & ;;
      gorilla) [ -x "$OUT/gorilla_fanout" ] || return 1
        GOMAXPROCS=1 taskset -c 0 "$OUT/gorilla_fanout" "$2" >>"$log" 2>&1 & ;;
      node-ws) taskset -c 0 node bench/peers/node_fanout.js "$2" >>"$log" 2>&1 & ;;
      py-websockets) taskset -c 0 /usr/bin/python3 bench/peers/py_fanout.py "$2" >>"$log" 2>&1 & ;;
      *) return 1 ;;
    esac
  else
  case $1 in
    ours|base|loop) if [ "$3" = tls ]; then
            LUA_PATH=$LP LUA_CPATH=$LC taskset -c 0 lua5.4 examples/wss_echo.lua --port "$2" \
              --cert "$CERT" --key "$KEY" --quiet $EXTRA >>"$log" 2>&1 &
          else
            LUA_PATH=$LP LUA_CPATH=$LC taskset -c 0 lua5.4 examples/echo.lua --port "$2" \
              ${3:+--compression} --quiet $EXTRA >>"$log" 2>&1 &
          fi ;;
    gorilla) [ -x "$OUT/gorilla_echo" ] || return 1
      GOMAXPROCS=1 taskset -c 0 "$OUT/gorilla_echo" "$2" $peer_args >>"$log" 2>&1 & ;;
    node-ws) NODE_PATH=$ROOT/bench/node_modules taskset -c 0 node bench/peers/node_echo.js "$2" $peer_args >>"$log" 2>&1 & ;;
    py-websockets) taskset -c 0 /usr/bin/python3 bench/peers/py_echo.py "$2" $peer_args >>"$log" 2>&1 & ;;
    lws) [ -x "$OUT/lws_echo" ] || return 1
      taskset -c 0 "$OUT/lws_echo" "$2" >>"$log" 2>&1 & ;;
    lua-http) LUA_PATH=$LH_PATH taskset -c 0 lua5.4 bench/peers/luahttp_echo.lua "$2" >>"$log" 2>&1 & ;;
    *) return 1 ;;
  esac
  fi
  SPID=$!
  PIDS="$PIDS $SPID"
  i=0
  while [ $i -lt 100 ]; do   # up to 10 s to listen
    ss -ltnH "sport = :$2" 2>/dev/null | grep -q . && return 0
    kill -0 "$SPID" 2>/dev/null || return 1
    sleep 0.1; i=$((i + 1))
  done
  return 1
}

stop() { kill -TERM "$1" 2>/dev/null; sleep 0.3; kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

load() { # load SERVER MODE RUN PORT wsload-args...: one measurement, appended to RES
  tag="$1 $2 $3" lport=$4; shift 4
  line=$(timeout -k 2 $((${SECS%.*} + 60)) taskset -c 1 "$OUT/wsload" "$@" --port "$lport" \
         --secs "$SECS" --warmup "$WARMUP" 2>>"$OUT/wsload.log" | grep '^RESULT')
  echo "$tag ${line:-RESULT errors=1 failed=1}" >>"$RES"
  sleep 0.2   # let the server settle before the next load
}

# Phase 1: throughput and latency. All servers are up (idle ones cost
# nothing) and runs interleave across servers, each run starting with the
# next one, so machine noise spreads evenly.
# run_phase SERVERS [deflate|tls]: one round of the selected columns per run.
rotate() { _first=$1; shift; echo "$* $_first"; }
run_phase() {
  _servers=$1 _pmd=${2:-}
  UP=""
  for s in $_servers; do
    if start "$s" $_pmd; then UP="$UP $s:$SPORT:$SPID"; else echo "$s failed to start (see $OUT/$s.log)" >&2; echo "$s down 1 RESULT failed=1" >>"$RES"; fi
  done
  r=1 ORDER=$UP
  while [ $r -le "$RUNS" ]; do
    for sp in $ORDER; do
      s=${sp%%:*} p=${sp#*:} pid=${p#*:} p=${p%:*}   # name:port:pid
      echo "run $r/$RUNS: $s ${_pmd:-plain}" >&2
      if [ "$_pmd" = fan ]; then
        load "$s" f32 $r "$p" fanout --conns $((FAN_SUBS + 1)) --size 32 --text --depth "$FAN_DEPTH"
        load "$s" f4k $r "$p" fanout --conns $((FAN_SUBS + 1)) --size 4096 --binary --depth "$FAN_DEPTH"
        continue
      fi
      if [ "$_pmd" = tls ]; then
        load "$s" s32 $r "$p" echo --tls --conns 64 --size 32 --text --depth "$DEPTH" --pid "$pid"
        load "$s" s1m $r "$p" echo --tls --conns 4 --size 1048576 --binary --depth "$DEPTH_BIG" --pid "$pid"
        # TLS upgrades: tlsup (Go's client); wsload's OpenSSL 3.0 client costs
        # more per handshake than the servers and would measure itself
        if [ -x "$OUT/tlsup" ]; then
          line=$(GOMAXPROCS=1 timeout -k 2 $((${SECS%.*} + 60)) taskset -c 1 "$OUT/tlsup" --conns 16 \
                 --port "$p" --pid "$pid" --secs "$SECS" --warmup "$WARMUP" 2>>"$OUT/wsload.log" | grep '^RESULT')
          echo "$s supg $r ${line:-RESULT errors=1 failed=1}" >>"$RES"; sleep 0.2
        else
          load "$s" supg $r "$p" upgrade --tls --conns 16
        fi
        continue
      fi
      if [ -n "$_pmd" ]; then
        for size in 4096 65536; do
          zs=$([ $size = 4096 ] && echo 4k || echo 64k)
          load "$s" "z${zs}n" $r "$p" echo --conns 64 --size $size --json --depth 1 --deflate none --pid "$pid"
          # gorilla does no context takeover: it answers every offer without it
          [ "$s" = gorilla ] || load "$s" "z${zs}t" $r "$p" echo --conns 64 --size $size --json --depth 1 --deflate takeover --pid "$pid"
        done
        continue
      fi
      if has deep; then
        load "$s" m32 $r "$p" echo --conns 64 --size 32 --text --depth "$DEPTH"
        load "$s" m4k $r "$p" echo --conns 64 --size 4096 --binary --depth "$DEPTH"
        load "$s" m1m $r "$p" echo --conns 4 --size 1048576 --binary --depth "$DEPTH_BIG"
      fi
      if has rt1; then
        load "$s" r32 $r "$p" echo --conns 64 --size 32 --text --depth 1 --pid "$pid"
        load "$s" r4k $r "$p" echo --conns 64 --size 4096 --binary --depth 1 --pid "$pid"
      fi
      has upg && load "$s" upg $r "$p" upgrade --conns 16 --pid "$pid"
    done
    # each run starts with the next server: the first of a round measured
    # 10-15% worse (a machine waking up), which must not always be the same one
    ORDER=$(rotate $ORDER)
    r=$((r + 1))
  done
  cleanup; PIDS=""
}
if has deep || has rt1 || has upg; then run_phase "$SERVERS"; fi
has pmd && run_phase "$PMD_SERVERS" deflate
has tls && run_phase "$TLS_SERVERS" tls
has fan && run_phase "$FAN_SERVERS" fan

# Client throughput: the clients take turns against one libwebsockets server.
client_load() { # client_load CLIENT MODE RUN PORT SIZE
  url=ws://127.0.0.1:$4/ws
  LP=$OURS_PATH LC=$OURS_CPATH
  case $1 in
    ours) cmd="lua5.4 bench/peers/client_ours.lua" ;;
    base) cmd="lua5.4 bench/peers/client_ours.lua" LP=$BASE_PATH LC=$BASE_CPATH ;;
    node-ws) cmd="node bench/peers/client_node.js" ;;
    py-websockets) cmd="/usr/bin/python3 bench/peers/client_py.py" ;;
  esac
  # shellcheck disable=SC2086
  line=$(LUA_PATH=$LP LUA_CPATH=$LC timeout -k 2 $((${SECS%.*} + 30)) taskset -c 1 \
         $cmd "$url" "$5" 32 "$SECS" 2>>"$OUT/wsload.log" | grep '^RESULT')
  echo "$1 $2 $3 ${line:-RESULT errors=1 failed=1}" >>"$RES"
  sleep 0.2
}
if has cli; then
  if start lws; then
    p=$SPORT r=1
    while [ $r -le "$RUNS" ]; do
      for c in ours node-ws py-websockets ${BENCH_BASE:+base}; do
        echo "run $r/$RUNS: client $c" >&2
        client_load "$c" c32 $r "$p" 32
        client_load "$c" c4k $r "$p" 4096
      done
      r=$((r + 1))
    done
    cleanup; PIDS=""
  else
    echo "lws failed to start: no client columns" >&2
  fi
fi

# Phase 2: RSS per idle connection, each server fresh. A short churn first
# warms code paths so one-time allocations do not count per connection.
has idle && for s in $SERVERS; do
  echo "idle $IDLE conns: $s" >&2
  start "$s" && p=$SPORT || { echo "$s idle 1 RESULT failed=1" >>"$RES"; continue; }
  timeout 20 taskset -c 1 "$OUT/wsload" upgrade --conns 4 --secs 0.5 --warmup 0 --port $p >/dev/null 2>&1
  sleep 1
  base=$(rss_kb "$SPID")
  idle_out=$OUT/idle.out; : >"$idle_out"
  timeout -k 2 200 taskset -c 1 "$OUT/wsload" idle --conns "$IDLE" --port $p --timeout 120 --secs 150 \
    >"$idle_out" 2>>"$OUT/wsload.log" &
  lpid=$!
  i=0
  while [ $i -lt 1400 ] && ! grep -q '^ready' "$idle_out" && kill -0 $lpid 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  sleep 1   # let lazy per-connection work finish
  rss=$(rss_kb "$SPID")
  kill -TERM $lpid 2>/dev/null; wait $lpid 2>/dev/null
  conns=$(sed -n 's/^ready conns=\([0-9]*\).*/\1/p' "$idle_out")
  echo "$s idle 1 RESULT want=$IDLE conns=${conns:-0} rss_base_kb=$base rss_kb=$rss" >>"$RES"
  stop "$SPID"
done

if [ "${BENCH_CODEC:-1}" = 1 ]; then
  LUA_PATH=$OURS_PATH LUA_CPATH=$OURS_CPATH timeout 300 taskset -c 1 lua5.4 bench/codec.lua >"$OUT/codec.md" 2>&1
fi

# The report
echo "# lua-ws echo benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Command: \`BENCH_COLUMNS=\"$COLUMNS\" BENCH_SECS=$SECS BENCH_RUNS=$RUNS BENCH_IDLE_CONNS=$IDLE BENCH_DEPTH=$DEPTH BENCH_DEPTH_BIG=$DEPTH_BIG sh bench/run.sh\`;" \
     "$(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)."
echo "Server on core 0 (\`taskset -c 0\`), wsload on core 1, loopback; median of $RUNS run(s) of $SECS s."
echo
lua5.4 bench/report.lua "$RES"
[ -f "$OUT/codec.md" ] && { echo; cat "$OUT/codec.md"; }
exit 0
