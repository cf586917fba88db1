#!/usr/bin/env bash
# 1 rank vs 2 ranks on the same global batch (20 steps): parameters agree within 1e-5
# relative. 2 ranks twice with the same seed: bitwise identical. k micro-steps of gradient
# accumulation equal one step on the k-times larger micro-batch. The gradient all-reduce cut
# into many small buckets (started during backward) gives bitwise the one-bucket result.
set -euo pipefail
madtrain=$1 params_diff=$2 work=${3:-$(mktemp -d)}
mkdir -p "$work"
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
common=(data.task=mqar data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4
        model.d_model=32 model.n_heads=2 train.steps=20 train.batch_size=8 train.eval_every=0
        train.log_every=10 data.test_examples=16 cpu.threads=1)

for mixer in softmax linear; do
  "$madtrain" "${common[@]}" model.mixer=$mixer run.dir="$work/$mixer-1rank" > /dev/null
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=$mixer run.dir="$work/$mixer-2rank-a" > /dev/null
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=$mixer run.dir="$work/$mixer-2rank-b" > /dev/null
  "$madtrain" "${common[@]}" model.mixer=$mixer train.grad_accum=4 run.dir="$work/$mixer-accum4" > /dev/null
  # ~250-float buckets: dozens of all-reduces per step, each started as backward finishes it
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=$mixer comm.bucket_mb=0.001 run.dir="$work/$mixer-2rank-buckets" > "$work/$mixer-buckets.log"
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=$mixer comm.bucket_mb=0.001 train.grad_accum=2 run.dir="$work/$mixer-2rank-buckets-accum2" > /dev/null
  grep -E "all-reduce: [0-9]{2,} bucket" "$work/$mixer-buckets.log" || { echo "FAIL: expected dozens of buckets"; exit 1; }
  echo "[$mixer] 1 rank vs 2 ranks:";     "$params_diff" "$work/$mixer-1rank/final_state.bin" "$work/$mixer-2rank-a/final_state.bin" 1e-5
  echo "[$mixer] 2 ranks, run twice:";    "$params_diff" "$work/$mixer-2rank-a/final_state.bin" "$work/$mixer-2rank-b/final_state.bin" --bitwise
  echo "[$mixer] accumulation 4 vs 1:";   "$params_diff" "$work/$mixer-1rank/final_state.bin" "$work/$mixer-accum4/final_state.bin" 1e-5
  echo "[$mixer] 2 ranks, small buckets vs one bucket:"; "$params_diff" "$work/$mixer-2rank-a/final_state.bin" "$work/$mixer-2rank-buckets/final_state.bin" --bitwise
  echo "[$mixer] 2 ranks x accumulation 2, small buckets vs 1 rank:"; "$params_diff" "$work/$mixer-1rank/final_state.bin" "$work/$mixer-2rank-buckets-accum2/final_state.bin" 1e-5
done
# The training must have moved the parameters, or the comparisons above prove nothing.
"$madtrain" "${common[@]}" train.steps=1 optim.lr=0 optim.warmup_steps=0 run.dir="$work/untrained" > /dev/null
if "$params_diff" "$work/untrained/final_state.bin" "$work/softmax-1rank/final_state.bin" 1e-3 > /dev/null; then
  echo "FAIL: 20 steps did not change the parameters"; exit 1
fi
echo "all rank and accumulation comparisons passed"
