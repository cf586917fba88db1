#!/usr/bin/env bash
# FAVOR+ projection redraws (mixer.redraw_interval): the projection buffer changes at each
# redraw, and a run stopped and resumed between redraws ends bitwise identical to a straight one.
set -uo pipefail
madtrain=$1 params_diff=$2 work=$3
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
rm -rf "$work" && mkdir -p "$work"
fail=0
args=(data.task=ar data.seq_len=32 data.num_kv_pairs=4 data.ar_symbols=8 model.mixer=favor
      model.d_model=32 model.n_heads=2 model.n_layers=1 model.mlp=none train.batch_size=8
      train.steps=12 train.eval_every=0 data.test_examples=16 seed=3 cpu.threads=1)
"$madtrain" "${args[@]}" mixer.redraw_interval=0 run.dir="$work/fixed" > "$work/fixed.log" 2>&1 || fail=1
"$madtrain" "${args[@]}" mixer.redraw_interval=5 run.dir="$work/straight" > "$work/straight.log" 2>&1 || fail=1
"$madtrain" "${args[@]}" mixer.redraw_interval=5 run.dir="$work/resumed" debug.stop_at_step=7 \
  > "$work/first.log" 2>&1 || fail=1
"$madtrain" "${args[@]}" mixer.redraw_interval=5 run.dir="$work/resumed" checkpoint.resume=auto \
  > "$work/second.log" 2>&1 || fail=1
[[ $fail -eq 0 ]] || { echo "FAIL: a run failed"; tail -3 "$work"/*.log; exit 1; }
# The stop and the resume happened (a resume that started afresh would also equal the straight
# run): preempted at step 7, then resumed from step 7's checkpoint for the last 5 steps.
summary() { grep '"event":"summary"' "$work/resumed/metrics.jsonl" | sed -n "$1s/.*\"step\":\([0-9]*\),\"steps_this_run\":\([0-9]*\),.*\"status\":\"\([a-z]*\)\".*/\1 \2 \3/p"; }
[[ $(summary 1) == "7 7 preempted" && $(summary 2) == "12 5 finished" ]] \
  || { echo "FAIL: expected a stop at step 7 and 5 resumed steps; summaries: $(summary 1) / $(summary 2)"; exit 1; }
grep -qxF "resume: $work/resumed/ckpt-00000007.h5 at step 7 (written by 1 rank(s))" "$work/second.log" \
  || { echo "FAIL: the second run did not resume from step 7"; cat "$work/second.log"; exit 1; }
# The redrawn run must differ from the fixed one (the projection and everything after it).
if "$params_diff" "$work/fixed/final_state.bin" "$work/straight/final_state.bin" --bitwise > /dev/null; then
  echo "FAIL: redraw_interval=5 trained exactly like a fixed projection: no redraw happened"; fail=1
else
  echo "ok   the projection was redrawn"
fi
if "$params_diff" "$work/straight/final_state.bin" "$work/resumed/final_state.bin" --bitwise; then
  echo "ok   stop at step 7 + resume (redraw at 10) = straight run, bitwise"
else
  echo "FAIL: resume across a redraw is not exact"; fail=1
fi
[[ $fail -eq 0 ]] && echo PASSED || echo FAILED
exit $fail
