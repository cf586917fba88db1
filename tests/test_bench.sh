#!/usr/bin/env bash
# `madtrain bench` on the cpu: one timed step of softmax and linear attention at the E008 shape
# gives a table row each with positive tokens/s and MFU, and the JSON lines agree with it; bad
# options stop with one line and exit 2.
set -euo pipefail
madtrain=$1 work=$2
rm -rf "$work"; mkdir -p "$work"
"$madtrain" bench --shapes e008 --mixers softmax,linear --steps 2 --warmup 1 device=cpu \
  --out "$work/bench.jsonl" | tee "$work/bench.txt"
grep -q "measured GEMM peak" "$work/bench.txt"
python3 - "$work/bench.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["mixer"] for r in rows] == ["softmax", "linear"], rows
for r in rows:
    assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and r["flops_per_token"] > 0, r
    assert r["peak_memory_bytes"] > 0 and r["T"] == 128 and r["batch"] == 64, r
print("ok: 2 rows, tokens/s, MFU in (0, 1), FLOPs and memory present")
PY
for bad in "--shapes nosuch" "--mixers nosuch" "--steps 0" "--batch 8x" "--bogus" "model.nosuch=1"; do
  if "$madtrain" bench $bad > "$work/out" 2> "$work/err"; then echo "FAIL: '$bad' accepted"; exit 1; fi
  [[ $(wc -l < "$work/err") == 1 ]] || { echo "FAIL: '$bad' gave more than one line"; cat "$work/err"; exit 1; }
  echo "ok: '$bad' -> $(cat "$work/err")"
done
