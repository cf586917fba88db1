#!/usr/bin/env python3
"""The resolved config, as madtrain writes it (config.yaml, the checkpoint's config_yaml, and
--print-config), read back by a standard YAML loader to exactly the resolved values:
- every shipped config (launch/configs/**/*.yaml), printed by --print-config, loads with PyYAML
  with no repeated key at any level, has one entry per key of `madtrain --help` with the
  type the key declares, and feeds back into madtrain to the same text (a fixed point);
- a run.name and run.dir with quotes, backslashes, a colon and non-ASCII text come back
  unchanged, from config.yaml and from the checkpoint's stored config (h5py), and the run
  can be resumed from that checkpoint;
- metrics.jsonl of that run is valid JSON on every line.
Skips (77) without PyYAML or h5py."""
import glob
import json
import os
import shutil
import subprocess
import sys

try:
    import yaml
    import h5py
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-yaml python3-h5py)")
    sys.exit(77)

madtrain, root, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
fails = 0


def check(ok, what):
    global fails
    print(("ok   " if ok else "FAIL ") + what)
    fails += not ok


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a repeated key in any mapping."""


def no_duplicates(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise yaml.constructor.ConstructorError(None, None, f"repeated keys {sorted(dup)}",
                                                node.start_mark)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, no_duplicates)


def run(*args, **kw):
    return subprocess.run([madtrain, *args], capture_output=True, text=True, cwd=work, **kw)


# The key table, with each key's declared type, from --help.
keys = {}
for line in run("--help").stdout.splitlines():
    f = line.split()
    if len(f) >= 3 and line.startswith("  ") and "." in f[0] or (f and f[0] == "seed"):
        if len(f) >= 2 and f[2:3] == ["default"]:
            keys[f[0]] = f[1]


def lookup(d, key):
    node = d
    for part in key.split("."):
        node = node[part]
    return node


def types_ok(d):
    bad = []
    for key, typ in keys.items():
        try:
            v = lookup(d, key)
        except (KeyError, TypeError):
            bad.append(f"{key} missing")
            continue
        want = {"int": int, "float": float, "bool": bool, "string": str,
                "mixer list": list}.get(typ, str)  # a|b|c choices: a name
        if type(v) is not want:
            bad.append(f"{key}: {type(v).__name__} {v!r}, declared {typ}")
    return bad


configs = sorted(glob.glob(os.path.join(root, "launch/configs/**/*.yaml"), recursive=True))
check(len(configs) >= 10, f"{len(configs)} shipped configs found")
check(len(keys) >= 60, f"{len(keys)} keys listed by --help")
for path in configs:
    name = os.path.relpath(path, root)
    p = run("--config", path, "--print-config")
    if p.returncode:
        check(False, f"{name}: --print-config exit {p.returncode}: {p.stderr.strip()}")
        continue
    try:
        d = yaml.load(p.stdout, Loader=StrictLoader)
    except yaml.YAMLError as e:
        check(False, f"{name}: PyYAML: {e}")
        continue
    bad = types_ok(d)
    check(not bad, f"{name}: every key once, with its declared type {bad[:3]}")
    with open(os.path.join(work, "again.yaml"), "w") as f:
        f.write(p.stdout)
    again = run("--config", "again.yaml", "--print-config").stdout
    check(again == p.stdout, f"{name}: the printed config reads back to the same text")
    with open(path) as f:  # the values the file sets, exactly
        given = yaml.safe_load(f)

    def same(v, got):  # PyYAML reads 1e-3 (no '.') as a string; one mixer is a 1-list
        if isinstance(got, float) and isinstance(v, (str, int)):
            return float(v) == got
        if isinstance(got, list) and isinstance(v, str):
            return got == [x.strip() for x in v.split(",")]
        return v == got
    diffs = [f"{s}.{k}" for s, sub in given.items() if isinstance(sub, dict)
             for k, v in sub.items() if not same(v, lookup(d, f"{s}.{k}"))]
    check(not diffs, f"{name}: every value the file sets comes back equal {diffs[:3]}")

# Strings that a hand-written writer breaks: quotes, backslashes, a colon, non-ASCII.
label = 'run "α": c:\\x\\\\y'
rundir = os.path.join(work, 'dir "q" \\ b')
p = run("--config", os.path.join(root, "launch/configs/mqar-small.yaml"), f"run.name={label}",
        f"run.dir={rundir}", "train.steps=4", "train.log_every=1", "train.eval_every=2",
        "checkpoint.every_steps=2", "cpu.threads=1")
check(p.returncode == 0, f"a run with run.name {label!r} trains (exit {p.returncode}) {p.stderr[-300:]}")
if p.returncode == 0:
    d = yaml.load(open(os.path.join(rundir, "config.yaml")), Loader=StrictLoader)
    check(d["run"]["name"] == label and d["run"]["dir"] == rundir,
          f"config.yaml gives back run.name and run.dir exactly: {d['run']}")
    with h5py.File(os.path.join(rundir, "ckpt-00000004.h5"), "r") as f:
        stored = f.attrs["config_yaml"]
        stored = stored.decode() if isinstance(stored, bytes) else stored
    ds = yaml.load(stored, Loader=StrictLoader)
    check(ds["run"]["name"] == label, "the checkpoint's stored config gives back run.name")
    lines = open(os.path.join(rundir, "metrics.jsonl")).read().splitlines()
    bad = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line[:80])
    check(lines and not bad, f"metrics.jsonl: {len(lines)} lines, all JSON {bad[:2]}")
    r = run("--config", os.path.join(root, "launch/configs/mqar-small.yaml"),
            f"run.name={label}", f"run.dir={rundir}", "train.steps=6", "train.log_every=1",
            "train.eval_every=2", "checkpoint.every_steps=2", "cpu.threads=1", "--resume", "auto")
    check(r.returncode == 0 and "resume:" in r.stdout,
          f"resumes from that checkpoint (exit {r.returncode}) {r.stderr[-300:]}")

print(f"{'PASSED' if not fails else 'FAILED'}: {fails} failure(s)")
sys.exit(1 if fails else 0)
