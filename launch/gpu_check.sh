#!/usr/bin/env bash
# The GPU checks and measurements of issue #16 as one script for the lent GPU machine (CUDA,
# Python with PyTorch; no MPI, HDF5 or BLAS), with .gpu/ carried (launch/gpu_bundle.sh builds
# it here, from the commit it names) and, for the fla peer, .whl/ (docs/gpu.md says how).
#
#   bash launch/gpu_check.sh first        # first contact: parity, GPU-vs-CPU training,
#                                         # memcheck, GEMM forms, one step by phase, the bench
#   bash launch/gpu_check.sh speed        # against the peers: GEMM forms, the cores alone,
#                                         # fla's kernels, PyTorch GPT-2, the ratio tables
#   bash launch/gpu_check.sh experiments  # E008 and E029 end to end (one seed), wall time
#
# Each stage runs under its own time limit inside a budget for the whole run
# (GPU_CHECK_BUDGET_S; 420 s for first and experiments, 480 s for speed: the lease is 15
# minutes with the machine's start); a stage that no longer fits is skipped with a line.
# What comes back ($OUT, at most 8 files): summary.md (the stage table and the result
# tables), results.jsonl (every benchmark's JSON lines, kept also from a stage stopped at its
# limit), logs.tar.gz (every stage's whole log) and device.txt. The summary is printed last.
set -uo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
# GPT-2 small as GPT-2 has it (LayerNorm, learned positions, biases, tanh GELU, tied head),
# the PyTorch peer's model (bench/peer_gpt2.py)
gpt2=(model.norm=layernorm model.pos_embedding=true model.rope=off model.mlp_bias=true
      model.proj_bias=true model.mlp=gelu model.tie_embeddings=true)
cores=linear,gla,decay,deltanet,gated_deltanet

# ---- stages that are more than one command (run as `bash gpu_check.sh _NAME` under timeout,
# the setup below passed in the environment)
_memcheck_train() {  # 3 steps of a small model that calls most of the model's kernels
  [[ -n $sanitizer ]] || { echo "compute-sanitizer not found"; return 1; }
  "$sanitizer" --tool memcheck --error-exitcode 9 --print-limit 20 "$bin/madtrain" train \
    device=cuda model.mixer=softmax,gla,deltanet,mamba2 model.n_layers=4 model.d_model=64 \
    model.n_heads=4 mixer.conv_kernel=4 model.gate=true data.seq_len=64 train.batch_size=8 \
    train.steps=3 train.eval_every=0 data.test_examples=8 run.dir=/tmp/memcheck-run
}

_memcheck_parity() {  # every op under memcheck (slow: what finishes inside the limit counts)
  [[ -n $sanitizer ]] || { echo "compute-sanitizer not found"; return 1; }
  "$sanitizer" --tool memcheck --error-exitcode 9 --print-limit 20 "$bin/test_parity"
}

_phases() {  # one GPT-2-small step by phase, bf16 products
  "$bin/madtrain" train device=cuda precision=bf16 "${gpt2[@]}" model.d_model=768 \
    model.n_layers=12 model.n_heads=12 data.task=mqar data.vocab_size=50257 data.seq_len=1024 \
    data.num_kv_pairs=64 train.batch_size=8 train.steps=3 train.profile_step=3 train.log_every=1 \
    train.eval_every=0 data.test_examples=8 run.dir=/tmp/phases-run
}

# Python runs with the image's own libraries, not the bundle's (Debian 12's libstdc++ and
# OpenSSL would shadow newer ones torch and Triton need).
_python() {
  LD_LIBRARY_PATH="$cuda_dirs" PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" \
    python3 "$@"
}

_peer_fla() {
  _python bench/peer_fla.py --cores "$cores" --out "$logs/peer_fla.jsonl"
}

