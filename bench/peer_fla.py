#!/usr/bin/env python3
"""fla's chunked Triton kernels, forward and forward + backward: the peer of madtrain's mixer-core benchmark.

Times one call of each core of flash-linear-attention (the fla-core package) on bf16 CUDA
inputs in fla's [B, T, H, D] layout, at a fixed token count B * T (--tokens, default 65536)
and each T of --seq-lens (B = tokens / T):

  madtrain core    fla function                 inputs (random; all differentiable ones require grad)
  linear           chunk_linear_attn            q, k = elu(x) + 1, v; normalize=True (o / phi(q).sum phi(k))
  gla              chunk_gla                    q, k, v; g = logsigmoid(x) / 16, [B, T, H, D] (log-space gate per key)
  decay            chunk_simple_gla             q, k, v; g = logsigmoid(x), [B, T, H] (log-space scalar gate per head)
  deltanet         chunk_delta_rule             q, k, v; beta = sigmoid(x), [B, T, H]; use_qk_l2norm_in_kernel=True
  gated_deltanet   chunk_gated_delta_rule       as deltanet, plus g = logsigmoid(x), [B, T, H]

Only fla's op is timed. What madtrain's cores compute inside the op besides the recurrence
(the feature map, the gates' activations, the decay's Delta, GLA's head norm) is prepared
outside the timed region here, so the comparison leans towards fla. The delta rules' q/k
L2 normalisation is inside both (fla's in-kernel option).

Per (core, T): 3 warm-up calls (Triton compiles and autotunes there), then the median of 10
calls, each between two CUDA events (synchronised once, after the last call): the forward
alone (with autograd recording, as in training), and the forward plus the backward of a
random dout of the output's shape (gradients cleared before each call, outside its events).

Output: a markdown row per (core, T), and with --out FILE one JSON line each:
{"peer":"fla","core":..,"B":..,"T":..,"H":..,"D":..,"dtype":"bf16","fwd_ms":..,"fwd_bwd_ms":..,
"device":..,"fla":VERSION}. A core whose call raises gets its error in its row (and no JSON
line); the script goes on and exits 1 at the end.

fla must be importable: installed, or as the wheel in the repository's .whl/ folder (carried
to the GPU machine, see launch/gpu_check.sh), which this script then unpacks into /tmp and
imports from. Needs torch >= 2.7, triton >= 3.3 and einops.

    python3 bench/peer_fla.py --out peer_fla.jsonl
    python3 bench/peer_fla.py --cores gla,deltanet --seq-lens 4096 --heads 16 --head-dim 128
"""
import argparse
import glob
import importlib
import json
import os
import statistics
import sys
import tempfile
import zipfile

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_fla():
    # `import fla` alone succeeds without triton (its top level is lazy): import the ops.
    try:
        import fla.ops
        return sys.modules["fla"]
    except ImportError as e:
        first_error = e
    # The GPU machine has no network: the wheel travels in .whl/ and is pure Python, so
    # unpacking it onto sys.path is all an install would do.
    wheels = sorted(glob.glob(os.path.join(REPO, ".whl", "fla_core-*.whl")))
    if wheels:
        wheel = wheels[-1]
        target = os.path.join(tempfile.gettempdir(), "peer_fla_" + os.path.basename(wheel)[:-4])
        if not os.path.isdir(target):
            # Unpacked aside and renamed, so that an interrupted run leaves no half-unpacked copy.
            part = tempfile.mkdtemp(prefix="peer_fla_part_")
            with zipfile.ZipFile(wheel) as z:
                z.extractall(part)
            try:
                os.rename(part, target)
            except OSError:  # another run got there first
                pass
        sys.path.insert(0, target)
        try:
            import fla.ops  # noqa: F811
            return sys.modules["fla"]
        except ImportError as e:
            first_error = e
    print(f"peer_fla: cannot import fla's ops ({first_error}); carry the .whl folder with fla_core-*.whl "
          f"to this machine (see launch/gpu_check.sh) or pip install it", file=sys.stderr)
    sys.exit(2)


CORES = {  # madtrain core name -> fla function (module, name)
    "linear": ("fla.ops.linear_attn", "chunk_linear_attn"),
    "gla": ("fla.ops.gla", "chunk_gla"),
    "decay": ("fla.ops.simple_gla", "chunk_simple_gla"),
    "deltanet": ("fla.ops.delta_rule", "chunk_delta_rule"),
    "gated_deltanet": ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule"),
}


def leaf(x):
    return x.to(torch.bfloat16).detach().requires_grad_()


