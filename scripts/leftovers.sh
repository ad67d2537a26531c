#!/bin/sh
# Processes the test suites started and did not stop (every test stops what
# it starts, by PID): any process that inherited this run's mark
# (LUA_WS_TEST_RUN in its environment, set by scripts/test.sh) other than
# this script, its ancestors and its own commands. Waits up to
# LEFTOVERS_GRACE seconds (3) for them to go, then names and kills what is
# left; one line "leftovers: N passed, N failed".
mark=${LUA_WS_TEST_RUN:?leftovers.sh: LUA_WS_TEST_RUN is not set}
GRACE=${LEFTOVERS_GRACE:-3}
keep=" "
p=$$
while [ "${p:-1}" -gt 1 ]; do
  keep="$keep$p "
  p=$(awk '/^PPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
done

scan() {
  self=$(exec sh -c 'echo $PPID')   # (this subshell: its commands are ours)
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    case "$keep" in *" $pid "*) continue ;; esac
    [ "$pid" = "$self" ] && continue
    ppid=$(awk '/^PPid:/ { print $2 } /^State:/ { s = $2 } END { if (s == "Z") print "Z" }' "$d/status" 2>/dev/null)
    case "$ppid" in ""|*Z*) continue ;; esac      # (gone, or a zombie: holds nothing)
    [ "$ppid" = "$$" ] || [ "$ppid" = "$self" ] && continue
    grep -qzx "LUA_WS_TEST_RUN=$mark" "$d/environ" 2>/dev/null && echo "$pid"
  done
}

left=$(scan)
i=0
while [ -n "$left" ] && [ $i -lt $((GRACE * 10)) ]; do
  sleep 0.1; i=$((i + 1)); left=$(scan)
done
if [ -z "$left" ]; then
  echo "leftovers: 1 passed, 0 failed"
  exit 0
fi
n=0
for pid in $left; do
  echo "left running: $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
  kill -9 "$pid" 2>/dev/null
  n=$((n + 1))
done
echo "leftovers: 0 passed, $n failed"
exit 1