_peer_gpt2() {  # compiled; if compiling fails (no C compiler for Triton, say), eager
  _python bench/peer_gpt2.py --out "$logs/peer_gpt2.jsonl" && return 0
  echo "peer_gpt2: the compiled run failed; eager instead (--no-compile)"
  _python bench/peer_gpt2.py --no-compile --out "$logs/peer_gpt2.jsonl"
}

mode=${1:-first}
if [[ $mode == _* ]]; then
  "$@"
  exit $?
fi
case $mode in
  first | experiments) budget=${GPU_CHECK_BUDGET_S:-420} ;;
  speed) budget=${GPU_CHECK_BUDGET_S:-480} ;;
  *) echo "usage: gpu_check.sh first|speed|experiments"; exit 2 ;;
esac
out=${OUT:-gpu-out}
logs=/tmp/gpu-logs
rm -rf "$logs" && mkdir -p "$out" "$logs"
summary=$out/summary.md
results=$out/results.jsonl
: > "$results"
t_start=$SECONDS

bundle=/tmp/madtrain-gpu
rm -rf "$bundle" && mkdir -p "$bundle"
[[ -f .gpu/bundle.tar.xz ]] || { echo "no .gpu/bundle.tar.xz: run launch/gpu_bundle.sh here and carry .gpu"; exit 1; }
# tar needs xz for .xz; Python's tarfile reads it without (a slim image may lack xz-utils)
tar -C "$bundle" -xJf .gpu/bundle.tar.xz 2> /dev/null ||
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    .gpu/bundle.tar.xz "$bundle" || { echo "cannot unpack .gpu/bundle.tar.xz"; exit 1; }
bin=$bundle/bin
echo "# gpu_check $mode, $(date -u +%FT%TZ), bundle of madtrain $(cat "$bundle/VERSION" 2> /dev/null || echo '?'), scripts of $(git rev-parse --short HEAD 2> /dev/null || echo '?')" > "$summary"
printf '\n| stage | exit | seconds | last line |\n|---|---|---|---|\n' >> "$summary"
# CUDA's libraries: the toolkit's, or the pip packages' (nvidia-*), wherever they are.
sites=$(python3 -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2> /dev/null)
cuda_dirs=$(find /usr/local /usr/lib /opt $sites \
              \( -name 'libcublas.so.13' -o -name 'libcublasLt.so.13' -o -name 'libnccl.so.2' \
                 -o -name 'libcudart.so.13' -o -name 'libcufft.so.12' \) \
              2> /dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$bundle/lib:$cuda_dirs:${LD_LIBRARY_PATH:-}"
export bin logs cuda_dirs
export sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2> /dev/null | head -1)
{
  echo "bundle: $(cat "$bundle/VERSION" 2> /dev/null || echo 'no VERSION')"
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit --format=csv
  nvidia-smi | sed -n 3p  # the line with the driver and CUDA versions
  nvcc --version 2> /dev/null | tail -2
  LD_LIBRARY_PATH=$cuda_dirs python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' 2>&1
  echo "C compiler (Triton's launcher): $(command -v gcc || command -v cc || echo none)"
  echo "Python.h: $(python3 -c 'import sysconfig, os; p = os.path.join(sysconfig.get_paths()["include"], "Python.h"); print(p if os.path.exists(p) else "missing")' 2>&1)"
  echo "compute-sanitizer: ${sanitizer:-not found}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  for b in "$bin"/*; do ldd "$b" | grep "not found" | sed "s|^|$(basename "$b"): |"; done
} > "$out/device.txt" 2>&1
cat "$out/device.txt"
if grep -q "=> not found" "$out/device.txt"; then echo "missing libraries (device.txt)"; exit 1; fi

