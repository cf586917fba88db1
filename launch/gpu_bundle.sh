#!/usr/bin/env bash
# Prepares a GPU check on a machine that has CUDA but none of madtrain's other libraries (the
# lent device machine): builds the single-rank CUDA binaries here (no MPI, sm_90 for H100/H200)
# into build-gpu/ and gathers them, with every shared library they need except the C library
# and CUDA's own (found on the GPU machine), into .gpu/bundle.tar.xz (ignored by git;
# compressed, since what travels is limited to 64 MiB and OpenBLAS alone is 36 MB). Carry .gpu
# there and run launch/gpu_check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-gpu -DMADTRAIN_WITH_MPI=OFF -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build-gpu -j "$(nproc)" --target madtrain test_parity params_diff bench_gemm > /dev/null
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib"
cp build-gpu/madtrain build-gpu/bench_gemm build-gpu/tests/test_parity build-gpu/tests/params_diff "$stage/bin/"
keep_out='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libresolv\.|libcuda|libcudart|libcublas|libcufft|libnccl)'
for b in "$stage"/bin/*; do ldd "$b" | awk '$3 ~ /^\// {print $1, $3}'; done | sort -u |
  while read -r name path; do
    [[ $name =~ $keep_out ]] || cp -L "$path" "$stage/lib/"
  done
rm -rf .gpu
mkdir -p .gpu
# the commit the binaries are built from (gpu_check.sh prints it: scripts and binaries can differ)
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src kernels comm data CMakeLists.txt bench || echo '+uncommitted')" > "$stage/VERSION"
tar -C "$stage" -cJf .gpu/bundle.tar.xz bin lib VERSION
echo "gpu bundle: $(ls "$stage/lib" | wc -l) libraries, $(du -sh "$stage" | cut -f1) unpacked," \
  "$(du -sh .gpu/bundle.tar.xz | cut -f1) in .gpu/bundle.tar.xz"
rm -rf "$stage"
