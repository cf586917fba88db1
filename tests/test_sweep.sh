#!/usr/bin/env bash
# launch/sweep.sh runs every cell of a grid experiment (here the zoology-mqar configs on a tiny
# grid: one task cell, two widths, two learning rates, for a few steps), `--task I` runs
# exactly cell I, `--slurm --dry-run` sizes the job array, and `madtrain report --sweep` keeps
# per mixer and width the learning rate whose runs had the best held-out accuracy (checked
# here against the runs' own metrics).
set -uo pipefail
bin="$1" root="$2" work="$3"
rm -rf "$work" && mkdir -p "$work"
fail=0
check() { if ! eval "$1"; then echo "FAIL: $2"; fail=1; fi; }
cat > "$work/tiny.grid" <<'G'
CELLS=("T16 data.seq_len=16 data.num_kv_pairs=2 data.vocab_size=32 train.batch_size=16")
D_MODELS=(16 32)
LRS=(1e-3 1e-2)
SEEDS=(1)
G
args=(zoology-mqar --grid "$work/tiny.grid" --out "$work/sweep" --
      train.epochs=0 train.steps=12 train.eval_every=4 train.log_every=4 data.train_examples=0
      data.valid_examples=64 data.test_examples=64 model.n_heads=2)
n_cfg=$(ls "$root/launch/configs/experiments/zoology-mqar"/*.yaml | wc -l)
n=$(bash "$root/launch/sweep.sh" zoology-mqar --grid "$work/tiny.grid" --list | wc -l)
check "[[ $n -eq $((n_cfg * 4)) ]]" "--list gives $n cells, expected $((n_cfg * 4))"
MADTRAIN="$bin" bash "$root/launch/sweep.sh" "${args[@]}" > "$work/sweep.out" 2>&1
rc=$?
check "[[ $rc -eq 0 ]]" "sweep.sh exit $rc ($(tail -3 "$work/sweep.out"))"
rows=$(grep -c '^| [a-z_0-9]* | 16 | 2 | ' "$work/sweep/table.md")
check "[[ $rows -eq $((n_cfg * 2)) ]]" "$rows table rows, expected $((n_cfg * 2)) (mixers x widths)"
check "[[ -s $work/sweep/table.csv && -s $work/sweep/plots/sweep.gp ]]" "no CSV or plot script"
# The kept rate: the one whose run had the higher best validation accuracy (ties: the smaller).
for m in softmax gla mamba2; do
  for d in 16 32; do
    best=$(for lr in 1e-3 1e-2; do
      grep '"split":"valid"' "$work/sweep/$m-T16-d$d-lr$lr-s1/metrics.jsonl" \
        | sed 's/.*"acc":\([0-9.e+-]*\).*/\1/' | sort -g | tail -1 | sed "s/\$/ $lr/"
    done | sort -k1,1gr -k2,2g | head -1 | awk '{print $2}')
    got=$(awk -F' \\| ' -v m="$m" -v d="$d" '$1 == "| " m && $4 == d { print $5 }' "$work/sweep/table.md")
    check "awk 'BEGIN { exit !($got == $best) }'" "$m d $d: report kept lr $got, the runs say $best"
  done
done
# One cell of a job array, and the array's size.
MADTRAIN="$bin" bash "$root/launch/sweep.sh" zoology-mqar --grid "$work/tiny.grid" \
  --out "$work/one" --task 3 -- "${args[@]:6}" > "$work/one.out" 2>&1
check "[[ \$(ls -d $work/one/*/ | wc -l) -eq 1 && -d $work/one/$(bash "$root/launch/sweep.sh" zoology-mqar --grid "$work/tiny.grid" --list | awk '$1 == 3 { print $2 }') ]]" "--task 3 did not run exactly cell 3"
bash "$root/launch/sweep.sh" zoology-mqar --grid "$work/tiny.grid" --slurm --dry-run \
  | grep -q -- "--array=0-$((n - 1)) " || { echo "FAIL: --slurm --dry-run does not ask for $n tasks"; fail=1; }
