#!/usr/bin/env bash
# WikiText-2 end to end from HDF5: prepare the shipped sample (train on valid.txt, evaluate on
# test.txt), train launch/configs/wikitext2-sample.yaml on 2 ranks, and require
# - the final evaluation to score every token of the evaluation split but its first, and
# - validation perplexity at most 0.6 x the unigram baseline, which this script computes from
#   the text itself (awk, no madtrain): training-split word frequencies, unknown words counted
#   as <unk>, the same tokens scored.
# Skipped (exit 77) when the sample is absent.
#
# usage: test_wikitext.sh MADTRAIN CONFIG WIKITEXT_DIR WORK_DIR
set -euo pipefail
madtrain=$1 config=$2 data=$3 work=$4
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
if [[ ! -f "$data/valid.txt" || ! -f "$data/test.txt" ]]; then
  echo "SKIP: the WikiText-2 sample ($data/valid.txt, test.txt) is absent"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work"

start=$(date +%s.%N)
"$madtrain" prep wikitext --train "$data/valid.txt" --valid "$data/test.txt" --out "$work/shards"
prep_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')

# Words as WikiText is distributed: whitespace-separated, <eos> closing every line.
read -r unigram scored < <(awk '
  FNR == 1 { file++ }
  file == 1 { for (i = 1; i <= NF; i++) count[$i]++; count["<eos>"]++; total += NF + 1; next }
  {
    for (i = 1; i <= NF + 1; i++) {
      w = i <= NF ? $i : "<eos>"
      if (!(w in count)) w = "<unk>"
      if (n++ > 0) nll -= log(count[w] / total)  # the first token has no context: not scored
    }
  }
  END { printf "%.4f %d\n", exp(nll / (n - 1)), n - 1 }' "$data/valid.txt" "$data/test.txt")
echo "unigram baseline: perplexity $unigram over $scored tokens (prep took ${prep_s}s)"

mpirun --allow-run-as-root --oversubscribe --bind-to none -n 2 "$madtrain" --config "$config" \
  data.path="$work/shards" run.dir="$work/run" | grep -E "^(task|model|step .*/|eval|done)"
eval_line=$(grep '"event":"eval"' "$work/run/metrics.jsonl" | tail -1)
ppl=$(sed 's/.*"ppl":\([0-9.e+-]*\).*/\1/' <<< "$eval_line")
tokens=$(sed 's/.*"tokens":\([0-9]*\).*/\1/' <<< "$eval_line")
eval_step=$(sed 's/.*"step":\([0-9]*\).*/\1/' <<< "$eval_line")
summary=$(grep '"event":"summary"' "$work/run/metrics.jsonl")
wall=$(sed 's/.*"wall_s":\([0-9.e+-]*\).*/\1/' <<< "$summary")
echo "validation perplexity $ppl vs unigram $unigram ($tokens tokens scored, ${wall}s of training, for information)"
# The evaluation is the finished 2-rank run's last step, and its figures are numbers (sed leaves
# the whole line where a field is missing, which awk would compare as a string).
[[ $(wc -l <<< "$summary") -eq 1 && $summary == *'"world":2,"status":"finished"}' && $summary == *"\"step\":$eval_step,"* ]] \
  || { echo "FAIL: expected one finished 2-rank summary at the evaluated step $eval_step: $summary"; exit 1; }
[[ $ppl =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ && $tokens =~ ^[0-9]+$ ]] \
  || { echo "FAIL: no numeric ppl and tokens in the last evaluation: $eval_line"; exit 1; }
if [[ "$tokens" != "$scored" ]]; then
  echo "FAIL: the evaluation scored $tokens tokens, the split has $scored to predict"; exit 1
fi
awk -v p="$ppl" -v u="$unigram" 'BEGIN { exit !(p > 0 && p <= 0.6 * u) }' || {
  echo "FAIL: perplexity $ppl is not at most 0.6 x the unigram baseline $unigram"; exit 1; }
echo "ok"
