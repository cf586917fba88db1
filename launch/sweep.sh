#!/usr/bin/env bash
# Runs a grid experiment: every config (mixer) of launch/configs/experiments/<name>/ at every
# cell of its grid file (task settings x d_model x learning rate x seed), each cell into
# <out>/<config>-<cell>-d<d_model>-lr<lr>-s<seed>/, then `madtrain report --sweep` over them
# (the best learning rate per mixer, cell and width: table.md, table.csv, plots/).
#
#   bash launch/sweep.sh zoology-mqar                       # every cell here, one after another
#   bash launch/sweep.sh zoology-mqar --list                # the cells, numbered
#   bash launch/sweep.sh zoology-mqar --task 7              # cell 7 only (a job array's task)
#   bash launch/sweep.sh zoology-mqar --slurm               # submit all cells as a job array
#   bash launch/sweep.sh zoology-mqar --grid my.grid -- train.epochs=4   # another grid, overrides
#
# The grid file (bash; <experiment>/grid unless --grid) sets CELLS (each "name key=value ..."),
# D_MODELS, LRS and SEEDS; optionally WDS (weight decays, each cell then also -wd<wd>) and
# REPORT (the report's mode: --sweep, the default, or --mad). --only CONFIG keeps one config; --ranks N runs each cell on N MPI
# ranks; --out DIR (default runs/<name>). --slurm submits
# `sbatch --array=0-(cells-1) $SWEEP_SBATCH_ARGS` running `--task $SLURM_ARRAY_TASK_ID`
# (with --dry-run it prints that command instead). A finished cell is skipped and an
# interrupted one resumes from its checkpoint, so the same command continues a sweep.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
[[ "$1" == -h || "$1" == --help ]] && { usage; exit 0; }
exp="$1"; shift
ranks=1 out="" only="" grid="" task="" list=0 slurm=0 dry=0 bin="${MADTRAIN:-$root/build/madtrain}"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ranks) ranks="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --grid) grid="$2"; shift 2 ;;
    --task) task="$2"; shift 2 ;;
    --list) list=1; shift ;;
    --slurm) slurm=1; shift ;;
    --dry-run) dry=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "sweep: error: unknown option '$1'" >&2; exit 2 ;;
  esac
done
dir="$root/launch/configs/experiments/$exp"
[[ -d "$dir" ]] || { echo "sweep: error: no experiment '$exp'" >&2; exit 2; }
grid="${grid:-$dir/grid}"
[[ -r "$grid" || ! -r "$dir/$grid" ]] || grid="$dir/$grid"  # a name in the experiment's folder
[[ -r "$grid" ]] || { echo "sweep: error: cannot read the grid file '$grid'" >&2; exit 2; }
CELLS=() D_MODELS=() LRS=() SEEDS=(1) WDS=() REPORT=--sweep
# shellcheck source=/dev/null
source "$grid"
for v in CELLS D_MODELS LRS SEEDS; do
  declare -n arr=$v
  [[ ${#arr[@]} -gt 0 ]] || { echo "sweep: error: $grid sets no $v" >&2; exit 2; }
done
out="${out:-runs/$exp}"

# Every cell, in a fixed order: config, task cell, d_model, lr, seed.
names=() args=()
for cfg in "$dir"/*.yaml; do
  c="$(basename "$cfg" .yaml)"
  [[ -n "$only" && "$c" != "$only" ]] && continue
  for cell in "${CELLS[@]}"; do
    read -r cname ckeys <<< "$cell"
    for d in "${D_MODELS[@]}"; do
      for lr in "${LRS[@]}"; do
        for wd in "${WDS[@]:-}"; do  # no WDS: one pass, the config's decay
          for seed in "${SEEDS[@]}"; do
            names+=("$c-$cname-d$d-lr$lr${wd:+-wd$wd}-s$seed")
            args+=("$cfg|$ckeys model.d_model=$d optim.lr=$lr${wd:+ optim.weight_decay=$wd} seed=$seed run.name=$c")
          done
        done
      done
    done
  done
done
n=${#names[@]}
[[ $n -gt 0 ]] || { echo "sweep: error: no config matches '--only $only'" >&2; exit 2; }

if [[ $list == 1 ]]; then
  for i in "${!names[@]}"; do echo "$i ${names[$i]}"; done
  exit 0
fi
if [[ $slurm == 1 ]]; then
  pass=(--out "$out" --grid "$grid" --ranks "$ranks")
  [[ -n "$only" ]] && pass+=(--only "$only")
  cmd=(sbatch --array="0-$((n - 1))" ${SWEEP_SBATCH_ARGS:-} --job-name="sweep-$exp"
       --wrap "bash $root/launch/sweep.sh $exp ${pass[*]} --task \$SLURM_ARRAY_TASK_ID -- ${extra[*]}")
  if [[ $dry == 1 ]]; then printf '%q ' "${cmd[@]}"; echo; else "${cmd[@]}"; fi
  exit 0
fi
[[ -x "$bin" ]] || { echo "sweep: error: no binary '$bin' (build first: bash launch/setup.sh)" >&2; exit 2; }
if [[ -n "$task" ]] && ! [[ "$task" =~ ^[0-9]+$ && "$task" -lt $n ]]; then
  echo "sweep: error: --task $task is not a cell (0..$((n - 1)))" >&2; exit 2
fi
launch=()
if [[ "$ranks" -gt 1 ]]; then
  launch=(mpirun -n "$ranks" --oversubscribe)
  [[ $(id -u) -eq 0 ]] && launch+=(--allow-run-as-root)
fi
mkdir -p "$out"
for i in "${!names[@]}"; do
  [[ -n "$task" && "$i" != "$task" ]] && continue
  run="$out/${names[$i]}"
  if [[ "$(cat "$run/status" 2> /dev/null)" == finished ]]; then
    echo "== [$i/$n] $run: finished, skipped"
    continue
  fi
  echo "== [$i/$n] $run"
  IFS='|' read -r cfg keys <<< "${args[$i]}"
  # shellcheck disable=SC2086
  "${launch[@]}" "$bin" train --config "$cfg" $keys run.dir="$run" checkpoint.resume=auto \
    "${extra[@]}" > "$run.log" 2>&1 || {
    echo "sweep: error: $run failed (exit $?); its log: $run.log" >&2
    tail -3 "$run.log" >&2
    exit 1
  }
  grep -E '^done:' "$run.log" || true
done
[[ -n "$task" ]] && exit 0
"$bin" report "$REPORT" --csv "$out/table.csv" --plots "$out/plots" "$out" | tee "$out/table.md"
