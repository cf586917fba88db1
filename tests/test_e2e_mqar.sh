#!/usr/bin/env bash
# End to end: 2 ranks train softmax attention on the shipped small MQAR config; the test
# accuracy of the final evaluation must reach 99% within 60 s of training time.
set -euo pipefail
madtrain=$1 config=$2 work=$3
rm -rf "$work"
mpirun --allow-run-as-root --oversubscribe --bind-to none -n 2 "$madtrain" --config "$config" run.dir="$work" | tail -4
summary=$(grep '"event":"summary"' "$work/metrics.jsonl")
acc=$(sed 's/.*"test_acc":\([0-9.e+-]*\).*/\1/' <<< "$summary")
wall=$(sed 's/.*"wall_s":\([0-9.e+-]*\).*/\1/' <<< "$summary")
echo "test accuracy $acc after ${wall}s of training"
awk -v a="$acc" -v w="$wall" 'BEGIN { exit !(a >= 0.99 && w < 60) }' || {
  echo "FAIL: need test accuracy >= 0.99 within 60 s"; exit 1; }
echo "ok"
