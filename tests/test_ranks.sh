#!/usr/bin/env bash
# 1 rank vs 2 ranks on the same global batch (20 steps): parameters agree within 1e-5
# relative. 2 ranks twice with the same seed: bitwise identical. k micro-steps of gradient
# accumulation equal one step on the k-times larger micro-batch. The gradient all-reduce cut
# into many small buckets (started during backward) gives bitwise the one-bucket result.
set -euo pipefail
madtrain=$1 params_diff=$2 work=${3:-$(mktemp -d)}
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
mkdir -p "$work"
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
common=(data.task=mqar data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4
        model.d_model=32 model.n_heads=2 train.steps=20 train.batch_size=8 train.eval_every=0
        train.log_every=10 data.test_examples=16 cpu.threads=1)

# world DIR: the world size the run's summary reports; batch LOG: its "batch ..." description.
world() { grep '"event":"summary"' "$1/metrics.jsonl" | tail -n 1 | sed -n 's/.*"world":\([0-9]*\).*/\1/p'; }
batch() { grep -o 'batch [0-9]* ([0-9]* per rank x [0-9]* micro-steps)' "$1"; }
# ran DIR WORLD "BATCH": the run happened as the comparison assumes (2 singletons, or an
# ignored grad_accum, would compare equal to the 1-rank run for the wrong reason).
ran() {
  [[ $(world "$1") == "$2" && $(batch "$1.log") == "$3" ]] \
    || { echo "FAIL: $1: world $(world "$1"), '$(batch "$1.log")'; expected world $2, '$3'"; exit 1; }
}

for mixer in softmax linear; do
  "$madtrain" "${common[@]}" model.mixer=$mixer run.dir="$work/$mixer-1rank" > "$work/$mixer-1rank.log"
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=$mixer run.dir="$work/$mixer-2rank-a" > "$work/$mixer-2rank-a.log"
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=$mixer run.dir="$work/$mixer-2rank-b" > "$work/$mixer-2rank-b.log"
  "$madtrain" "${common[@]}" model.mixer=$mixer train.grad_accum=4 run.dir="$work/$mixer-accum4" > "$work/$mixer-accum4.log"
  # ~250-float buckets: dozens of all-reduces per step, each started as backward finishes it
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=$mixer comm.bucket_mb=0.001 run.dir="$work/$mixer-2rank-buckets" > "$work/$mixer-2rank-buckets.log"
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=$mixer comm.bucket_mb=0.001 train.grad_accum=2 run.dir="$work/$mixer-2rank-buckets-accum2" > "$work/$mixer-2rank-buckets-accum2.log"
  grep -E "all-reduce: [0-9]{2,} bucket" "$work/$mixer-2rank-buckets.log" || { echo "FAIL: expected dozens of buckets"; exit 1; }
  grep -E "^all-reduce: 1 bucket\(s\)" "$work/$mixer-2rank-a.log" || { echo "FAIL: expected one bucket by default"; exit 1; }
  ran "$work/$mixer-1rank" 1 "batch 8 (8 per rank x 1 micro-steps)"
  ran "$work/$mixer-2rank-a" 2 "batch 8 (4 per rank x 1 micro-steps)"
  ran "$work/$mixer-2rank-b" 2 "batch 8 (4 per rank x 1 micro-steps)"
  ran "$work/$mixer-accum4" 1 "batch 8 (2 per rank x 4 micro-steps)"
  ran "$work/$mixer-2rank-buckets" 2 "batch 8 (4 per rank x 1 micro-steps)"
  ran "$work/$mixer-2rank-buckets-accum2" 2 "batch 8 (2 per rank x 2 micro-steps)"
  echo "[$mixer] 1 rank vs 2 ranks:";     "$params_diff" "$work/$mixer-1rank/final_state.bin" "$work/$mixer-2rank-a/final_state.bin" 1e-5
  echo "[$mixer] 2 ranks, run twice:";    "$params_diff" "$work/$mixer-2rank-a/final_state.bin" "$work/$mixer-2rank-b/final_state.bin" --bitwise
  echo "[$mixer] accumulation 4 vs 1:";   "$params_diff" "$work/$mixer-1rank/final_state.bin" "$work/$mixer-accum4/final_state.bin" 1e-5
  echo "[$mixer] 2 ranks, small buckets vs one bucket:"; "$params_diff" "$work/$mixer-2rank-a/final_state.bin" "$work/$mixer-2rank-buckets/final_state.bin" --bitwise
  echo "[$mixer] 2 ranks x accumulation 2, small buckets vs 1 rank:"; "$params_diff" "$work/$mixer-1rank/final_state.bin" "$work/$mixer-2rank-buckets-accum2/final_state.bin" 1e-5
done
# Packed rows (data.pack): word problems of 1-20 tokens, several per 48-token row, with an
# epoch boundary inside the run (train_examples 200). 1 rank, 2 ranks and accumulation agree,
# and a run stopped at step 10 and resumed ends bitwise where the straight run ends.
packed=(data.task=word_problem data.group=A4xZ5 data.pack=true data.seq_len=48 data.min_len=1
        data.max_len=20 data.test_min_len=21 data.test_max_len=40 data.train_examples=200
        model.mixer=gated_deltanet,softmax model.pos_embedding=true mixer.conv_kernel=3)
