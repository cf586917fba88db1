#!/usr/bin/env bash
# The GPU checks and measurements of issue #16 as one script for the lent GPU machine (CUDA,
# Python with PyTorch; no MPI, HDF5 or BLAS), with .gpu/ carried (launch/gpu_bundle.sh builds
# it here) and, for the fla peer, .whl/ (docs/gpu.md says how to fetch the wheels).
#
#   bash launch/gpu_check.sh first    # first contact: parity, GPU-vs-CPU training, memcheck,
#                                     # GEMM forms, one step by phase, the bench (fp32, bf16)
#   bash launch/gpu_check.sh speed    # against the peers: GEMM forms, the bench in bf16, the
#                                     # cores alone, PyTorch GPT-2 and fla's kernels, ratios
#   bash launch/gpu_check.sh experiments  # E008 and E029 end to end on the GPU (one seed),
#                                     # wall time against the seeds' T4 runtimes
#
# Each stage runs under its own time limit inside a budget for the whole run (GPU_CHECK_BUDGET_S,
# default 420 s: the lease is 15 minutes with the machine's start and a rerun); a stage that no
# longer fits is skipped with a line saying so. What comes back ($OUT, at most 8 files):
# summary.md (the stage table and the result tables), results.jsonl (every benchmark's JSON
# lines), logs.tar.gz (every stage's whole log) and device.txt. The summary is printed last.
set -uo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
# GPT-2 small as GPT-2 has it (LayerNorm, learned positions, biases, tanh GELU, tied head),
# the PyTorch peer's model (bench/peer_gpt2.py)
gpt2=(model.norm=layernorm model.pos_embedding=true model.rope=off model.mlp_bias=true
      model.proj_bias=true model.mlp=gelu model.tie_embeddings=true)
cores=linear,gla,decay,deltanet,gated_deltanet

_memcheck() {  # a few steps of a small model that calls most kernels, then the parity suite
  [[ -n $sanitizer ]] || { echo "compute-sanitizer not found"; return 1; }
  "$sanitizer" --tool memcheck --error-exitcode 9 --print-limit 20 "$bin/madtrain" train \
    device=cuda model.mixer=softmax,gla,deltanet,mamba2 model.n_layers=4 model.d_model=64 \
    model.n_heads=4 mixer.conv_kernel=4 model.gate=true data.seq_len=64 train.batch_size=8 \
    train.steps=3 train.eval_every=0 data.test_examples=8 run.dir=/tmp/memcheck-run || return $?
  "$sanitizer" --tool memcheck --error-exitcode 9 --print-limit 20 "$bin/test_parity"
}

_phases() {  # one GPT-2-small step by phase, bf16 products
  "$bin/madtrain" train device=cuda precision=bf16 "${gpt2[@]}" model.d_model=768 model.n_layers=12 \
    model.n_heads=12 data.task=mqar data.vocab_size=50257 data.seq_len=1024 data.num_kv_pairs=64 \
    train.batch_size=8 train.steps=3 train.profile_step=3 train.log_every=1 train.eval_every=0 \
    data.test_examples=8 run.dir=/tmp/phases-run
}

_bench() {  # $1 precision
  "$bin/madtrain" bench --steps 10 --warmup 3 --mixers softmax,linear,gla device=cuda precision="$1" \
    "${gpt2[@]}" --out "$logs/bench_$1.jsonl"
  local rc=$?
  sed "s/^{/{\"precision\":\"$1\",/" "$logs/bench_$1.jsonl" >> "$results"
  return $rc
}

_peers() {
  if [[ -d .whl ]] && ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
  fi
  PYTHONUNBUFFERED=1 python3 bench/peer_gpt2.py --out "$logs/peer_gpt2.jsonl"
  local rc=$?
  cat "$logs/peer_gpt2.jsonl" >> "$results" 2> /dev/null
  PYTHONUNBUFFERED=1 python3 bench/peer_fla.py --cores "$cores" --out "$logs/peer_fla.jsonl" || rc=1
  cat "$logs/peer_fla.jsonl" >> "$results" 2> /dev/null
  return $rc
}

mode=${1:-first}
# the stages that are shell functions run as `bash gpu_check.sh _NAME` under timeout, with
# the setup below passed in the environment
if [[ $mode == _* ]]; then
  "$@"
  exit $?
fi
[[ $mode == first || $mode == speed || $mode == experiments ]] ||
  { echo "usage: gpu_check.sh first|speed|experiments"; exit 2; }
out=${OUT:-gpu-out}
budget=${GPU_CHECK_BUDGET_S:-420}
logs=/tmp/gpu-logs
rm -rf "$logs" && mkdir -p "$out" "$logs"
summary=$out/summary.md
results=$out/results.jsonl
: > "$results"
t_start=$SECONDS
echo "# gpu_check $mode, $(date -u +%FT%TZ), madtrain $(git rev-parse --short HEAD 2> /dev/null)" > "$summary"
printf '\n| stage | exit | seconds | last line |\n|---|---|---|---|\n' >> "$summary"