def make_inputs(core, B, T, H, D, device):
    """The differentiable inputs of one call of `core`, and the call (returning the output o)."""
    def rnd(*shape):
        return torch.randn(*shape, device=device, dtype=torch.float32)

    qkv_shape = (B, T, H, D)
    fn = getattr(importlib.import_module(CORES[core][0]), CORES[core][1])
    if core == "linear":
        # A positive feature map keeps the normaliser away from zero, as madtrain's elu1.
        t = dict(q=leaf(F.elu(rnd(*qkv_shape)) + 1), k=leaf(F.elu(rnd(*qkv_shape)) + 1), v=leaf(rnd(*qkv_shape)))
        return t, lambda: fn(t["q"], t["k"], t["v"], normalize=True)[0]
    t = dict(q=leaf(rnd(*qkv_shape)), k=leaf(rnd(*qkv_shape)), v=leaf(rnd(*qkv_shape)))
    if core == "gla":
        # /16: fla's GLA layer and madtrain's mixer.gate_norm both soften the gate this much.
        t["g"] = leaf(F.logsigmoid(rnd(*qkv_shape)) / 16)
        return t, lambda: fn(t["q"], t["k"], t["v"], t["g"])[0]
    if core == "decay":
        t["g"] = leaf(F.logsigmoid(rnd(B, T, H)))
        return t, lambda: fn(t["q"], t["k"], t["v"], g=t["g"])[0]
    t["beta"] = leaf(torch.sigmoid(rnd(B, T, H)))
    if core == "deltanet":
        return t, lambda: fn(t["q"], t["k"], t["v"], t["beta"], use_qk_l2norm_in_kernel=True)[0]
    t["g"] = leaf(F.logsigmoid(rnd(B, T, H)))
    return t, lambda: fn(t["q"], t["k"], t["v"], t["g"], t["beta"], use_qk_l2norm_in_kernel=True)[0]


def median_ms(run, before, warmup, reps):
    """Median over `reps` calls of run(), each between its own CUDA events; before() runs untimed."""
    for _ in range(warmup):
        before()
        run()
    # One synchronisation at the end, not per call: the host queues ahead, so the events see
    # the device's time rather than Python's launch latency before each first kernel.
    events = []
    for _ in range(reps):
        before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def bench_core(core, B, T, H, D, warmup, reps, device):
    tensors, call = make_inputs(core, B, T, H, D, device)
    o = call()
    dout = torch.randn_like(o)
    del o

    def clear_grads():
        for x in tensors.values():
            x.grad = None

    fwd = median_ms(call, lambda: None, warmup, reps)
    fwd_bwd = median_ms(lambda: call().backward(dout), clear_grads, warmup, reps)
    return fwd, fwd_bwd


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", default=",".join(CORES), help="comma list of " + ", ".join(CORES))
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--seq-lens", default="2048,4096,8192,16384", help="comma list of T")
    ap.add_argument("--tokens", type=int, default=65536, help="B * T, fixed across T")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10, help="timed calls; the median is reported")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", metavar="FILE", help="append one JSON line per (core, T) here")
    a = ap.parse_args()
    a.cores = [c for c in a.cores.split(",") if c]
    for c in a.cores:
        if c not in CORES:
            ap.error(f"unknown core {c!r} (one of {', '.join(CORES)})")
    try:
        a.seq_lens = [int(t) for t in a.seq_lens.split(",") if t]
    except ValueError:
        ap.error("--seq-lens takes a comma list of integers")
    for t in a.seq_lens:
        if t < 1 or a.tokens % t:
            ap.error(f"T {t} must divide --tokens {a.tokens}")
    if a.warmup < 1 or a.reps < 1:
        ap.error("--warmup and --reps must be >= 1")
    return a


def main():
    a = parse_args()
    fla = import_fla()
    if not torch.cuda.is_available():
        print("peer_fla: CUDA is not available; fla's Triton kernels need a GPU", file=sys.stderr)
        sys.exit(2)
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    version = getattr(fla, "__version__", "unknown")
    H, D = a.heads, a.head_dim
    print(f"fla {version} | torch {torch.__version__} | {name} | bf16 | B * T = {a.tokens}, H {H}, D {D} | "
          f"{a.warmup} warm-up + median of {a.reps}\n")
    print("| core | fla op | B x T | fwd ms | fwd+bwd ms | tokens/s fwd+bwd |")
    print("|---|---|---|---|---|---|")
    sys.stdout.flush()
    failed = 0
    out = open(a.out, "a") if a.out else None
    for core in a.cores:
        for T in a.seq_lens:
            B = a.tokens // T
            torch.manual_seed(a.seed)
            try:
                fwd, fwd_bwd = bench_core(core, B, T, H, D, a.warmup, a.reps, device)
            except Exception as e:  # one core's failure (a compile error, OOM) must not hide the others
                failed += 1
                msg = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")[:300]
                print(f"| {core} | {CORES[core][1]} | {B} x {T} | - | - | {msg} |")
                torch.cuda.empty_cache()
                continue
            print(f"| {core} | {CORES[core][1]} | {B} x {T} | {fwd:.3f} | {fwd_bwd:.3f} | "
                  f"{B * T / (fwd_bwd * 1e-3):.3g} |")
            sys.stdout.flush()
            if out:
                out.write(json.dumps({"peer": "fla", "core": core, "B": B, "T": T, "H": H, "D": D,
                                      "dtype": "bf16", "fwd_ms": fwd, "fwd_bwd_ms": fwd_bwd,
                                      "device": name, "fla": version}) + "\n")
                out.flush()
            torch.cuda.empty_cache()
    if out:
        out.close()
    if failed:
        print(f"\n{failed} (core, T) pair(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
