#!/usr/bin/env python3
"""madtrain against its peers: markdown tables from the benchmarks' JSON lines.

Reads every JSONL file given and sorts its lines by their keys:

  madtrain bench (`madtrain bench --out`)     "shape", "mixer", "tokens_per_s", "mfu", "peak_memory_bytes", ...
  madtrain's mixer-core benchmark             "core", "B", "T", "H", "D", "fwd_ms", "fwd_bwd_ms", no "peer"
  bench/peer_gpt2.py                          "peer": "pytorch", "shape", "tokens_per_s", ...
  bench/peer_fla.py                           "peer": "fla", "core", "B", "T", "H", "D", "fwd_bwd_ms", ...

and prints two tables:

(a) GPT-2 small (and any other shape a PyTorch peer line names): madtrain's softmax row
    against the PyTorch peer of the same shape, one row per madtrain precision (its
    "precision" key, else bf16 / fp32 / fp16 found in the file's name, else "-"): tokens/s,
    MFU and peak memory of each, the ratio madtrain / pytorch of tokens/s, and whether the
    floors hold: madtrain's MFU >= 40% and the ratio >= 1.0x.
(b) per core and (B, T, H, D): madtrain's and fla's forward + backward ms and the speed
    ratio fla_ms / madtrain_ms (> 1: madtrain is faster), against the floor of 1.0x for
    linear and gla and 0.8x for every other core.

A missing counterpart prints "-" and its floor is not judged. Floors are judged on bf16 rows
and rows of unknown precision only: the GEMM peak and both peers are bf16, so an fp32 row is
shown for information. When a file holds several
lines for the same row, the last one counts. Lines of other kinds are skipped.

    python3 bench/compare.py gpu-out/bench_bf16.jsonl gpu-out/bench_fp32.jsonl \\
        peer_gpt2.jsonl cores.jsonl peer_fla.jsonl
    python3 bench/compare.py --check ...   # exit 1 when a judged floor is not met
"""
import argparse
import json
import os
import re
import sys

MFU_FLOOR = 0.40
GPT2_RATIO_FLOOR = 1.0
CORE_FLOORS = {"linear": 1.0, "gla": 1.0}  # the rest: DEFAULT_CORE_FLOOR
DEFAULT_CORE_FLOOR = 0.8
CORE_ORDER = ["linear", "gla", "decay", "deltanet", "gated_deltanet"]


def precision_of(row, path):
    if row.get("precision"):
        return str(row["precision"])
    # madtrain bench writes no precision key; launch/gpu_check.sh names its files by it
    m = re.search(r"(bf16|fp16|fp32|tf32)", os.path.basename(path))
    return m.group(1) if m else "-"


def judged_precision(prec):
    return prec in ("bf16", "-")


def load(paths):
    bench, cores, gpt2_peers, fla = {}, {}, {}, {}
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    print(f"compare: {path}:{n}: not JSON, skipped", file=sys.stderr)
                    continue
                if not isinstance(r, dict):
                    continue
                peer = r.get("peer")
                if peer == "pytorch" and "tokens_per_s" in r:
                    gpt2_peers[r.get("shape", "-")] = r
                elif peer == "fla" and "fwd_bwd_ms" in r:
                    fla[core_key(r)] = r
                elif peer is None and "mixer" in r and "tokens_per_s" in r:
                    bench[(r.get("shape", "-"), r["mixer"], precision_of(r, path))] = r
                elif peer is None and "core" in r and "fwd_bwd_ms" in r:
                    cores[core_key(r) + (precision_of(r, path),)] = r
    return bench, cores, gpt2_peers, fla


def core_key(r):
    return (r["core"], r.get("B"), r.get("T"), r.get("H"), r.get("D"))


def si(x):
    if x is None:
        return "-"
    for unit in ("", "k", "M", "G", "T"):
        if abs(x) < 1000:
            return f"{x:.3g}{unit}"
        x /= 1000
    return f"{x:.3g}P"


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def mib(x):
    return "-" if x is None else f"{x / 2 ** 20:.0f} MiB"


def verdict(ok):
    return "-" if ok is None else ("yes" if ok else "**no**")


