#!/usr/bin/env bash
# `madtrain bench` on the cpu: one timed step of softmax and linear attention at the E008 shape
# gives a table row each with positive tokens/s and MFU, and the JSON lines agree with it; bad
# options stop with one line and exit 2.
set -euo pipefail
madtrain=$1 work=$2
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
rm -rf "$work"; mkdir -p "$work"
"$madtrain" bench --shapes e008 --mixers softmax,linear --steps 2 --warmup 1 device=cpu \
  --out "$work/bench.jsonl" | tee "$work/bench.txt"
grep -q "measured GEMM peak" "$work/bench.txt"
# OpenBLAS's kernels (src/util.c): on a CPU with AVX2 madtrain must not run the SSE3 fallback
# that OpenBLAS 0.3.21 picks for CPUs it does not know; a user's OPENBLAS_CORETYPE is kept.
kernels=$("$MADTRAIN_BIN" --version | sed -n 's/.*(OpenBLAS kernels \(.*\))$/\1/p')
[[ -n $kernels ]] || { echo "FAIL: madtrain --version names no OpenBLAS kernels"; exit 1; }
if grep -qw avx2 /proc/cpuinfo && [[ $kernels == Prescott ]]; then
  echo "FAIL: the CPU has AVX2 but OpenBLAS runs its Prescott (SSE3) kernels"; exit 1
fi
[[ $(OPENBLAS_CORETYPE=Prescott "$MADTRAIN_BIN" --version) == *"kernels Prescott)" ]] \
  || { echo "FAIL: OPENBLAS_CORETYPE=Prescott was not kept"; exit 1; }
grep -q "kernels $kernels" "$work/bench.txt" \
  || { echo "FAIL: the bench header does not name the kernels ($kernels)"; exit 1; }
echo "ok: OpenBLAS kernels $kernels (the bench header names them; OPENBLAS_CORETYPE is kept)"
python3 - "$work/bench.jsonl" "$work/bench.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["mixer"] for r in rows] == ["softmax", "linear"], rows
for r in rows:
    assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and r["flops_per_token"] > 0, r
    assert r["peak_memory_bytes"] > 0 and r["T"] == 128 and r["batch"] == 64, r
# The table and the JSON lines are one measurement: same rows, step time and MFU as printed.
table = [[c.strip() for c in l.strip().strip("|").split("|")]
         for l in open(sys.argv[2]) if l.startswith("| e008 ")]
assert [t[1] for t in table] == ["softmax", "linear"], table
# (the table rounds to 0.1, the JSON keeps 6 digits: within 0.06 of each other)
for t, r in zip(table, rows):
    assert t[9].endswith("%"), t
    assert abs(float(t[5]) - r["step_ms"]) <= 0.06 and abs(float(t[9][:-1]) - 100 * r["mfu"]) <= 0.06, (t, r)
print("ok: 2 rows, tokens/s, MFU in (0, 1), FLOPs and memory present; the table agrees")
PY
# --ranks: one rank's peak memory at 1 and 2 ranks, the batch split; at 2 ranks less than at
# 1, and with ZeRO-1's moment slice no more than with whole moments.
"$madtrain" bench --shapes e008 --mixers linear --steps 1 --warmup 0 --ranks 1,2 device=cpu > "$work/ranks.txt"
python3 - "$work/ranks.txt" <<'PY'
import sys
rows = [[c.strip() for c in l.strip().strip("|").split("|")] for l in open(sys.argv[1])
        if l.startswith("| e008 | linear | ") and l.count("|") == 7]
assert [r[2] for r in rows] == ["1", "2"] and [r[3] for r in rows] == ["64", "32"], rows
mib = [(float(r[4].split()[0]), float(r[5].split()[0])) for r in rows]
assert mib[1][0] < mib[0][0] and mib[1][1] <= mib[1][0] and mib[0][1] == mib[0][0], mib
print("ok: per-rank memory at 1 and 2 ranks", mib)
PY
# Each bad option: exit 2 and exactly its one error line (a crash after some line is no pass).
steps_msg="madtrain: error: bench: --steps must be an integer >= 1, --warmup and --batch integers >= 0"
while IFS='~' read -r bad want; do
  rc=0; "$madtrain" bench $bad > "$work/out" 2> "$work/err" || rc=$?
  [[ $rc -eq 2 && $(cat "$work/err") == "$want" ]] \
    || { echo "FAIL: '$bad': exit $rc, want exit 2 and: $want"; cat "$work/err"; exit 1; }
  echo "ok: '$bad' -> $want"
done <<EOF
--shapes nosuch~madtrain: error: bench: unknown shape 'nosuch' (madtrain bench --help)
--mixers nosuch~madtrain: error: bench: unknown mixer 'nosuch'
--steps 0~$steps_msg
--batch 8x~$steps_msg
--bogus~madtrain: error: bench: unknown or incomplete option '--bogus' (madtrain bench --help)
--ranks 0~madtrain: error: bench: --ranks takes world sizes 1..4096, e.g. 1,2,4
model.nosuch=1~madtrain: error: command line: unknown key 'model.nosuch' (madtrain --help lists the keys)
--cores nosuch~madtrain: error: bench: unknown mixer 'nosuch'
--cores gla --T 64,x~madtrain: error: bench: --T takes a list of lengths (e.g. 2048,4096), --tokens, --heads and --head-dim positive integers, --steps at most 255 with --cores
--cores gla --heads 0~madtrain: error: bench: --T takes a list of lengths (e.g. 2048,4096), --tokens, --heads and --head-dim positive integers, --steps at most 255 with --cores
--cores gla --steps 300~madtrain: error: bench: --T takes a list of lengths (e.g. 2048,4096), --tokens, --heads and --head-dim positive integers, --steps at most 255 with --cores
EOF
# --cores: each core op alone at B x T fixed as T grows; a row per (core, T) with forward under
# forward + backward, and the JSON lines agree with the table.
"$madtrain" bench --cores linear,gla,deltanet --T 32,128 --tokens 256 --heads 2 --head-dim 8 \
  --steps 3 --warmup 1 device=cpu --out "$work/cores.jsonl" > "$work/cores.txt"
python3 - "$work/cores.jsonl" "$work/cores.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [(r["core"], r["T"], r["B"]) for r in rows] == [
    (c, T, 256 // T) for c in ("linear", "gla", "deltanet") for T in (32, 128)], rows
for r in rows:
    assert 0 < r["fwd_ms"] < r["fwd_bwd_ms"] and r["H"] == 2 and r["D"] == 8, r
    assert r["peak_memory_bytes"] > 0 and r["precision"] == "fp32", r
table = [[c.strip() for c in l.strip().strip("|").split("|")] for l in open(sys.argv[2])
         if l.startswith(("| linear ", "| gla ", "| deltanet "))]
assert len(table) == len(rows), table
for t, r in zip(table, rows):
    assert abs(float(t[3]) - r["fwd_bwd_ms"]) <= 6e-4, (t, r)
print("ok: --cores: 6 rows, forward under forward + backward; the table agrees")
PY
