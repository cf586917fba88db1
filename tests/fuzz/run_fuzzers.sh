#!/usr/bin/env bash
# Builds the libFuzzer harnesses (build-fuzz/: clang, ASan + UBSan, CPU only, no MPI) and runs
# each for SECONDS seconds on a scratch copy of its seed corpus (tests/fuzz/corpus/<name>/;
# nothing is written into the repository), one summary line per harness. Exit status non-zero
# on a failed build or on any crash, leak or timeout in madtrain's code; inputs that failed are
# kept in build-fuzz/fuzz-out/<name>/crashes/, the log in build-fuzz/fuzz-out/<name>/log.
#   bash tests/fuzz/run_fuzzers.sh 60                  # CI: about a minute each
#   bash tests/fuzz/run_fuzzers.sh 1800 config shard   # some harnesses, longer
# FUZZ_JOBS=N runs N harnesses at once (default 1). FUZZ_SEED=N fixes libFuzzer's seed (default 1,
# so that a CI failure replays here the same way; FUZZ_SEED=0 lets libFuzzer pick one).
#
# libhdf5 1.10.8 (Debian 12) itself reads corrupted files out of bounds or loops on some: the
# shard and checkpoint harnesses, whose input is a whole HDF5 file, therefore run in libFuzzer's
# fork mode (a crash does not end the run) and every failing input is triaged after: one whose
# first stack frame with a name is inside libhdf5 is reported as a library bug and does not fail
# the run; one in madtrain's code (or with no frame in libhdf5) does.
#
# Needs (Debian 12), beyond the project's own packages (launch/setup.sh): clang,
# libclang-rt-14-dev (libFuzzer and the sanitizer runtimes) and libomp-dev (OpenMP for clang):
#   apt-get install clang libclang-rt-14-dev libomp-dev
# This script installs nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:?usage: run_fuzzers.sh SECONDS [config|manifest|shard|checkpoint|pickle|npz ...]}
shift
names=("$@")
(( ${#names[@]} )) || names=(config manifest shard checkpoint pickle npz)
build=build-fuzz
mkdir -p "$build"
{ cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMADTRAIN_FUZZ=ON -DMADTRAIN_WITH_CUDA=OFF -DMADTRAIN_WITH_MPI=OFF &&
  cmake --build "$build" -j "$(nproc)" --target "${names[@]/#/fuzz_}"; } > "$build/fuzz-build.log" 2>&1 ||
  { tail -40 "$build/fuzz-build.log"; echo "fuzz: the build failed"; exit 1; }

# allocator_may_return_null: a huge malloc returns NULL as it does outside ASan (libhdf5 asks
# for sizes read from a corrupted file and checks for NULL); madtrain's xmalloc then exits,
# which libFuzzer reports.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=print_stacktrace=1
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0

# Runs one saved input again: "none" when it passes now; "libhdf5" when the first stack frame
# outside the sanitizer and libFuzzer runtimes and libc is libhdf5's and the memory involved
# is not madtrain's; else "madtrain".
where_failed() {  # harness input
  local out frame
  # No RSS limit here: a huge allocation is still caught by -malloc_limit_mb, with its stack.
  out=$(timeout 60 "$1" -timeout=10 -rss_limit_mb=0 -malloc_limit_mb=1024 "$2" 2>&1) &&
    { echo none; return; }
  # Kept for the report: the evidence behind a "madtrain" verdict is printed with it.
  printf '%s\n' "$out" > "$2.report"
  # Runtime frames: the sanitizers' and libFuzzer's code linked into the harness (no source
  # line: madtrain's own frames always have one) and libc.
  local runtime='\(/[^ ]*/fuzz_[a-z]+\+0x|libc\.so|sysdeps/|libc-start|libc_start'
  # memcpy given overlapping ranges by libhdf5 (H5HG_read copying a corrupted global-heap
  # object) is libhdf5's whatever memory the ranges reach: madtrain chose neither length.
  frame=$(grep -E '^ +#[0-9]+ 0x' <<< "$out" | grep -vE "$runtime" | head -1)
  if grep -q 'param-overlap' <<< "$out" && grep -q libhdf5 <<< "$frame"; then
    echo libhdf5; return
  fi
  # A bad access to memory madtrain owns (its stack, or a block it allocated) is madtrain's,
  # even when libhdf5 made it (H5Aread writing past the caller's buffer).
  frame=$(sed -n '/is located in stack of\|allocated by thread/,/^$/p' <<< "$out" |
          grep -E '^ +#[0-9]+ 0x' | grep -vE "$runtime" | head -1)
  if [[ -n $frame ]] && ! grep -q libhdf5 <<< "$frame"; then echo madtrain; return; fi
  frame=$(grep -E '^ +#[0-9]+ 0x' <<< "$out" | grep -vE "$runtime" | head -1)
  if grep -q libhdf5 <<< "$frame"; then echo libhdf5; else echo madtrain; fi
}

run_one() {
  local name=$1 out="$build/fuzz-out/$1" bin="$build/tests/fuzz/fuzz_$1"
  rm -rf "$out" && mkdir -p "$out/corpus" "$out/crashes"
  cp tests/fuzz/corpus/"$name"/* "$out/corpus/"
  # -malloc_limit_mb: one allocation a crafted size field makes huge counts as a failure.
  local args=(-max_total_time="$seconds" -seed="${FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024
              -print_final_stats=1 -artifact_prefix="$out/crashes/")
  case $name in
    shard|checkpoint) args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1) ;;
  esac
  local rc=0
  "$bin" "$out/corpus" "${args[@]}" > "$out/log" 2>&1 || rc=$?
  local runs secs lib=0 gone=0 own=()
  runs=$(grep -oE '(number_of_executed_units: *|^#)[0-9]+' "$out/log" | grep -oE '[0-9]+$' | tail -1)
  # The time fuzzed as libFuzzer reports it ("Done N runs in S second(s)"; fork mode: "time: Ss").
  secs=$(grep -oE '(runs in |time: )[0-9]+' "$out/log" | grep -oE '[0-9]+$' | tail -1)
  for f in "$out"/crashes/*; do
    [[ -e $f ]] || continue
    case $(where_failed "$bin" "$f") in
      libhdf5) lib=$((lib + 1)) ;;
      none) gone=$((gone + 1)) ;;
      *) own+=("$f") ;;
    esac
  done
  local line="fuzz_$name: ${runs:-?} runs in ${secs:-?} s, corpus $(ls "$out/corpus" | wc -l) files"
  (( lib )) && line+=", $lib input(s) failing inside libhdf5 (library bugs, not counted)"
  (( gone )) && line+=", $gone failure(s) that did not reproduce alone"
  if (( rc && ! lib && ! gone )) || (( ${#own[@]} )); then
    echo "$line: FAILED (exit $rc; ${#own[@]} input(s) in madtrain's code: ${own[*]:-none saved}; log $out/log)"
    local f
    for f in "${own[@]}"; do  # the sanitizer's report of each, so that CI's log says where
      echo "--- $f"
      grep -m1 -A24 -E 'ERROR|runtime error|ALARM|timeout' "$f.report" 2>/dev/null ||
        tail -24 "$f.report" 2>/dev/null || true
    done
    (( ${#own[@]} )) || grep -m3 -E 'ERROR|runtime error|fuzz_[a-z]*:' "$out/log" || true
    return 1
  fi
  echo "$line: ok"
}

fail=0 pids=()
jobs=${FUZZ_JOBS:-1}
for n in "${names[@]}"; do
  run_one "$n" & pids+=($!)
  if (( ${#pids[@]} >= jobs )); then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
exit $fail
