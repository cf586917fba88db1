#!/usr/bin/env bash
# train.profile_step: the step named is timed by phase (data, forward and backward of every
# layer, the all-reduce wait, norm, optimizer) in a table and one metrics event whose phases sum
# to the step; micro-steps sum into one row each; profiling leaves the training bitwise alone;
# under 2 ranks with ZeRO-1 the optimizer row names the all-gather and only rank 0 prints;
# madtrain report shows the step's phase columns.
set -euo pipefail
madtrain=$1 params_diff=$2 work=$3
rm -rf "$work"; mkdir -p "$work"
common=(model.n_layers=3 model.d_model=32 train.steps=4 train.log_every=2 train.grad_accum=2
        train.eval_every=0 data.test_examples=64 device=cpu cpu.threads=1 checkpoint.every_steps=0)
"$madtrain" train "${common[@]}" train.profile_step=3 run.dir="$work/profiled" > "$work/profiled.log"
"$madtrain" train "${common[@]}" run.dir="$work/plain" > "$work/plain.log"
"$params_diff" "$work/profiled/final_state.bin" "$work/plain/final_state.bin" --bitwise
[[ $(grep -c '^phases of step' "$work/plain.log" || true) == 0 ]] \
  || { echo "FAIL: a run without train.profile_step printed phases"; exit 1; }
python3 - "$work/profiled/metrics.jsonl" "$work/profiled.log" 3 optimizer <<'PY'
import json, sys
metrics, log, layers, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
events = [e for e in map(json.loads, open(metrics)) if e.get("event") == "phases"]
assert len(events) == 1 and events[0]["step"] == 3, events
e = events[0]
names = [p["phase"] for p in e["phases"]]
want = (["data", "forward embedding"] + [f"forward layer {l}" for l in range(layers)]
        + ["forward head and loss", "backward head"]
        + [f"backward layer {l}" for l in reversed(range(layers))]
        + ["backward embedding", "gradient all-reduce (wait)", "loss sums and gradient norm", last])
assert names == want, names
ms = [p["ms"] for p in e["phases"]]
assert all(x >= 0 for x in ms) and e["step_ms"] > 0, e
assert abs(sum(ms) - e["step_ms"]) <= 1e-6 * e["step_ms"] + 1e-3, (sum(ms), e["step_ms"])
# two micro-steps: each forward and backward row holds both, the others one mark each
counts = {p["phase"]: p["count"] for p in e["phases"]}
assert all(counts[n] == (2 if n.startswith(("forward", "backward")) else 1) for n in names), counts
# the layers do the work: together they take most of the step (a mark in the wrong place
# would move their time elsewhere)
layer_ms = sum(p["ms"] for p in e["phases"] if " layer " in p["phase"])
assert layer_ms > 0.5 * e["step_ms"], (layer_ms, e["step_ms"])
table = [l for l in open(log) if l.startswith("| ")]
assert len(table) == len(want) + 2 and table[-1].startswith("| step |"), table
print(f"ok: {len(names)} phases summing to the {e['step_ms']:.2f} ms step, layers {layer_ms:.2f} ms")
PY
# madtrain report: the phase columns of the profiled run, summing to no more than its step;
# none for a run without a profiled step
"$madtrain" report "$work/profiled" > "$work/report.md"
"$madtrain" report "$work/plain" > "$work/report-plain.md"
python3 - "$work/report.md" "$work/report-plain.md" "$work/profiled/metrics.jsonl" <<'PY'
import json, sys
head, _, row = [l for l in open(sys.argv[1]) if l.startswith("|")][:3]
cells = dict(zip([c.strip() for c in head.strip().strip("|").split("|")],
                 [c.strip() for c in row.strip().strip("|").split("|")]))
e = [e for e in map(json.loads, open(sys.argv[3])) if e.get("event") == "phases"][0]
fwd = sum(p["ms"] for p in e["phases"] if p["phase"].startswith("forward"))
cols = [float(cells[k]) for k in ("step ms", "fwd ms", "bwd ms", "reduce ms", "optim ms")]
assert abs(cols[0] - e["step_ms"]) < 0.01 and abs(cols[1] - fwd) < 0.01, (cells, e)
assert sum(cols[1:]) <= cols[0] + 0.02, cols
assert "step ms" not in open(sys.argv[2]).read(), "phase columns for a run without phases"
print("ok: report: step, fwd, bwd, reduce, optim ms", cols)
PY
if command -v mpirun > /dev/null; then
  mpirun --allow-run-as-root --oversubscribe --bind-to none -n 2 "$madtrain" train "${common[@]}" \
    train.profile_step=2 optim.zero=1 run.dir="$work/zero" > "$work/zero.log"
  [[ $(grep -c '^phases of step 2 on rank 0' "$work/zero.log") == 1 ]] \
    || { echo "FAIL: 2 ranks: want one phase table, from rank 0"; exit 1; }
  python3 - "$work/zero/metrics.jsonl" "$work/zero.log" 3 "optimizer and ZeRO all-gather" <<'PY'
import json, sys
e = [e for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "phases"]
assert len(e) == 1 and e[0]["phases"][-1]["phase"] == sys.argv[4], e
print("ok: 2 ranks with ZeRO-1: one table, the optimizer row names the all-gather")
PY
fi
# a bad value is one line and exit 2
rc=0; "$madtrain" train train.profile_step=-1 > /dev/null 2> "$work/err" || rc=$?
[[ $rc == 2 && $(wc -l < "$work/err") == 1 ]] && grep -q "train.profile_step" "$work/err" \
  || { echo "FAIL: train.profile_step=-1: exit $rc"; cat "$work/err"; exit 1; }
echo "ok: train.profile_step=-1 refused: $(cat "$work/err")"
