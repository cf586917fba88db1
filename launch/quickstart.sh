#!/usr/bin/env bash
# Sets up madtrain and trains softmax attention on the shipped MQAR config with 2 MPI ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
root=(); [[ $(id -u) -eq 0 ]] && root=(--allow-run-as-root)
mpirun "${root[@]}" --oversubscribe -n 2 build/madtrain --config launch/configs/mqar-small.yaml "$@"
