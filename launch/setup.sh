#!/usr/bin/env bash
# Installs madtrain's Debian packages (when missing) and builds it into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-openmp-dev
      libfftw3-dev libhdf5-dev libyaml-dev libsentencepiece-dev gnuplot-nox zlib1g-dev python3-h5py python3-yaml hdf5-tools
      libpng-dev libjpeg62-turbo-dev python3-numpy python3-sklearn python3-pil)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  echo "setup: installing ${missing[*]}"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" > /dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
