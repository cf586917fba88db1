#!/usr/bin/env bash
# Every shipped experiment config (launch/configs/experiments/*/) trains for a few steps
# through launch/run_experiment.sh, and `madtrain report` turns the runs into a table with the
# figures the experiment asks for (per-level accuracy for E005, HSS energy and memory ratio,
# feature-map time, NaN/Inf, best validation accuracy, E007's oscillator state growth). The full runs are benchmarks
# (docs/results.md).
set -uo pipefail
bin="$1" root="$2" work="$3"
rm -rf "$work" && mkdir -p "$work"
fail=0
check() { if ! eval "$1"; then echo "FAIL: $2"; fail=1; fi; }
for exp in e029 e008 e005 e007; do
  MADTRAIN="$bin" bash "$root/launch/run_experiment.sh" "$exp" --seeds "1 2" --out "$work/$exp" \
    -- train.epochs=0 train.steps=6 train.eval_every=3 train.log_every=3 data.valid_examples=64 \
    data.test_examples=64 > "$work/$exp.out" 2>&1
  rc=$?
  check "[[ $rc -eq 0 ]]" "$exp: run_experiment.sh exit $rc ($(tail -3 "$work/$exp.out"))"
  n_cfg=$(ls "$root/launch/configs/experiments/$exp"/*.yaml | wc -l)
  rows=$(grep -c '^| [a-z_0-9]* | 2 |' "$work/$exp/table.md")
  check "[[ $rows -eq $n_cfg ]]" "$exp: $rows table rows, expected $n_cfg (one per config, 2 seeds each)"
  for run in "$work/$exp"/*-s1; do
    check "grep -q '\"split\":\"valid\"' $run/metrics.jsonl" "$run: no validation evaluation"
    check "grep -q '\"split\":\"test\"' $run/metrics.jsonl" "$run: no test evaluation"
    check "grep -q '\"event\":\"aux\"' $run/metrics.jsonl" "$run: no aux figures"
  done
  check "[[ -s $work/$exp/table.csv ]]" "$exp: no CSV table"
done
head -1 "$work/e005/table.md" | grep -q 'test acc L3' || { echo "FAIL: e005 table lacks per-level accuracy"; fail=1; }
head -1 "$work/e005/table.md" | grep -q 'off-diag top-r energy' || { echo "FAIL: e005 table lacks the off-diagonal energy"; fail=1; }
grep -q '^| hss_r8 | 2 |.* | 0\.3438 | ' "$work/e005/table.md" || { echo "FAIL: e005 HSS memory ratio is not (4*16*16 + 2*64 + 4*64)/4096 = 0.3438"; fail=1; }
head -1 "$work/e007/table.md" | grep -q 'max |state|' || { echo "FAIL: e007 table lacks the oscillators' state growth"; fail=1; }
head -1 "$work/e029/table.md" | grep -q 'feature map ms' || { echo "FAIL: e029 table lacks the feature-map time"; fail=1; }
head -1 "$work/e029/table.md" | grep -q 'NaN/Inf' || { echo "FAIL: e029 table lacks NaN/Inf"; fail=1; }
# No NaN is injected here: the count must be exactly 0 in every row of every table that has it.
for exp in e029 e005; do
  nonzero=$(awk -F' *\\| *' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "NaN/Inf") c = i; next }
                              NR > 2 && /^\| / && $c != "0" { print $2 ": " $c } END { if (!c) print "no NaN/Inf column"; else if (NR < 3) print "no rows" }' "$work/$exp/table.md")
  check "[[ -z '$nonzero' ]]" "$exp: NaN/Inf is not 0: $nonzero"
done
if command -v gnuplot > /dev/null; then
  for png in loss accuracy heldout_accuracy; do
    check "[[ -s $work/e005/plots/$png.png ]]" "e005: no $png.png plot"
  done
else
  echo "(gnuplot not installed: plot files not checked)"
fi
check "[[ \$(wc -l < $work/e005/plots/run000.eval.dat) -eq 2 ]]" "e005: the held-out curve does not hold the 2 validation evaluations"
cat "$work/e005/table.md"
# A run still training is left out of the table with a warning, not an error.
cp -r "$work/e005/dense-s1" "$work/e005/dense-s9"
grep -v '"summary"' "$work/e005/dense-s1/metrics.jsonl" > "$work/e005/dense-s9/metrics.jsonl"
"$bin" report "$work/e005" > "$work/partial.md" 2> "$work/partial.err"
check "[[ $? -eq 0 ]] && grep -q 'skipping .*dense-s9: the run has no summary' $work/partial.err && grep -q '^| dense | 2 |' $work/partial.md" \
  "an unfinished run is not skipped with a warning"
rm -rf "$work/e005/dense-s9"
# Rerunning skips finished runs (an interrupted experiment continues): it says so, and their
# metrics are untouched.
before=$(cat "$work/e005"/*-s1/metrics.jsonl | md5sum)
MADTRAIN="$bin" bash "$root/launch/run_experiment.sh" e005 --seeds 1 --out "$work/e005" \
  -- train.epochs=0 train.steps=6 > "$work/rerun.out" 2>&1
check "grep -q 'finished, skipped' $work/rerun.out" "a finished run was not skipped"
check "[[ '$before' == '$(cat "$work/e005"/*-s1/metrics.jsonl | md5sum)' ]]" "a finished run was trained again"
# The long-context MQAR (T 4096, 256 pairs): every mixer trains 2 steps of one sequence at
# the experiment's own T, with every block recomputed, and the report tabulates them.
MADTRAIN="$bin" bash "$root/launch/run_experiment.sh" mqar-4096 --seeds 1 --out "$work/mqar-4096" \
  -- train.epochs=0 train.steps=2 train.batch_size=1 train.eval_every=0 data.train_examples=16 \
  data.valid_examples=2 data.test_examples=2 > "$work/mqar-4096.out" 2>&1
rc=$?
check "[[ $rc -eq 0 ]]" "mqar-4096: run_experiment.sh exit $rc ($(tail -3 "$work/mqar-4096.out"))"
n_cfg=$(ls "$root/launch/configs/experiments/mqar-4096"/*.yaml | wc -l)
rows=$(grep -c '^| [a-z_0-9]* | 1 |' "$work/mqar-4096/table.md")
check "[[ $rows -eq $n_cfg ]]" "mqar-4096: $rows table rows, expected $n_cfg"
check "grep -q 'recompute: \"all\"' $work/mqar-4096/softmax-s1/config.yaml && grep -q 'seq_len: 4096' $work/mqar-4096/softmax-s1/config.yaml" \
  "mqar-4096: the run did not use T 4096 with every block recomputed"
bash "$root/launch/run_experiment.sh" nope > "$work/bad.out" 2>&1
check "[[ $? -eq 2 ]] && grep -q \"no experiment 'nope'\" $work/bad.out" "unknown experiment not refused"
[[ $fail -eq 0 ]] && echo "PASSED" || echo "FAILED"
exit $fail
