#!/usr/bin/env bash
# End to end: 2 ranks train softmax attention on the shipped small MQAR config; the run must
# finish on 2 ranks and the test accuracy of its final evaluation must reach 99%. The training
# time is printed for information only: speed belongs to the benchmarks.
set -euo pipefail
madtrain=$1 config=$2 work=$3
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
rm -rf "$work"
mpirun --allow-run-as-root --oversubscribe --bind-to none -n 2 "$madtrain" --config "$config" run.dir="$work" | tail -4
summary=$(grep '"event":"summary"' "$work/metrics.jsonl")
[[ $(wc -l <<< "$summary") -eq 1 ]] || { echo "FAIL: expected one summary line, got: $summary"; exit 1; }
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<< "$summary"; }
acc=$(field test_acc) wall=$(field wall_s) status=$(field status) world=$(field world)
[[ $status == finished && $world == 2 ]] || { echo "FAIL: the run did not finish on 2 ranks (status '$status', world '$world')"; exit 1; }
# A missing or non-numeric accuracy must not pass the comparison below as a string.
[[ $acc =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] || { echo "FAIL: no numeric test_acc in the summary: $summary"; exit 1; }
echo "test accuracy $acc after ${wall}s of training (the time is for information, not checked)"
awk -v a="$acc" 'BEGIN { exit !(a + 0 >= 0.99) }' || { echo "FAIL: need test accuracy >= 0.99, got $acc"; exit 1; }
echo "ok"
