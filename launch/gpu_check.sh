#!/usr/bin/env bash
# The GPU checks of the CUDA backend in one go, on the lent GPU machine, with .gpu/ (from
# launch/gpu_bundle.sh) carried: CPU-vs-CUDA parity of every op, 10 training steps GPU vs CPU,
# NCCL vs MPI on one rank, the refusals, and the benchmark table in fp32 and bf16. Logs go to
# $OUT (or gpu-out/), at most 8 files as the device tool returns them. Run it with a generous
# timeout_s (about 600): a first run's time on an H200 is not known yet.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
bundle=/tmp/madtrain-gpu
rm -rf "$bundle" && mkdir -p "$bundle" && tar -C "$bundle" -xJf .gpu/bundle.tar.xz || exit 1
# CUDA's libraries: the toolkit's, or the pip packages' (nvidia-*), wherever they are.
dirs=$(find /usr/local /usr/lib /opt "$(python3 -c 'import site; print(site.getsitepackages()[0])' 2> /dev/null || echo /nonexistent)" \
         \( -name 'libcublas.so.13' -o -name 'libnccl.so.2' -o -name 'libcudart.so.13' \) \
         2> /dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$bundle/lib:$dirs:${LD_LIBRARY_PATH:-}"
{ nvidia-smi -L; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; } | tee "$out/device.txt"
if ldd $bundle/bin/madtrain | grep "not found"; then echo "missing libraries"; exit 1; fi
rc=0
$bundle/bin/test_parity > "$out/parity.log" 2>&1 || rc=1
tail -3 "$out/parity.log"
bash tests/test_cuda_train.sh $bundle/bin/madtrain $bundle/bin/params_diff /tmp/cuda_train \
  > "$out/cuda_train.log" 2>&1 || rc=1
tail -12 "$out/cuda_train.log"
# the benchmark in fp32 and with bf16 matrix products (the MFU floor is for bf16)
$bundle/bin/madtrain bench --steps 10 --warmup 3 --out "$out/bench_fp32.jsonl" 2>&1 |
  tee "$out/bench_fp32.md" || rc=1
$bundle/bin/madtrain bench --steps 10 --warmup 3 precision=bf16 --out "$out/bench_bf16.jsonl" 2>&1 |
  tee "$out/bench_bf16.md" || rc=1
exit $rc
