#!/bin/sh
# Fuzz the C codec with libFuzzer under ASan and UBSan.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Targets: reader, reader_big (the reader on big generated messages), utf8,
# request, response, deflate, proxy (PROXY protocol headers); all of them by default.
#
# For each target: build fuzz/fuzz_TARGET.c with the codec sources into
# build/fuzz/fuzz_TARGET, replay every saved crash in fuzz/regressions/TARGET/
# (they must all pass now), then fuzz for SECONDS on a copy of
# fuzz/corpus/TARGET/ (0: replay only). A crash, leak, timeout or OOM input is
# saved to fuzz/regressions/TARGET/ and fails the run. libFuzzer's output is
# left in build/fuzz/fuzz-TARGET.log. Each run works in a directory of its
# own, so two runs in one tree do not trip over each other.
#
# Environment:
#   FUZZ_JOBS=2        targets fuzzed at once (at most 2: the machine has 2 cores)
#   FUZZ_NICE=19       niceness of the fuzzing processes
#   FUZZ_MERGE=0       1: merge inputs with new coverage back into fuzz/corpus/TARGET,
#                      smallest first, while it holds at most FUZZ_CORPUS_MAX files
#   FUZZ_CORPUS_MAX=40
#   CC=clang
#
# Prints one line per target (runs, seconds, crashes) and a closing
# "fuzz: N passed, N failed" counting targets; exits non-zero if any failed.
cd "$(dirname "$0")/.." || exit 2

SECONDS_PER_TARGET=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
TARGETS=${*:-reader reader_big utf8 request response deflate proxy}
JOBS=${FUZZ_JOBS:-2}
[ "$JOBS" -gt 2 ] && JOBS=2
[ "$JOBS" -lt 1 ] && JOBS=1
NICE=${FUZZ_NICE:-19}
MERGE=${FUZZ_MERGE:-0}
CORPUS_MAX=${FUZZ_CORPUS_MAX:-40}
CC=${CC:-clang}
case "$CC" in *clang*) ;; *) CC=clang ;; esac

OUT=build/fuzz
RUN=$OUT/run.$$
trap 'rm -rf "$RUN"' EXIT
trap 'exit 130' INT TERM
CFLAGS="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1 -Icsrc"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$RUN/results"

sources() {
  case $1 in
    reader|reader_big) echo "csrc/ws_reader.c csrc/ws_frame.c csrc/ws_utf8.c" ;;
    utf8)     echo "csrc/ws_utf8.c" ;;
    request|response) echo "csrc/ws_crypto.c csrc/ws_handshake.c -lcrypto" ;;
    deflate)  echo "csrc/ws_deflate.c -lz" ;;
    proxy)    echo "csrc/ws_proxy.c" ;;
    *) return 1 ;;
  esac
}

build() {
  t=$1
  src=$(sources "$t") || { echo "fuzz: unknown target $t" >&2; return 1; }
  # shellcheck disable=SC2086
  $CC $CFLAGS "fuzz/fuzz_$t.c" $src -o "$RUN/fuzz_$t" 2>"$RUN/build-$t.log" \
    || { cat "$RUN/build-$t.log" >&2; return 1; }
}

# stat from libFuzzer's -print_final_stats output (also printed on a crash)
final_stat() {
  sed -n "s/^stat::$1: *\([0-9][0-9]*\).*/\1/p" "$2" | tail -n 1
}