def gpt2_table(bench, peers):
    """Rows of table (a) and the judged floors as booleans."""
    shapes = set(peers) | {s for (s, m, _) in bench if m == "softmax" and s.startswith("gpt2")}
    shapes = sorted(shapes, key=lambda s: (s != "gpt2-small", s))
    rows, judged = [], []
    for shape in shapes:
        peer = peers.get(shape)
        mine = sorted(((p, r) for (s, m, p), r in bench.items() if s == shape and m == "softmax"),
                      key=lambda pr: pr[0])
        for prec, r in mine or [("-", None)]:
            tok = r and r.get("tokens_per_s")
            ptok = peer and peer.get("tokens_per_s")
            ratio = tok / ptok if tok and ptok else None
            mfu = r and r.get("mfu")
            mfu_ok = None if mfu is None or not judged_precision(prec) else mfu >= MFU_FLOOR
            ratio_ok = None if ratio is None or not judged_precision(prec) else ratio >= GPT2_RATIO_FLOOR
            judged += [x for x in (mfu_ok, ratio_ok) if x is not None]
            shape_bt = [f"{x['batch']} x {x['T']}" for x in (r, peer) if x and "batch" in x and "T" in x]
            bt = " / ".join(dict.fromkeys(shape_bt)) or "-"
            how = "" if not peer else (" (compiled)" if peer.get("compiled") else " (eager)")
            rows.append(f"| {shape} | {prec} | {bt} | {si(tok)} | {si(ptok)}{how} | "
                        f"{pct(mfu)} | {pct(peer and peer.get('mfu'))} | "
                        f"{mib(r and r.get('peak_memory_bytes'))} | {mib(peer and peer.get('peak_memory_bytes'))} | "
                        f"{'-' if ratio is None else f'{ratio:.2f}x'} | {verdict(mfu_ok)} | {verdict(ratio_ok)} |")
    return rows, judged


def core_table(cores, fla):
    keys = set(cores) | {k + (None,) for k in fla if not any(c[:5] == k for c in cores)}
    order = {c: i for i, c in enumerate(CORE_ORDER)}
    keys = sorted(keys, key=lambda k: (order.get(k[0], len(order)), k[0], k[2] or 0, k[1] or 0,
                                       k[3] or 0, k[4] or 0, k[5] or ""))
    rows, judged = [], []
    for core, B, T, H, D, prec in keys:
        mine = cores.get((core, B, T, H, D, prec)) if prec is not None else None
        peer = fla.get((core, B, T, H, D))
        ms = mine and mine.get("fwd_bwd_ms")
        fms = peer and peer.get("fwd_bwd_ms")
        ratio = fms / ms if ms and fms else None
        floor = CORE_FLOORS.get(core, DEFAULT_CORE_FLOOR)
        ok = None if ratio is None or not judged_precision(prec) else ratio >= floor
        if ok is not None:
            judged.append(ok)
        rows.append(f"| {core} | {B} x {T} | {H} x {D} | {prec or '-'} | {'-' if ms is None else f'{ms:.3f}'} | "
                    f"{'-' if fms is None else f'{fms:.3f}'} | {'-' if ratio is None else f'{ratio:.2f}x'} | "
                    f"{floor:.1f}x | {verdict(ok)} |")
    return rows, judged


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="JSONL files from madtrain bench, its core benchmark and the peers")
    ap.add_argument("--check", action="store_true", help="exit 1 when a judged floor is not met")
    a = ap.parse_args()
    bench, cores, peers, fla = load(a.files)
    judged = []

    print(f"## GPT-2 small: madtrain (softmax) vs PyTorch\n\nFloors: madtrain MFU >= {MFU_FLOOR:.0%}, "
          f"tokens/s madtrain / pytorch >= {GPT2_RATIO_FLOOR:.1f}x.\n")
    print("| shape | precision | batch x T | madtrain tok/s | pytorch tok/s | madtrain MFU | pytorch MFU | "
          "madtrain peak mem | pytorch peak mem | madtrain / pytorch | MFU floor | 1.0x floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows, j = gpt2_table(bench, peers)
    judged += j
    print("\n".join(rows) if rows else "| - | - | - | - | - | - | - | - | - | - | - | - |")

    print(f"\n## Mixer cores: madtrain vs fla (forward + backward)\n\nRatio = fla ms / madtrain ms "
          f"(> 1: madtrain faster). Floors: 1.0x on linear and gla, {DEFAULT_CORE_FLOOR}x on the rest.\n")
    print("| core | B x T | H x D | precision | madtrain ms | fla ms | fla / madtrain | floor | met |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows, j = core_table(cores, fla)
    judged += j
    print("\n".join(rows) if rows else "| - | - | - | - | - | - | - | - | - |")

    failed = judged.count(False)
    print(f"\n{len(judged) - failed} floor(s) met, {failed} not met")
    if a.check and failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
