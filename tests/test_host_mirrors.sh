#!/usr/bin/env bash
# The device trainer's host copies, exercised on the CPU: with debug.host_mirrors the CPU run
# keeps parameters and moments apart from their host copies, as on a GPU, and every crossing
# must leave the numbers unchanged: straight runs, stop + resume, warm start, NaN rollback and
# 2 ranks with replica hashes give bitwise what the plain CPU run gives. A missed upload or
# download (training on after a resume from the initial weights, a stale checkpoint) shows here.
# Each case also proves its crossing happened (the resume, the warm start, the rollback, the 2
# ranks), or the bitwise comparison could hold without it.
set -uo pipefail
madtrain=$1 params_diff=$2 work=$3
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
rm -rf "$work"; mkdir -p "$work"
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
common=(data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4 model.d_model=32 model.n_heads=2
        train.steps=30 train.batch_size=8 train.eval_every=0 train.log_every=10
        data.test_examples=16 cpu.threads=1 checkpoint.every_steps=10)
fail() { echo "FAIL: $*"; exit 1; }
same() { "$params_diff" "$1" "$2" --bitwise > "$work/diff.txt" || { cat "$work/diff.txt"; fail "$3"; }; echo "ok: $3"; }
# run DIR LOG key=value...: a 1-rank run in $work/DIR, its output in $work/LOG.log
run() {
  local dir=$1 log=$2; shift 2
  "$madtrain" "${common[@]}" run.dir="$work/$dir" "$@" > "$work/$log.log" 2>&1 || { cat "$work/$log.log"; fail "madtrain $dir $*"; }
}
# summary_of NAME FIELD: FIELD of the run's last summary line
summary_of() { grep '"event":"summary"' "$work/$1/metrics.jsonl" | tail -n 1 | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
has_line() { grep -qxF "$2" "$work/$1.log" || { cat "$work/$1.log"; fail "$1: no line '$2'"; }; }

run plain plain
run mirrored mirrored debug.host_mirrors=true
same "$work/plain/final_state.bin" "$work/mirrored/final_state.bin" "straight run, host copies == plain"
# Two failed or empty dumps would compare equal: each must succeed and hold the data.
for r in plain mirrored; do
  h5dump -d /params/wte "$work/$r/ckpt-00000010.h5" > "$work/$r.wte.txt" && grep -q "DATA {" "$work/$r.wte.txt" \
    || fail "h5dump could not read /params/wte of $r's step-10 checkpoint"
done
cmp -s <(tail -n +3 "$work/plain.wte.txt") <(tail -n +3 "$work/mirrored.wte.txt") ||
  fail "the step-10 checkpoint written through the host copies differs"
echo "ok: step-10 checkpoint through the host copies == plain"

run split split-a debug.host_mirrors=true debug.stop_at_step=15
[[ $(cat "$work/split/status") == preempted && $(summary_of split step) == 15 ]] || fail "stop at 15: not preempted at step 15"
run split split-b debug.host_mirrors=true --resume auto
has_line split-b "resume: $work/split/ckpt-00000015.h5 at step 15 (written by 1 rank(s))"
[[ $(summary_of split steps_this_run) == 15 && $(summary_of split status) == finished ]] || fail "resume: did not run the last 15 steps"
same "$work/plain/final_state.bin" "$work/split/final_state.bin" "stop at 15 + resume, host copies == straight"

run warm-plain warm-plain checkpoint.init_from="$work/plain/ckpt-00000020.h5"
run warm-mirrored warm-mirrored debug.host_mirrors=true checkpoint.init_from="$work/plain/ckpt-00000020.h5"
for r in warm-plain warm-mirrored; do has_line $r "init_from: parameters loaded from $work/plain/ckpt-00000020.h5"; done
same "$work/warm-plain/final_state.bin" "$work/warm-mirrored/final_state.bin" "warm start, host copies == plain"

# 2 NaN steps from 15, 2 in a row allowed: steps 15 and 16 skipped, one rollback to step 10.
nan=(debug.nan_at_step=15 debug.nan_count=2 train.max_bad_steps=2 train.rollback_on_nan=true)
run nan-plain nan-plain "${nan[@]}"
run nan-mirrored nan-mirrored "${nan[@]}" debug.host_mirrors=true
for r in nan-plain nan-mirrored; do
  [[ $(grep '^step [0-9]*: non-finite' "$work/$r.log" | paste -sd'|') == "step 15: non-finite gradient, step skipped (1 in a row)|step 16: non-finite gradient, step skipped (2 in a row)" ]] \
    || { cat "$work/$r.log"; fail "$r: expected steps 15 and 16 skipped, nothing else"; }
  [[ $(summary_of $r skipped_steps) == 2 && $(grep -c '"event":"skipped"' "$work/$r/metrics.jsonl") -eq 2 ]] \
    || fail "$r: the summary or the metrics do not count exactly 2 skipped steps"
  [[ $(grep -c '^rollback: ' "$work/$r.log") -eq 1 ]] || { cat "$work/$r.log"; fail "$r: expected exactly one rollback"; }
  has_line $r "rollback: reloaded $work/$r/ckpt-00000010.h5"
done
same "$work/nan-plain/final_state.bin" "$work/nan-mirrored/final_state.bin" "NaN rollback (2 skipped, 1 rollback), host copies == plain"

"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" run.dir="$work/two-plain" train.check_replicas_every=5 > /dev/null || fail "2 ranks"
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" run.dir="$work/two-mirrored" train.check_replicas_every=5 \
  debug.host_mirrors=true > /dev/null || fail "2 ranks, host copies"
for r in two-plain two-mirrored; do [[ $(summary_of $r world) == 2 ]] || fail "$r did not run on 2 ranks"; done
same "$work/two-plain/final_state.bin" "$work/two-mirrored/final_state.bin" "2 ranks with replica hashes, host copies == plain"
echo "all host-copy checks passed"
