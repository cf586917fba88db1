#!/usr/bin/env bash
# GPU training, against the CPU reference and across communication backends:
#  - 10 training steps on cuda vs cpu (fp32): every step's loss within 1e-4 relative, for
#    models that use every kernel the CUDA backend has (softmax, chunkwise linear attention
#    with elu1, relu, cosFormer, FAVOR+ (redrawn) and circulant features, log-linear and
#    cos-LogLinear, HSS, Hydra, rope, gate, short conv, gelu/swiglu, tied/untied head,
#    learned positions)
#  - 2 ranks sharing the GPU (MPI, host-staged, small buckets) == 1 rank, within 1e-5
#  - 1 rank through NCCL == 1 rank through MPI, bitwise; with ZeRO-1 (NCCL reduce and
#    broadcast of the slices) too
#  - the refusal of NCCL with ranks sharing a GPU
# Skips (77) with the reason when no GPU is visible or the build has no CUDA.
set -euo pipefail
madtrain=$1 params_diff=$2 work=$3
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
rm -rf "$work"; mkdir -p "$work"
common=(data.task=mqar data.seq_len=64 data.vocab_size=64 data.num_kv_pairs=8
        model.d_model=64 model.n_heads=4 model.n_layers=2 train.steps=10 train.batch_size=16
        train.eval_every=0 train.log_every=1 data.test_examples=32 optim.warmup_steps=2
        cpu.threads=2)

probe=$("$madtrain" "${common[@]}" device=cuda train.steps=1 run.dir="$work/probe" 2>&1) || {
  if grep -qE "no CUDA device is visible|built without CUDA" <<< "$probe"; then
    echo "SKIP: $(grep -oE 'device: cuda, but .*' <<< "$probe")"; exit 77
  fi
  echo "$probe"; exit 1; }

