#!/usr/bin/env bash
# Training from shards, end to end:
# - `prep synthetic` shards train to bitwise the same parameters (and evaluations) as the
#   in-process task with the same keys;
# - language-modelling shards: 1 rank vs 2 ranks within 1e-5; 2 ranks twice bitwise; stopping
#   mid-run (past an epoch boundary) and resuming from the checkpoint's data position gives the
#   straight run, bitwise on the same world size and within 1e-5 from 2 ranks onto 1.
#
# usage: test_data_train.sh MADTRAIN PARAMS_DIFF WORK_DIR
set -euo pipefail
madtrain=$1 params_diff=$2 work=$3
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
rm -rf "$work" && mkdir -p "$work"
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
common=(model.d_model=32 model.n_heads=2 train.eval_every=10 train.log_every=10 cpu.threads=1)
fail() { echo "FAIL: $*"; exit 1; }
# summary DIR: "step steps_this_run world status" from the run's last summary line
summary() {
  grep '"event":"summary"' "$1/metrics.jsonl" | tail -n 1 | sed -n \
    's/.*"step":\([0-9]*\),"steps_this_run":\([0-9]*\),.*"world":\([0-9]*\),"status":"\([a-z]*\)".*/\1 \2 \3 \4/p'
}
expect_summary() { [[ $(summary "$1") == "$2" ]] || fail "$1: summary '$(summary "$1")', expected '$2' (step, steps this run, world, status)"; }

syn=(data.task=mqar data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4
     data.train_examples=96 data.test_examples=32 seed=5)
"$madtrain" prep synthetic --out "$work/syn" --shard-examples 40 "${syn[@]}" > /dev/null
run=("${common[@]}" "${syn[@]}" train.steps=20 train.batch_size=8)
"$madtrain" "${run[@]}" run.dir="$work/inproc" > /dev/null
"$madtrain" "${run[@]}" data.path="$work/syn" run.dir="$work/sharded" > "$work/sharded.log"
grep -q "^task: mqar (sequence shards, tokenizer none) from $work/syn," "$work/sharded.log" || fail "the sharded run did not read the shards"
echo "in-process vs prep synthetic shards:"
"$params_diff" "$work/inproc/final_state.bin" "$work/sharded/final_state.bin" --bitwise
# The same examples under two names: the task's test set is what prep writes as "valid".
# Two runs without evaluations would diff equal: each must hold its 2 (steps 10 and 20).
strip_split() { grep '"eval"' "$1" | sed 's/"split":"[a-z]*",//'; }
for r in inproc sharded; do
  [[ $(grep -o '"event":"eval",[^}]*"step":[0-9]*' "$work/$r/metrics.jsonl" | grep -o '[0-9]*$' | paste -sd' ') == "10 20" ]] \
    || fail "$r: expected evaluations at steps 10 and 20"
done
if ! diff <(strip_split "$work/inproc/metrics.jsonl") <(strip_split "$work/sharded/metrics.jsonl"); then
  echo "FAIL: evaluations differ"; exit 1
fi

# 12000 bytes of text: 374 windows of 33 bytes, so 30 steps of 16 (480 positions) cross into
# the second epoch, and the stop at step 25 (position 400) lies past the boundary.
awk 'BEGIN { for (i = 0; i < 3000; i++) printf "w%02d%s", (i * 7919) % 97, i % 20 == 19 ? "\n" : " " }' \
  | head -c 12000 > "$work/train.txt"
head -c 3000 "$work/train.txt" | tr 'w' 'v' > "$work/valid.txt"
"$madtrain" prep wikitext --tokenizer byte --in "$work" --out "$work/lm" > /dev/null
lm=("${common[@]}" data.path="$work/lm" data.seq_len=32 train.steps=30 train.batch_size=16)
"$madtrain" "${lm[@]}" run.dir="$work/lm1" > /dev/null
"${mpirun[@]}" -n 2 "$madtrain" "${lm[@]}" run.dir="$work/lm2a" > /dev/null
"${mpirun[@]}" -n 2 "$madtrain" "${lm[@]}" run.dir="$work/lm2b" > /dev/null
expect_summary "$work/lm2a" "30 30 2 finished"; expect_summary "$work/lm2b" "30 30 2 finished"
echo "LM shards, 1 rank vs 2 ranks:";   "$params_diff" "$work/lm1/final_state.bin" "$work/lm2a/final_state.bin" 1e-5
echo "LM shards, 2 ranks, run twice:";  "$params_diff" "$work/lm2a/final_state.bin" "$work/lm2b/final_state.bin" --bitwise
windows=$(grep -o '"tokens":[0-9]*' "$work/lm1/metrics.jsonl" | head -1)
[[ -n "$windows" ]] || { echo "FAIL: no LM eval line"; exit 1; }

# Each stop must have happened at 25 and each resume must start there (a resume that started
# afresh would also equal the straight run).
"$madtrain" "${lm[@]}" run.dir="$work/split1" debug.stop_at_step=25 > /dev/null
expect_summary "$work/split1" "25 25 1 preempted"
"$madtrain" "${lm[@]}" run.dir="$work/split1" --resume auto > "$work/split1.log"
grep -qxF "resume: $work/split1/ckpt-00000025.h5 at step 25 (written by 1 rank(s))" "$work/split1.log" || fail "split1 did not resume from step 25"
expect_summary "$work/split1" "30 5 1 finished"
echo "LM shards, stop at 25 + resume (1 rank):"
"$params_diff" "$work/lm1/final_state.bin" "$work/split1/final_state.bin" --bitwise
"${mpirun[@]}" -n 2 "$madtrain" "${lm[@]}" run.dir="$work/split2" debug.stop_at_step=25 > /dev/null
expect_summary "$work/split2" "25 25 2 preempted"
"$madtrain" "${lm[@]}" run.dir="$work/split2" --resume auto > "$work/split2.log"
grep -qxF "resume: $work/split2/ckpt-00000025.h5 at step 25 (written by 2 rank(s))" "$work/split2.log" || fail "split2 did not resume from step 25 of 2 ranks"
expect_summary "$work/split2" "30 5 1 finished"
echo "LM shards, stop at 25 on 2 ranks + resume on 1 rank:"
"$params_diff" "$work/lm1/final_state.bin" "$work/split2/final_state.bin" 1e-5

# The comparisons must not be vacuous: an untrained model differs from the trained one.
"$madtrain" "${lm[@]}" train.steps=1 optim.lr=0 optim.warmup_steps=0 run.dir="$work/untrained" > /dev/null
if "$params_diff" "$work/untrained/final_state.bin" "$work/lm1/final_state.bin" 1e-3 > /dev/null; then
  echo "FAIL: 30 steps did not change the parameters"; exit 1
fi
echo "all shard training comparisons passed"
