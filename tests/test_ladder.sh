#!/usr/bin/env bash
# madtrain ladder end to end at toy scale on the WikiText-2 sample (byte-level shards, so no
# tokenizer library is needed): 3 rungs, gla (the candidate) against softmax, 1 token per
# parameter.
# - the listing: 6 runs, width x sqrt(2) and one more block per rung, and within a rung the
#   two mixers' training FLOPs equal to within one step;
# - a run stopped early (its own --task) resumes from its checkpoint when the ladder runs;
# - every run finishes; `report --ladder` tabulates them, fits a power law per mixer (the
#   candidate's loss falls with compute: b < 0) and says where the candidate meets softmax;
# - the same command again skips every run and changes nothing;
# - --slurm --dry-run asks for a 6-task array through launch/madtrain.sbatch;
# - bad input (over the budget, a per-layer mixer list, an unknown baseline): one line, exit 2.
# Skipped (exit 77) when the sample is absent.
#
# usage: test_ladder.sh MADTRAIN WIKITEXT_DIR WORK_DIR
set -uo pipefail
madtrain=$1 data=$2 work=$3
if [[ ! -f "$data/valid.txt" || ! -f "$data/test.txt" ]]; then
  echo "SKIP: the WikiText-2 sample ($data/valid.txt, test.txt) is absent"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work"
fail=0
check() { if ! eval "$1"; then echo "FAIL: $2"; fail=1; fi; }
"$madtrain" prep wikitext --train "$data/valid.txt" --valid "$data/test.txt" --tokenizer byte \
  --out "$work/bytes" > "$work/prep.log" 2>&1 || { cat "$work/prep.log"; exit 1; }
cat > "$work/candidate.yaml" <<YAML
model: {mixer: gla, d_model: 32, n_layers: 1, n_heads: 2, mlp: swiglu}
mixer: {gate_rank: 8}
data: {path: $work/bytes, seq_len: 64}
train: {batch_size: 16, log_every: 100, eval_every: 0, eval_examples: 64}
optim: {lr: 3e-3, warmup_steps: 10}
cpu: {threads: 1}
YAML
lad=("$madtrain" ladder --config "$work/candidate.yaml" --baselines softmax --rungs 3
     --tokens-per-param 1 --out "$work/lad")

"${lad[@]}" --list > "$work/list.log" 2>&1
check "[[ \$(tail -n +2 $work/lad/ladder.tsv | wc -l) -eq 6 ]]" "the listing does not hold 6 runs"
check "[[ \"\$(cut -f3,4,5 $work/lad/ladder.tsv | tail -n +2 | tr '\t\n' ' ')\" == 'gla 32 1 softmax 32 1 gla 48 2 softmax 48 2 gla 64 3 softmax 64 3 ' ]]" \
  "the rungs do not grow as documented: $(cut -f3,4,5 "$work/lad/ladder.tsv" | tr '\n' ';')"
# one step of 16 x 64 tokens at the larger FLOPs per token, at most, between a rung's runs
check "awk -F'\t' 'NR > 1 { f[\$2] = f[\$2] \" \" \$9; s[\$2] = \$7 > s[\$2] ? \$7 : s[\$2] }
  END { for (r in f) { split(f[r], a, \" \"); d = a[1] - a[2]; if (d < 0) d = -d; if (d > 1024 * s[r] * 1.0001) exit 1 } }' $work/lad/ladder.tsv" \
  "a rung's mixers do not get the same training FLOPs"
default_rank=$("$madtrain" --print-config | sed -n 's/^ *gate_rank: //p')
check "grep -q 'gate_rank: 8' $work/lad/r0-gla.yaml && grep -q 'gate_rank: $default_rank' $work/lad/r0-softmax.yaml" \
  "the softmax baseline inherited the candidate's gla option"

# run 1 (rung 0, softmax) stopped at step 5, then the whole ladder: it resumes there
"${lad[@]}" --task 1 debug.stop_at_step=5 > "$work/task1.log" 2>&1
check "grep -q preempted $work/lad/r0-softmax/status" "the stopped run is not marked preempted"
"${lad[@]}" > "$work/ladder.log" 2>&1
rc=$?
check "[[ $rc -eq 0 ]]" "the ladder exited $rc: $(tail -3 "$work/ladder.log")"
check "grep -q '^resume: .*r0-softmax/ckpt-00000005.h5 at step 5' $work/ladder.log" "the stopped run did not resume at step 5"
check "[[ \$(cat $work/lad/r*/status | grep -c finished) -eq 6 ]]" "not every run finished"

"$madtrain" report --ladder "$work/lad" > "$work/report.md" 2> "$work/report.err"
check "[[ $? -eq 0 ]]" "report --ladder failed: $(cat "$work/report.err")"
cat "$work/report.md"
check "[[ \$(grep -c '^| [0-2] | \(gla\|softmax\) | ' $work/report.md) -eq 6 ]]" "the report does not list the 6 runs"
check "grep -q '^| gla | [0-9.e+-]* | -[0-9.]* | 3 |' $work/report.md" \
  "the candidate's fitted exponent is not negative over 3 rungs"
check "grep -q '^- softmax: ' $work/report.md" "the report does not say where the candidate meets softmax"
check "[[ -s $work/lad/ladder.csv ]]" "no ladder.csv"
if command -v gnuplot > /dev/null; then check "[[ -s $work/lad/ladder.png ]]" "no ladder.png"; fi

before=$(cat "$work"/lad/r*/metrics.jsonl | md5sum)
"${lad[@]}" > "$work/again.log" 2>&1
check "[[ \$(grep -c 'finished, skipped' $work/again.log) -eq 6 && '$before' == '$(cat "$work"/lad/r*/metrics.jsonl | md5sum)' ]]" \
  "running the ladder again did not skip its 6 finished runs"

"${lad[@]}" --slurm --dry-run > "$work/slurm.log" 2>&1
check "grep -q '^sbatch --array=0-5 .*launch/madtrain.sbatch ladder .*--rungs' $work/slurm.log" "--slurm --dry-run: $(tail -1 "$work/slurm.log")"

expect_usage() {  # WHAT PATTERN ARGS...
  local what=$1 pattern=$2; shift 2
  "$@" > "$work/bad.log" 2>&1
  local rc=$?
  check "[[ $rc -eq 2 && \$(wc -l < $work/bad.log) -eq 1 ]] && grep -q \"$pattern\" $work/bad.log" \
    "$what: exit $rc, '$(cat "$work/bad.log")'"
}
expect_usage "over budget" "^madtrain: error: ladder: the 6 runs need .* above --budget 1e+09" "${lad[@]}" --budget 1e9 --list
expect_usage "per-layer list" "^madtrain: error: ladder: model.mixer must name one mixer" "${lad[@]}" model.mixer=gla,softmax --list
expect_usage "unknown baseline" "^madtrain: error: ladder: --baselines: 'nope' is not a mixer" "${lad[@]}" --baselines nope --list
[[ $fail -eq 0 ]] && echo "PASSED" || echo "FAILED"
exit $fail