losses() { python3 -c '
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("event") == "train": print(e["step"], repr(e["loss"]))' "$1/metrics.jsonl"; }

fail=0
compare_curves() {  # name, extra settings...; TOL= the relative tolerance (default 1e-4)
  local name=$1 tol=${TOL:-1e-4}; shift
  "$madtrain" "${common[@]}" "${@/precision=bf16/precision=fp32}" device=cpu run.dir="$work/$name-cpu" > /dev/null
  "$madtrain" "${common[@]}" "$@" device=cuda run.dir="$work/$name-cuda" > "$work/$name-cuda.log"
  grep -q "device cuda" "$work/$name-cuda.log" || { echo "FAIL $name: did not run on cuda"; fail=1; return; }
  python3 - "$name" <(losses "$work/$name-cpu") <(losses "$work/$name-cuda") "$tol" <<'PY' || fail=1
import sys
name, a, b = sys.argv[1], open(sys.argv[2]).read().split("\n"), open(sys.argv[3]).read().split("\n")
tol = float(sys.argv[4])
a = [l.split() for l in a if l]; b = [l.split() for l in b if l]
assert len(a) == 10 and len(b) == 10, f"{name}: expected 10 logged steps, got {len(a)} and {len(b)}"
worst = max(abs(float(x[1]) - float(y[1])) / abs(float(x[1])) for x, y in zip(a, b))
ok = worst <= tol
print(f"{'ok' if ok else 'FAIL'} {name}: 10 steps cuda vs cpu, largest relative loss difference {worst:.3g} (tolerance {tol:g})")
sys.exit(0 if ok else 1)
PY
}
# Every mixer of the op table (madtrain mixers: its name and its first test shape's options),
# so a new mixer is run here with no edit; then the combinations below.
while read -r mixer opts; do
  # shellcheck disable=SC2086  # opts is a list of key=value words
  compare_curves "table-$mixer" model.mixer="$mixer" $opts
done < <("$madtrain" mixers)
compare_curves softmax-rope-gelu model.mixer=softmax
compare_curves softmax-gate-conv-swiglu model.mixer=softmax model.gate=true mixer.conv_kernel=3 \
  model.mlp=swiglu model.tie_embeddings=false
compare_curves positions-norope model.mixer=softmax model.rope=off model.pos_embedding=true \
  train.grad_accum=2
compare_curves linear-elu1-chunk16 model.mixer=linear mixer.chunk=16
compare_curves hybrid-relu-unnormalised model.mixer=softmax,linear mixer.feature_map=relu \
  mixer.normalize=false
compare_curves hydra model.mixer=hydra
compare_curves favor-redraw model.mixer=favor mixer.features=48 mixer.redraw_interval=4
compare_curves cosformer-chunk16 model.mixer=cosformer mixer.chunk=16
compare_curves circulant-m40 model.mixer=circulant_favor mixer.features=40
# log-linear: 4 chunks of 16 (a tree of height 2) and 64 levels of positions; cosFormer features
compare_curves loglinear-chunk16 model.mixer=loglinear mixer.chunk=16
compare_curves cos-loglinear-chunk8 model.mixer=cos_loglinear mixer.chunk=8 mixer.max_len=128
# HSS: head dim 16, leaves of 4 (a tree of depth 2), rank 2, two chunks
compare_curves hss-leaf4-rank2 model.mixer=hss mixer.hss_leaf=4 mixer.hss_rank=2 mixer.chunk=32
# bf16 matrix products against the fp32 CPU reference: the same curve to 2e-2
TOL=2e-2 compare_curves bf16-softmax-linear model.mixer=softmax,linear precision=bf16

"$madtrain" "${common[@]}" device=cuda comm.backend=mpi run.dir="$work/cuda-1rank" > /dev/null
"$madtrain" "${common[@]}" device=cuda comm.backend=nccl run.dir="$work/cuda-nccl" > "$work/nccl.log"
grep -q "comm nccl" "$work/nccl.log" || { echo "FAIL: the NCCL run did not use NCCL"; fail=1; }
echo "1 rank, NCCL vs MPI:"
"$params_diff" "$work/cuda-1rank/final_state.bin" "$work/cuda-nccl/final_state.bin" --bitwise || fail=1

# ZeRO-1 over NCCL on one rank: its reduce to the owner and its broadcast of the slice are in
# place, so the result is the NCCL run's bitwise (the calls run; their sums need 2 GPUs).
"$madtrain" "${common[@]}" device=cuda comm.backend=nccl optim.zero=1 \
  run.dir="$work/cuda-nccl-zero" > "$work/nccl-zero.log"
grep -q "^optim.zero: AdamW moments" "$work/nccl-zero.log" || { echo "FAIL: ZeRO did not run"; fail=1; }
echo "1 rank, NCCL with ZeRO-1 vs NCCL:"
"$params_diff" "$work/cuda-nccl/final_state.bin" "$work/cuda-nccl-zero/final_state.bin" --bitwise || fail=1

if command -v mpirun > /dev/null; then
  mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none -n 2)
  "${mpirun[@]}" "$madtrain" "${common[@]}" device=cuda comm.backend=mpi comm.bucket_mb=0.01 \
    run.dir="$work/cuda-2rank" > /dev/null
  echo "2 ranks sharing the GPU (MPI, small buckets) vs 1 rank:"
  "$params_diff" "$work/cuda-1rank/final_state.bin" "$work/cuda-2rank/final_state.bin" 1e-5 || fail=1
  gpus=$( (nvidia-smi -L 2> /dev/null || true) | grep -c "^GPU" || true)
  if [[ ${gpus:-0} -le 1 ]]; then
    if "${mpirun[@]}" "$madtrain" "${common[@]}" device=cuda comm.backend=nccl \
         run.dir="$work/refused" > "$work/refused.log" 2>&1; then
      echo "FAIL: NCCL with 2 ranks on one GPU was not refused"; fail=1
    else
      grep -m1 "one GPU per rank" "$work/refused.log" || { echo "FAIL: unclear refusal"; cat "$work/refused.log"; fail=1; }
    fi
  fi
else
  echo "note: no mpirun here; the 2-rank GPU cases did not run"
fi

[[ $fail == 0 ]] && echo "all GPU training checks passed" || { echo "FAILED"; exit 1; }
