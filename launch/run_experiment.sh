#!/usr/bin/env bash
# Runs a whole experiment: every config of launch/configs/experiments/<name>/, for each seed,
# into <out>/<config>-s<seed>/, then `madtrain report` over them (table.md, table.csv, plots/).
#
#   bash launch/run_experiment.sh e029                       # seeds 1 2 3, 1 rank, runs/e029
#   bash launch/run_experiment.sh e008 --seeds "1 2" --ranks 2 --out /scratch/e008
#   bash launch/run_experiment.sh e029 -- train.epochs=10    # extra key=value for every run
#   bash launch/run_experiment.sh e005 --only hss_r8         # one config of the experiment
#
# --device cuda runs on a GPU once the CUDA trainer is in (device.kind); anything after `--`
# is passed to every run. A finished run (status "finished") is skipped, so an interrupted
# experiment continues where it stopped; a preempted one resumes from its checkpoint.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
[[ "$1" == -h || "$1" == --help ]] && { usage; exit 0; }
exp="$1"; shift
seeds="1 2 3" ranks=1 out="" only="" bin="${MADTRAIN:-$root/build/madtrain}"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --ranks) ranks="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "run_experiment: error: unknown option '$1'" >&2; exit 2 ;;
  esac
done
dir="$root/launch/configs/experiments/$exp"
[[ -d "$dir" ]] || {
  echo "run_experiment: error: no experiment '$exp' (have: $(ls "$root/launch/configs/experiments" | tr '\n' ' '))" >&2
  exit 2
}
[[ -x "$bin" ]] || { echo "run_experiment: error: no binary '$bin' (build first: bash launch/setup.sh)" >&2; exit 2; }
out="${out:-runs/$exp}"
mkdir -p "$out"
launch=()
if [[ "$ranks" -gt 1 ]]; then
  launch=(mpirun -n "$ranks" --oversubscribe)
  [[ $(id -u) -eq 0 ]] && launch+=(--allow-run-as-root)
fi
for cfg in "$dir"/*.yaml; do
  name="$(basename "$cfg" .yaml)"
  [[ -n "$only" && "$name" != "$only" ]] && continue
  for seed in $seeds; do
    run="$out/$name-s$seed"
    if [[ "$(cat "$run/status" 2> /dev/null)" == finished ]]; then
      echo "== $run: finished, skipped"
      continue
    fi
    echo "== $run"
    "${launch[@]}" "$bin" train --config "$cfg" seed="$seed" run.dir="$run" \
      checkpoint.resume=auto "${extra[@]}" > "$run.log" 2>&1 || {
      echo "run_experiment: error: $run failed (exit $?); its log: $run.log" >&2
      tail -3 "$run.log" >&2
      exit 1
    }
    grep -E '^done:' "$run.log" || true
  done
done
"$bin" report --csv "$out/table.csv" --plots "$out/plots" "$out" | tee "$out/table.md"