# merge_back T WORK: add inputs with new coverage to fuzz/corpus/T, sparingly
merge_back() {
  t=$1; work=$2
  dst=fuzz/corpus/$t
  tmp=$RUN/merge-$t
  rm -rf "$tmp"; mkdir -p "$tmp" "$dst"
  cp "$dst"/* "$tmp"/ 2>/dev/null
  "$RUN/fuzz_$t" -merge=1 "$tmp" "$work" >"$RUN/merge-$t.log" 2>&1 || return 0
  have=$(ls "$dst" | wc -l)
  added=0
  # the new files, smallest first, while the corpus stays small
  for f in $(ls -S -r "$tmp"); do
    [ "$have" -ge "$CORPUS_MAX" ] && break
    [ -e "$dst/$f" ] && continue
    cp "$tmp/$f" "$dst/$f"
    have=$((have + 1)); added=$((added + 1))
  done
  rm -rf "$tmp"
  echo "merged $added new inputs into $dst ($have files)" >>"$RUN/results/$t.note"
}

# run_one T: replay regressions, fuzz, save crashes; writes results/T
run_one() {
  t=$1
  bin=$RUN/fuzz_$t
  res=$RUN/results/$t
  log=$RUN/fuzz-$t.log
  reg=fuzz/regressions/$t
  art=$RUN/artifacts/$t
  work=$RUN/work/$t
  status=pass; runs=0; crashes=0; secs=0
  : >"$res.note"

  # 1. every saved crash must pass now
  if [ -d "$reg" ] && [ -n "$(ls "$reg" 2>/dev/null)" ]; then
    if ! "$bin" "$reg"/* >"$RUN/replay-$t.log" 2>&1; then
      status=fail
      echo "regression replay failed:" >>"$res.note"
      tail -n 30 "$RUN/replay-$t.log" >>"$res.note"
    fi
    echo "replayed $(ls "$reg" | wc -l) saved inputs from $reg" >>"$res.note"
  fi

  # 2. fuzz on a copy of the corpus
  if [ "$SECONDS_PER_TARGET" -gt 0 ]; then
    mkdir -p "$work" "$art"
    cp fuzz/corpus/"$t"/* "$work"/ 2>/dev/null
    dict=""
    [ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
    start=$(date +%s)
    # shellcheck disable=SC2086
    nice -n "$NICE" "$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
      -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 $dict \
      -artifact_prefix="$art/" "$work" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    runs=$(final_stat number_of_executed_units "$log")
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9][0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    [ -n "$runs" ] || runs=0
    for f in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*; do
      [ -e "$f" ] || continue
      mkdir -p "$reg"
      cp "$f" "$reg/"
      crashes=$((crashes + 1))
      echo "saved $reg/$(basename "$f")" >>"$res.note"
    done
    if [ $rc -ne 0 ] || [ $crashes -gt 0 ]; then
      status=fail
      echo "libFuzzer exited $rc; the report (from $OUT/fuzz-$t.log):" >>"$res.note"
      grep -n -m 1 -E "ERROR|WARNING|runtime error|deadly signal|Timeout|out-of-memory" "$log" >>"$res.note"
      tail -n 40 "$log" >>"$res.note"
    elif [ "$MERGE" = 1 ]; then
      merge_back "$t" "$work"
    fi
  fi
  echo "$status $runs $secs $crashes" >"$res"
}

# Build everything first: a target that does not build fails the run.
built=""
failed_build=""
for t in $TARGETS; do
  if build "$t"; then built="$built $t"; else failed_build="$failed_build $t"; fi
done

# Run, JOBS at a time.
n=0
for t in $built; do
  run_one "$t" &
  n=$((n + 1))
  if [ "$n" -ge "$JOBS" ]; then wait; n=0; fi
done
wait

passed=0; failed=0; total_runs=0
for t in $failed_build; do
  echo "fuzz_$t: FAILED to build"
  failed=$((failed + 1))
done
for t in $built; do
  set -- $(cat "$RUN/results/$t" 2>/dev/null || echo "fail 0 0 1")
  status=$1; runs=$2; secs=$3; crashes=$4
  total_runs=$((total_runs + runs))
  if [ "$status" = pass ]; then
    echo "fuzz_$t: ok, $runs runs in $secs s, $crashes crashes"
    passed=$((passed + 1))
  else
    echo "fuzz_$t: FAILED, $runs runs in $secs s, $crashes crashes"
    failed=$((failed + 1))
  fi
  [ -s "$RUN/results/$t.note" ] && sed 's/^/  /' "$RUN/results/$t.note"
  # the binary and the log stay in build/fuzz/ for a look by hand
  mv -f "$RUN/fuzz_$t" "$OUT/fuzz_$t"
  [ -f "$RUN/fuzz-$t.log" ] && mv -f "$RUN/fuzz-$t.log" "$OUT/fuzz-$t.log"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
