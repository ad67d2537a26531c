#!/bin/sh
# Cross-process fan-out through Redis (ws.hub), against one process
# broadcasting and against Node (ws + the redis npm client):
#   sh bench/fanout_redis.sh            (after make build; FANOUT_SECS=5 by default)
#   FANOUT_PARTS="fanout" sh bench/fanout_redis.sh   (part 1 only; default "fanout latency memory")
# 1. delivered messages/s, 1 publisher, 3,000 subscribers on one room
#    (FANOUT_SUBS, FANOUT_RATE: 400 msg/s):
#    3 lua-ws processes x 1,000 on one Redis / 1 lua-ws process x 3,000 /
#    3 Node processes x 1,000 on one Redis; Redis CPU and the servers' CPU
#    per published message
# 2. latency Redis adds: 3 processes x 2 subscribers, 1k and 10k msg/s,
#    subscribers on the publisher's process (local) vs the others (remote)
# 3. memory: RSS per connection+subscription at 10,000 connections, and the
#    hub's own bookkeeping per subscription (Lua heap)
# Everything shares the machine's cores (servers, Redis, load client).
cd "$(dirname "$0")/.." || exit 1
SECS=${FANOUT_SECS:-5}
RATE=${FANOUT_RATE:-400}          # published messages/s in part 1 (x SUBS deliveries)
SUBS=${FANOUT_SUBS:-3000}         # subscribers in part 1, a third on each process
MEMCONNS=${FANOUT_MEMCONNS:-10000}
PARTS=${FANOUT_PARTS:-fanout latency memory}
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
OUT=build/bench/fanout
mkdir -p $OUT
T=$(pwd)/.rocks
export LUA_PATH_5_4="$T/share/lua/5.4/?.lua;$T/share/lua/5.4/?/init.lua;;" LUA_CPATH_5_4="$T/lib/lua/5.4/?.so;;"
[ -d bench/peers/fanout/node_modules/redis ] ||
  (cd bench/peers/fanout && npm ci --no-audit --no-fund --loglevel=error) || echo "npm ci failed: no Node row" >&2

free_port() { lua5.4 -e 'local s=require("socket").bind("127.0.0.1",0) local _, p = s:getsockname() print(p) s:close()'; }
wait_port() {
  lua5.4 -e 'local socket = require "socket"
    for _ = 1, 100 do
      local c = socket.tcp(); c:settimeout(0.2)
      if c:connect("127.0.0.1", '"$1"') then c:close(); os.exit(0) end
      c:close(); socket.sleep(0.1)
    end
    os.exit(1)'
}
PIDS=""
cleanup() { for p in $PIDS; do kill $p 2>/dev/null; done; PIDS=""; sleep 0.3; }
trap cleanup EXIT INT TERM

RPORT=$(free_port)
redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no >$OUT/redis.log 2>&1 &
RPID=$!
wait_port $RPORT || { echo "redis-server did not start"; exit 1; }