"$madtrain" "${common[@]}" "${packed[@]}" run.dir="$work/packed-1rank" > "$work/packed-1rank.log"
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" "${packed[@]}" train.grad_accum=2 run.dir="$work/packed-2rank" > "$work/packed-2rank.log"
"$madtrain" "${common[@]}" "${packed[@]}" run.dir="$work/packed-split" debug.stop_at_step=10 > /dev/null
"$madtrain" "${common[@]}" "${packed[@]}" run.dir="$work/packed-split" --resume auto > "$work/packed-split.log"
grep -q "^resume: .*ckpt-00000010.h5 at step 10" "$work/packed-split.log" || { echo "FAIL: the packed run did not resume at step 10"; exit 1; }
ran "$work/packed-1rank" 1 "batch 8 (8 per rank x 1 micro-steps)"
ran "$work/packed-2rank" 2 "batch 8 (2 per rank x 2 micro-steps)"
echo "[packed] 1 rank vs 2 ranks x accumulation 2:"; "$params_diff" "$work/packed-1rank/final_state.bin" "$work/packed-2rank/final_state.bin" 1e-5
echo "[packed] stop at 10 + resume vs straight:"; "$params_diff" "$work/packed-1rank/final_state.bin" "$work/packed-split/final_state.bin" --bitwise
# Activation checkpointing (model.recompute) is memory, not math: every block recomputed
# trains bitwise as the stored form, and a run may resume with it switched on.
"$madtrain" "${common[@]}" "${packed[@]}" model.recompute=all run.dir="$work/packed-recompute" > "$work/packed-recompute.log"
"$madtrain" "${common[@]}" "${packed[@]}" run.dir="$work/packed-split-rc" debug.stop_at_step=10 > /dev/null
"$madtrain" "${common[@]}" "${packed[@]}" model.recompute=0 run.dir="$work/packed-split-rc" --resume auto > "$work/packed-split-rc.log"
grep -q "^resume: .*ckpt-00000010.h5 at step 10" "$work/packed-split-rc.log" || { echo "FAIL: the run did not resume at step 10 with model.recompute changed"; exit 1; }
echo "[packed] model.recompute=all vs stored:"; "$params_diff" "$work/packed-1rank/final_state.bin" "$work/packed-recompute/final_state.bin" --bitwise
echo "[packed] stop at 10 + resume with block 0 recomputed vs straight:"; "$params_diff" "$work/packed-1rank/final_state.bin" "$work/packed-split-rc/final_state.bin" --bitwise

# ZeRO-1 (optim.zero): moments sharded, gradients reduced to their slice's owner, parameters
# all-gathered: bitwise the unsharded run on 2 and 4 ranks (the gradient norm is summed in
# fixed blocks, so it does not depend on the slicing), through host mirrors too; a sharded
# run stopped at step 10 resumes sharded (bitwise) or onto 1 rank without ZeRO (its
# checkpoint holds the whole state).
for n in 2 4; do
  "${mpirun[@]}" -n $n "$madtrain" "${common[@]}" model.mixer=linear run.dir="$work/plain-$n" > /dev/null
  "${mpirun[@]}" -n $n "$madtrain" "${common[@]}" model.mixer=linear optim.zero=1 run.dir="$work/zero-$n" > "$work/zero-$n.log"
  grep -q "^optim.zero: AdamW moments in $n slices" "$work/zero-$n.log" || { echo "FAIL: the $n-rank run did not shard"; exit 1; }
  echo "[zero] $n ranks, ZeRO-1 vs all-reduce:"; "$params_diff" "$work/plain-$n/final_state.bin" "$work/zero-$n/final_state.bin" --bitwise
done
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=linear optim.zero=1 debug.host_mirrors=true run.dir="$work/zero-mirrors" > /dev/null
echo "[zero] 2 ranks through host mirrors:"; "$params_diff" "$work/plain-2/final_state.bin" "$work/zero-mirrors/final_state.bin" --bitwise
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=linear optim.zero=1 debug.stop_at_step=10 run.dir="$work/zero-split" > /dev/null
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=linear optim.zero=1 run.dir="$work/zero-split" --resume auto > /dev/null
echo "[zero] 2 ranks, stop at 10 + resume vs straight:"; "$params_diff" "$work/plain-2/final_state.bin" "$work/zero-split/final_state.bin" --bitwise
"$madtrain" "${common[@]}" model.mixer=linear run.dir="$work/plain-1" > /dev/null
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=linear optim.zero=1 debug.stop_at_step=10 run.dir="$work/zero-to-1" > /dev/null
"$madtrain" "${common[@]}" model.mixer=linear run.dir="$work/zero-to-1" --resume auto > "$work/zero-to-1.log"
grep -q "^resume: .*ckpt-00000010.h5 at step 10 (written by 2 rank" "$work/zero-to-1.log" || { echo "FAIL: the sharded checkpoint did not resume on 1 rank"; exit 1; }
echo "[zero] 2 sharded ranks to step 10, then 1 rank, vs 1 rank straight:"; "$params_diff" "$work/plain-1/final_state.bin" "$work/zero-to-1/final_state.bin" 1e-5

# The training must have moved the parameters, or the comparisons above prove nothing.
"$madtrain" "${common[@]}" train.steps=1 optim.lr=0 optim.warmup_steps=0 run.dir="$work/untrained" > /dev/null
if "$params_diff" "$work/untrained/final_state.bin" "$work/softmax-1rank/final_state.bin" 1e-3 > /dev/null; then
  echo "FAIL: 20 steps did not change the parameters"; exit 1
fi
echo "all rank and accumulation comparisons passed"
