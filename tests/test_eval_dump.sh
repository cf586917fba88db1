#!/usr/bin/env bash
# `madtrain eval --dump FILE.h5`: every evaluated position's id, target, prediction, loss and
# level, one group per split. Checked: the dump's own micro accuracy and mean loss equal the
# figures the evaluation logged; 2 ranks write the same file as 1 (h5diff); a path that cannot
# be written fails with one line and leaves no file; --dump outside eval is refused.
set -uo pipefail
bin="$1" work="$2"
rm -rf "$work" && mkdir -p "$work"
fail=0
check() { if ! eval "$1"; then echo "FAIL: $2"; fail=1; fi; }
common=(data.task=hcopy data.seq_len=32 data.copy_tokens=6 data.copy_levels=3 data.copy_delay=3
        data.copy_symbols=4 model.d_model=16 model.n_heads=2 model.n_layers=1 train.batch_size=8
        data.train_examples=64 data.valid_examples=24 data.test_examples=40 cpu.threads=1)
"$bin" train "${common[@]}" train.steps=80 optim.lr=1e-2 run.dir="$work/run" > "$work/train.out" 2>&1
check "[[ $? -eq 0 ]]" "training failed: $(tail -2 "$work/train.out")"
"$bin" eval "${common[@]}" --resume "$work/run" run.dir="$work/run" --dump "$work/d1.h5" > "$work/e1.out" 2>&1
check "[[ $? -eq 0 && -s $work/d1.h5 ]]" "eval --dump failed: $(tail -2 "$work/e1.out")"
check "[[ -z \$(ls $work | grep '\.tmp\.') ]]" "a temporary file was left behind"
if /usr/bin/python3 -c "import h5py, numpy" 2> /dev/null; then
  /usr/bin/python3 - "$work/d1.h5" "$work/run/metrics.jsonl" <<'PY' || fail=1
import json, sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
logged = [json.loads(l) for l in open(sys.argv[2]) if '"event":"eval"' in l]
bad = 0
for split in ("valid", "test"):
    g = f[split]
    t, p, loss, lv = g["targets"][:], g["predictions"][:], g["losses"][:], g["levels"][:]
    m = t >= 0
    want = [e for e in logged if e["split"] == split][-1]
    micro, mean_loss = (p[m] == t[m]).mean(), loss[m].mean()
    ok = (abs(micro - want["acc_micro"]) < 1e-6 and abs(mean_loss - want["loss"]) < 1e-4 * max(1, want["loss"])
          and t.shape == (want["examples"], 32) and (p[~m] == -1).all() and (loss[~m] == 0).all()
          and ((lv > 0) == m).all() and g.attrs["step"] == 80)
    print(("ok" if ok else "FAIL") + f": {split}: dump micro {micro:.6f} loss {mean_loss:.6f}, logged {want['acc_micro']:.6f} {want['loss']:.6f}")
    bad += not ok
sys.exit(bad)
PY
else
  echo "skip: python3-h5py not installed; the dump's figures are not compared with the log"
fi
if command -v mpirun > /dev/null && command -v h5diff > /dev/null; then
  mpirun --allow-run-as-root --oversubscribe -n 2 "$bin" eval "${common[@]}" --resume "$work/run" \
    run.dir="$work/run" --dump "$work/d2.h5" > "$work/e2.out" 2>&1
  check "[[ $? -eq 0 ]]" "eval --dump on 2 ranks failed: $(tail -2 "$work/e2.out")"
  for split in valid test; do
    for ds in ids targets predictions levels; do
      check "h5diff $work/d1.h5 $work/d2.h5 /$split/$ds /$split/$ds > /dev/null" "2 ranks: /$split/$ds differs from 1 rank"
    done
    check "h5diff -p 1e-5 $work/d1.h5 $work/d2.h5 /$split/losses /$split/losses > /dev/null" "2 ranks: /$split/losses differ beyond 1e-5"
  done
fi
out=$("$bin" eval "${common[@]}" --resume "$work/run" run.dir="$work/run" --dump "$work/no/such/dir/d.h5" 2>&1 >/dev/null); rc=$?
check "[[ $rc -eq 1 && \"$out\" == \"madtrain: error: eval --dump: cannot create '$work/no/such/dir/d.h5'\" ]]" "unwritable dump: exit $rc, '$out'"
out=$("$bin" train "${common[@]}" run.dir="$work/run2" --dump "$work/x.h5" 2>&1 >/dev/null); rc=$?
check "[[ $rc -eq 2 && \"$out\" == 'madtrain: error: --dump is an option of madtrain eval' && ! -e $work/run2 ]]" "--dump with train: exit $rc, '$out'"
[[ $fail -eq 0 ]] && echo ok
exit $fail
