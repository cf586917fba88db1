#!/usr/bin/env bash
# The device trainer's host copies, exercised on the CPU: with debug.host_mirrors the CPU run
# keeps parameters and moments apart from their host copies, as on a GPU, and every crossing
# must leave the numbers unchanged: straight runs, stop + resume, warm start, NaN rollback and
# 2 ranks with replica hashes give bitwise what the plain CPU run gives. A missed upload or
# download (training on after a resume from the initial weights, a stale checkpoint) shows here.
set -uo pipefail
madtrain=$1 params_diff=$2 work=$3
rm -rf "$work"; mkdir -p "$work"
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
common=(data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4 model.d_model=32 model.n_heads=2
        train.steps=30 train.batch_size=8 train.eval_every=0 train.log_every=10
        data.test_examples=16 cpu.threads=1 checkpoint.every_steps=10)
fail() { echo "FAIL: $*"; exit 1; }
same() { "$params_diff" "$1" "$2" --bitwise > "$work/diff.txt" || { cat "$work/diff.txt"; fail "$3"; }; echo "ok: $3"; }
run() { "$madtrain" "${common[@]}" "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log"; fail "madtrain $*"; }; }

run run.dir="$work/plain"
run run.dir="$work/mirrored" debug.host_mirrors=true
same "$work/plain/final_state.bin" "$work/mirrored/final_state.bin" "straight run, host copies == plain"
cmp -s <(h5dump -d /params/wte "$work/plain/ckpt-00000010.h5" | tail -n +3) \
       <(h5dump -d /params/wte "$work/mirrored/ckpt-00000010.h5" | tail -n +3) ||
  fail "the step-10 checkpoint written through the host copies differs"
echo "ok: step-10 checkpoint through the host copies == plain"

run run.dir="$work/split" debug.host_mirrors=true debug.stop_at_step=15
run run.dir="$work/split" debug.host_mirrors=true --resume auto
same "$work/plain/final_state.bin" "$work/split/final_state.bin" "stop at 15 + resume, host copies == straight"

run run.dir="$work/warm-plain" checkpoint.init_from="$work/plain/ckpt-00000020.h5"
run run.dir="$work/warm-mirrored" debug.host_mirrors=true checkpoint.init_from="$work/plain/ckpt-00000020.h5"
same "$work/warm-plain/final_state.bin" "$work/warm-mirrored/final_state.bin" "warm start, host copies == plain"

nan=(debug.nan_at_step=15 debug.nan_count=2 train.max_bad_steps=2 train.rollback_on_nan=true)
run run.dir="$work/nan-plain" "${nan[@]}"
run run.dir="$work/nan-mirrored" "${nan[@]}" debug.host_mirrors=true
grep -q "rollback: reloaded" "$work/last.log" || fail "no rollback happened"
same "$work/nan-plain/final_state.bin" "$work/nan-mirrored/final_state.bin" "NaN rollback, host copies == plain"

"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" run.dir="$work/two-plain" train.check_replicas_every=5 > /dev/null || fail "2 ranks"
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" run.dir="$work/two-mirrored" train.check_replicas_every=5 \
  debug.host_mirrors=true > /dev/null || fail "2 ranks, host copies"
same "$work/two-plain/final_state.bin" "$work/two-mirrored/final_state.bin" "2 ranks with replica hashes, host copies == plain"
echo "all host-copy checks passed"