# Bad input: one line, exit 2.
out=$(bash "$root/launch/sweep.sh" zoology-mqar --grid "$work/tiny.grid" --task 999 2>&1); rc=$?
check "[[ $rc -eq 2 && \"$out\" == *'--task 999 is not a cell'* ]]" "--task 999: exit $rc, '$out'"
out=$(bash "$root/launch/sweep.sh" zoology-mqar --grid "$work/none.grid" 2>&1); rc=$?
check "[[ $rc -eq 2 && \"$out\" == *'cannot read the grid file'* ]]" "missing grid: exit $rc, '$out'"
# The MAD suite's report: per task setting, the (lr, wd) whose run had the best test macro
# accuracy (checked against the runs' last test evaluations), and its score in the task table.
cat > "$work/mad.grid" <<'G'
REPORT=--mad
CELLS=(
  "icr data.task=in_context_recall data.vocab_size=16 data.seq_len=32 data.train_examples=64 train.epochs=1 train.batch_size=16 data.test_examples=32"
  "memo data.task=memorization data.vocab_size=32 data.seq_len=16 data.train_examples=64 train.epochs=2 train.batch_size=16 data.test_examples=32"
)
D_MODELS=(16)
LRS=(1e-3 1e-2)
WDS=(0 0.1)
G
MADTRAIN="$bin" bash "$root/launch/sweep.sh" mad --grid "$work/mad.grid" --only linear \
  --out "$work/mad" -- model.n_heads=2 cpu.threads=1 > "$work/mad.out" 2>&1
rc=$?
check "[[ $rc -eq 0 ]]" "sweep.sh mad exit $rc ($(tail -3 "$work/mad.out"))"
for task in icr memo; do
  name=$([[ $task == icr ]] && echo in_context_recall || echo memorization)
  want=$(for lr in 1e-3 1e-2; do for wd in 0 0.1; do
      grep '"split":"test"' "$work/mad/linear-$task-d16-lr$lr-wd$wd-s1/metrics.jsonl" | tail -1 \
        | sed 's/.*"acc_macro":\([0-9.e+-]*\).*/\1/'
    done; done | sort -g | tail -1)
  got=$(awk -F' \\| ' -v t="$name" '$2 == t && NF > 7 { print $7; exit }' "$work/mad/table.md")
  check "awk 'BEGIN { exit !($got - $want < 1e-4 && $want - $got < 1e-4) }'" "mad $task: report's best macro $got, the runs' best $want"
  score=$(awk -F' \\| ' '/MAD.s score/ { f = 1 } f && $1 == "| linear" { print; exit }' "$work/mad/table.md")
  check "[[ \"$score\" == *\"$got\"* ]]" "mad $task: the task table does not carry $got ($score)"
done
# The state-tracking configs train a few steps each on a word problem with length buckets.
cat > "$work/st.grid" <<'G'
REPORT=--tasks
CELLS=("A5 data.task=word_problem data.group=A5 data.seq_len=24 data.max_len=8 data.test_min_len=8 data.test_max_len=24 data.train_examples=64 train.epochs=1 train.batch_size=16 data.valid_examples=16 data.test_examples=32")
D_MODELS=(16)
LRS=(1e-3)
G
MADTRAIN="$bin" bash "$root/launch/sweep.sh" state-tracking --grid "$work/st.grid" \
  --out "$work/st" -- model.n_heads=2 cpu.threads=1 > "$work/st.out" 2>&1
rc=$?
n_st=$(ls "$root/launch/configs/experiments/state-tracking"/*.yaml | wc -l)
rows=$(grep -c '^| [a-z_0-9]* | word_problem | A5, .* | [0-9.]* | [0-9.]* |\( [0-9.]* |\)\{6\} - |$' "$work/st/table.md")
check "[[ $rc -eq 0 && ${rows:-0} -eq $n_st ]]" "state-tracking: exit $rc, $rows rows with 4 length buckets, expected $n_st ($(tail -3 "$work/st.out"))"
[[ $fail -eq 0 ]] && echo ok
exit $fail