start_lua() {   # port [args]
  p=$1; shift
  ulimit -n 20000 2>/dev/null
  lua5.4 examples/chat.lua --port $p "$@" >>$OUT/servers.log 2>&1 &
  PIDS="$PIDS $!"
  wait_port $p
}
start_node() {
  node bench/peers/fanout/node_fanout.js $1 $RPORT >>$OUT/servers.log 2>&1 &
  PIDS="$PIDS $!"
  wait_port $1
}
load() {   # ports subs rate [parse]
  ulimit -n 20000 2>/dev/null
  lua5.4 bench/fanout_client.lua --ports $1 --subs $2 --rate $3 --secs $SECS --size 32 --parse ${4:-10} \
    --redis-port $RPORT --pids "$(echo $PIDS | tr ' ' ',')" 2>>$OUT/client.log |
    grep RESULT
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

if part fanout; then
echo "## fan-out: 1 publisher at $RATE msg/s, $SUBS subscribers, $SECS s"
echo
echo "| setup | delivered/s | of expected | closed | PUBLISH run by Redis | Redis CPU µs per PUBLISH | servers' CPU µs per message sent | p50 ms local / remote |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
row() {   # name result
  exp=$(field "$2" expected); del=$(field "$2" delivered)
  echo "| $1 | $(field "$2" rate) | $(awk -v d="$del" -v e="$exp" 'BEGIN { printf "%.1f%%", e ? d * 100 / e : 0 }') |" \
    "$(field "$2" closed) | $(field "$2" published) | $(field "$2" redis_us) | $(field "$2" server_us) |" \
    "$(field "$2" local_p50) / $(field "$2" remote_p50) |"
}
P1=$(free_port); P2=$(free_port); P3=$(free_port)
start_lua $P1 --redis redis://127.0.0.1:$RPORT/0; start_lua $P2 --redis redis://127.0.0.1:$RPORT/0
start_lua $P3 --redis redis://127.0.0.1:$RPORT/0
R=$(load $P1,$P2,$P3 $SUBS $RATE)
row "lua-ws, 3 processes x $((SUBS / 3)), Redis" "$R"
cleanup
P1=$(free_port)
start_lua $P1
R=$(load $P1 $SUBS $RATE)
row "lua-ws, 1 process x $SUBS, no Redis" "$R"
cleanup
if [ -d bench/peers/fanout/node_modules/redis ]; then
  P1=$(free_port); P2=$(free_port); P3=$(free_port)
  start_node $P1; start_node $P2; start_node $P3
  R=$(load $P1,$P2,$P3 $SUBS $RATE)
  row "Node ws + redis, 3 processes x $((SUBS / 3))" "$R"
  cleanup
fi
fi

if part latency; then
echo
echo "## latency Redis adds: 3 processes x 2 subscribers, $SECS s (ms from send to receive)"
echo
echo "| publish rate | local p50 | local p99 | remote p50 | remote p99 |"
echo "| --- | --- | --- | --- | --- |"
P1=$(free_port); P2=$(free_port); P3=$(free_port)
start_lua $P1 --redis redis://127.0.0.1:$RPORT/0; start_lua $P2 --redis redis://127.0.0.1:$RPORT/0
start_lua $P3 --redis redis://127.0.0.1:$RPORT/0
for rate in 1000 10000; do
  R=$(load $P1,$P2,$P3 6 $rate 2)
  echo "| $rate msg/s | $(field "$R" local_p50) | $(field "$R" local_p99) | $(field "$R" remote_p50) | $(field "$R" remote_p99) |"
done
cleanup
fi

if part memory; then
echo
echo "## memory at $MEMCONNS connections, each subscribed to one room (lua-ws + Redis)"
echo
P1=$(free_port)
start_lua $P1 --redis redis://127.0.0.1:$RPORT/0
SPID=$(echo $PIDS | awk '{print $NF}')
rss() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
before=$(rss $SPID)
ulimit -n 20000 2>/dev/null
lua5.4 bench/fanout_client.lua --ports $P1 --subs $MEMCONNS --rate 1 --secs 4 --parse 0 >$OUT/mem.txt 2>&1 &
CPID=$!
sleep 1
peak=0
while kill -0 $CPID 2>/dev/null; do r=$(rss $SPID); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.5; done
echo "- RSS per connection with its subscription: $(( (peak - before) * 1024 / MEMCONNS )) bytes ($before KiB -> $peak KiB; $(grep -o 'delivered=[0-9]*' $OUT/mem.txt))"
lua5.4 -e '
  local hub = require("ws.hub").new {}
  local conns = {}
  for i = 1, 10000 do conns[i] = { state = "open", on_close = function() end } end
  collectgarbage(); collectgarbage()
  local k0 = collectgarbage("count")
  for i = 1, 10000 do hub:subscribe(conns[i], "room") end
  collectgarbage(); collectgarbage()
  print(string.format("- hub bookkeeping per subscription (Lua heap, 10,000 in one room): %.0f bytes",
    (collectgarbage("count") - k0) * 1024 / 10000))'
cleanup
fi
kill $RPID 2>/dev/null
