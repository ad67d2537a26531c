#!/bin/sh
# Run every suite, then print one line "N passed, N failed" summed from the
# suites' own reports. Exits non-zero if anything failed or did not report.
# What failed is listed again just above that line, so that the tail of a
# long run (all a CI log may keep) names it.
cd "$(dirname "$0")/.."
LOG=build/test-logs
mkdir -p "$LOG"
passed=0; failed=0; status=0
# every process a suite starts inherits this mark: what still runs at the
# end is a test that did not stop what it started (scripts/leftovers.sh)
LUA_WS_TEST_RUN=$$-$(date +%s); export LUA_WS_TEST_RUN
: >"$LOG/failures"

# suite NAME COMMAND...: run it, add its "N passed, N failed" lines (C tests)
# or busted's "N successes / N failures / N errors" line to the totals.
suite() {
  name=$1; shift
  echo "=== $name"
  "$@" >"$LOG/$name.log" 2>&1
  rc=$?
  cat "$LOG/$name.log"
  counts=$(sed -n \
    -e 's/^.*: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed.*$/\1 \2/p' \
    -e 's/^\([0-9][0-9]*\) success\(es\)\{0,1\} \/ \([0-9][0-9]*\) failures* \/ \([0-9][0-9]*\) errors*.*$/\1 \3 \4/p' \
    "$LOG/$name.log" | awk '{p+=$1; f+=$2+$3} END {print p+0, f+0, NR}')
  # busted's "Failure/Error -> file @ line", the test's name and its message
  # (up to its blank line, at most 12 lines: a probe's output is the message);
  # a C CHECK; a fuzz crash; a luacheck warning
  awk -v s="$name" '/^(Failure|Error) -> /{n=12} n>0 && /^$/{n=0} n>0{print s ": " $0; n--; next}
    /CHECK failed|ERROR: (libFuzzer|AddressSanitizer)/ ||
    (s == "luacheck" && /:[0-9]+:[0-9]+:/) {print s ": " $0}' \
    "$LOG/$name.log" >>"$LOG/failures"
  set -- $counts
  passed=$((passed + $1)); failed=$((failed + $2))
  if [ "$3" -eq 0 ] || [ $rc -ne 0 ]; then
    # a suite that crashed or reported nothing counts as a failure
    [ "$2" -eq 0 ] && failed=$((failed + 1))
    echo "--- $name exited $rc"
    echo "$name: exited $rc" >>"$LOG/failures"
    status=1
  fi
}

# luacheck: one failure per warning or error, zero when clean
lint() {
  out=$(luacheck -q --formatter=plain . 2>&1); rc=$?
  [ -n "$out" ] && echo "$out"
  n=$(printf '%s' "$out" | grep -c ':[0-9]*:[0-9]*:')
  [ $rc -eq 0 ] && echo "luacheck: 1 passed, 0 failed" || echo "luacheck: 0 passed, $((n > 0 ? n : 1)) failed"
  return $rc
}
suite luacheck lint
suite c-gcc-clang make -s ctest
suite c-asan make -s ctest-asan
suite c-valgrind make -s ctest-valgrind
suite fuzz make -s fuzz-short
# the whole busted suite on every Lua, then once more under ASan/UBSan
for lua in lua5.4 lua5.3 lua5.1 luajit; do
  suite "$lua" sh scripts/test-lua.sh $lua
done
suite busted-asan make -s test-asan
suite leftovers sh scripts/leftovers.sh

[ "$failed" -gt 0 ] && status=1
if [ -s "$LOG/failures" ]; then
  echo "=== what failed (every suite's whole output is above, and in $LOG/)"
  cut -c1-300 "$LOG/failures"
fi
echo "$passed passed, $failed failed"
exit $status