if [[ -d .whl ]] && ls .whl/*.whl > /dev/null 2>&1; then  # the peers' missing packages
  LD_LIBRARY_PATH=$cuda_dirs python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || echo "note: the wheels in .whl did not install"
fi

failed=0
# stage NAME LIMIT_S COMMAND...: runs COMMAND with its output in $logs/NAME.log under the
# smaller of LIMIT_S and the budget left; records exit status (124: out of time) and seconds.
stage() {
  local name=$1 limit=$2 left rc t0 last
  shift 2
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
  last=$(grep -v '^\s*$' "$logs/$name.log" | tail -n 1 | tr '|' '/' | cut -c1-160)
  echo "| $name | $rc$( ((rc == 124)) && echo ' (time)') | $((SECONDS - t0)) | $last |" >> "$summary"
}
# collect FILE [PRECISION]: a stage's JSON lines into results.jsonl (the bench's lines get the
# precision they ran at); here, not in the stage, so a stage stopped at its limit keeps its rows
collect() {
  [[ -f $1 ]] || return 0
  if [[ -n ${2:-} ]]; then sed "s/^{/{\"precision\":\"$2\",/" "$1"; else cat "$1"; fi >> "$results"
}
bench() {  # NAME PRECISION LIMIT [bench options]: madtrain bench in GPT-2's layout
  local name=$1 precision=$2 limit=$3
  shift 3
  stage "$name" "$limit" "$bin/madtrain" bench --steps 10 --warmup 3 device=cuda \
    precision="$precision" "${gpt2[@]}" --out "$logs/$name.jsonl" "$@"
  collect "$logs/$name.jsonl" "$precision"
}

if [[ $mode == first ]]; then
  stage parity 120 "$bin/test_parity"
  stage cuda_train 210 bash tests/test_cuda_train.sh "$bin/madtrain" "$bin/params_diff" /tmp/cuda_train
  stage memcheck_train 60 bash "$self" _memcheck_train
  stage gemm 60 "$bin/bench_gemm" --out "$logs/gemm.jsonl"
  collect "$logs/gemm.jsonl"
  stage phases 60 bash "$self" _phases
  bench bench_bf16 bf16 90 --mixers softmax,linear,gla
  bench bench_fp32 fp32 90 --mixers softmax,linear,gla
  stage memcheck_parity 120 bash "$self" _memcheck_parity
elif [[ $mode == speed ]]; then
  stage gemm 45 "$bin/bench_gemm" --out "$logs/gemm.jsonl"
  collect "$logs/gemm.jsonl"
  bench bench_bf16 bf16 60 --shapes gpt2-small --mixers softmax
  stage peer_gpt2 135 bash "$self" _peer_gpt2
  collect "$logs/peer_gpt2.jsonl"
  stage cores_bf16 90 "$bin/madtrain" bench --cores "$cores" --steps 10 --warmup 2 \
    device=cuda precision=bf16 --out "$logs/cores.jsonl"
  collect "$logs/cores.jsonl"
  stage peer_fla 150 bash "$self" _peer_fla
  collect "$logs/peer_fla.jsonl"
else
  # the shipped configs as users run them (launch/run_experiment.sh), on the GPU, fp32
  for exp in e008 e029; do
    stage "$exp" 240 env MADTRAIN="$bin/madtrain" bash launch/run_experiment.sh "$exp" --seeds 1 \
      --out "/tmp/$exp" -- device=cuda
  done
fi
{
  for f in gemm phases bench_bf16 bench_fp32 cores_bf16 peer_fla peer_gpt2 e008 e029; do
    [[ -f $logs/$f.log ]] || continue
    printf '\n## %s\n\n' "$f"
    grep -E '^(\||phases of|bench_gemm|madtrain bench|One training|pytorch|== |done:)' "$logs/$f.log"
  done
  if [[ -s $results ]]; then
    printf '\n## against the peers (bench/compare.py)\n\n'
    _python bench/compare.py "$results" 2>&1
  fi
} >> "$summary"
tar -C "$logs" -czf "$out/logs.tar.gz" .
echo
cat "$summary"
echo "gpu_check $mode: $((SECONDS - t_start)) s; $([[ $failed == 0 ]] && echo 'every stage passed' || echo 'some stage FAILED (summary above)')"
exit $failed