bundle=/tmp/madtrain-gpu
rm -rf "$bundle" && mkdir -p "$bundle"
tar -C "$bundle" -xJf .gpu/bundle.tar.xz || { echo "no .gpu/bundle.tar.xz: run launch/gpu_bundle.sh here and carry .gpu"; exit 1; }
bin=$bundle/bin
# CUDA's libraries: the toolkit's, or the pip packages' (nvidia-*), wherever they are.
dirs=$(find /usr/local /usr/lib /opt "$(python3 -c 'import site; print(site.getsitepackages()[0])' 2> /dev/null || echo /nonexistent)" \
         \( -name 'libcublas.so.13' -o -name 'libcublasLt.so.13' -o -name 'libnccl.so.2' -o -name 'libcudart.so.13' -o -name 'libcufft.so.12' \) \
         2> /dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$bundle/lib:$dirs:${LD_LIBRARY_PATH:-}"
export bin logs results
export sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2> /dev/null | head -1)
{
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit --format=csv
  nvidia-smi | sed -n 3p  # the line with the driver and CUDA versions
  nvcc --version 2> /dev/null | tail -2
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' 2>&1
  echo "compute-sanitizer: ${sanitizer:-not found}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  for b in "$bin"/*; do ldd "$b" | grep "not found" | sed "s|^|$(basename "$b"): |"; done
} > "$out/device.txt" 2>&1
cat "$out/device.txt"
if grep -q "=> not found" "$out/device.txt"; then echo "missing libraries (device.txt)"; exit 1; fi

failed=0
# stage NAME LIMIT_S COMMAND...: runs COMMAND with its output in $logs/NAME.log under the
# smaller of LIMIT_S and the budget left; records exit status (124: out of time) and seconds.
stage() {
  local name=$1 limit=$2 left rc t0; shift 2
  left=$((budget - (SECONDS - t_start)))
  if ((left < 15)); then
    echo "| $name | skipped | 0 | ${left}s of the budget left |" >> "$summary"
    echo "== $name: skipped (${left}s of the budget left)"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit}s)"
  t0=$SECONDS
  timeout -k 10 "$limit" "$@" > "$logs/$name.log" 2>&1
  rc=$?
  ((rc != 0)) && failed=1
  tail -n 25 "$logs/$name.log"
  local last
  last=$(grep -v '^\s*$' "$logs/$name.log" | tail -n 1 | tr '|' '/' | cut -c1-160)
  echo "| $name | $rc$( ((rc == 124)) && echo ' (time)') | $((SECONDS - t0)) | $last |" >> "$summary"
}

if [[ $mode == first ]]; then
  stage parity 150 "$bin/test_parity"
  stage cuda_train 240 bash tests/test_cuda_train.sh "$bin/madtrain" "$bin/params_diff" /tmp/cuda_train
  stage memcheck 150 bash "$self" _memcheck
  stage gemm 90 "$bin/bench_gemm" --out "$logs/gemm.jsonl"
  cat "$logs/gemm.jsonl" >> "$results" 2> /dev/null
  stage phases 90 bash "$self" _phases
  stage bench_bf16 120 bash "$self" _bench bf16
  stage bench_fp32 120 bash "$self" _bench fp32
elif [[ $mode == experiments ]]; then
  # the shipped configs as users run them (launch/run_experiment.sh), on the GPU, fp32
  for exp in e008 e029; do
    stage "$exp" 240 env MADTRAIN="$bin/madtrain" bash launch/run_experiment.sh "$exp" --seeds 1 \
      --out "/tmp/$exp" -- device=cuda
  done
else
  stage gemm 90 "$bin/bench_gemm" --out "$logs/gemm.jsonl"
  cat "$logs/gemm.jsonl" >> "$results" 2> /dev/null
  stage bench_bf16 120 bash "$self" _bench bf16
  stage cores_bf16 120 "$bin/madtrain" bench --cores "$cores" --steps 10 --warmup 2 \
    device=cuda precision=bf16 --out "$logs/cores.jsonl"
  cat "$logs/cores.jsonl" >> "$results" 2> /dev/null
  stage peers 300 bash "$self" _peers
fi

{
  echo
  for f in gemm phases bench_bf16 bench_fp32 cores_bf16 e008 e029; do
    [[ -f $logs/$f.log ]] || continue
    printf '\n## %s\n\n' "$f"
    grep -E '^(\||phases of|bench_gemm|madtrain bench|One training|== |done:)' "$logs/$f.log"
  done
  if [[ -s $results ]]; then
    printf '\n## against the peers (bench/compare.py)\n\n'
    python3 bench/compare.py "$results" 2>&1
  fi
} >> "$summary"
tar -C "$logs" -czf "$out/logs.tar.gz" .
echo
cat "$summary"
echo "gpu_check $mode: $((SECONDS - t_start)) s; $([[ $failed == 0 ]] && echo 'every stage passed' || echo 'some stage FAILED (summary above)')"
exit $failed
