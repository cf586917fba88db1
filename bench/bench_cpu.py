#!/usr/bin/python3
"""CPU training throughput: madtrain vs. the same model in plain PyTorch.

Trains one model shape for a fixed number of steps in madtrain and in PyTorch on the
same cores, one after the other, and prints tokens/s of each and their ratio, one row
per mixer (softmax, linear, cosformer, loglinear) and shape preset, then a summary of
the ratios.

    /usr/bin/python3 bench/bench_cpu.py [--madtrain build/madtrain] [--steps 20] ...

`--madtrain none` runs only the PyTorch half (useful before madtrain is built).
Needs /usr/bin/python3 (Debian's python3-torch); other interpreters may lack torch.
"""
import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


# The shapes of the users' CPU experiments (issue #14): E008 (d 32, T 128), E029 (d 64, T 64),
# the quick start (d 64, T 64, no MLP) and the d 256 shape where both sides are BLAS-bound.
SHAPES = {
    "d256": dict(d_model=256, layers=4, heads=4, seq_len=256, batch=16, vocab=8192, mlp="gelu"),
    "e008": dict(d_model=32, layers=2, heads=2, seq_len=128, batch=64, vocab=64, mlp="gelu"),
    "e029": dict(d_model=64, layers=2, heads=4, seq_len=64, batch=64, vocab=64, mlp="gelu"),
    "quickstart": dict(d_model=64, layers=2, heads=4, seq_len=64, batch=64, vocab=64, mlp="none"),
}


MIXERS = ("softmax", "linear", "cosformer", "loglinear")


def apply_shape(a, name):
    a.shape = name
    for k, v in SHAPES[name].items():
        setattr(a, k, a.overrides.get(k, v))


# Debian's torch calls GEMMs in the pthread build of OpenBLAS, whose pool
# torch.set_num_threads does not reach; it must be sized through the environment before
# torch loads, or PyTorch would run on more threads than --threads says. Hence args first.
def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--madtrain", default="/work/main/build/madtrain", help="binary, or 'none' to skip")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    ap.add_argument("--mixers", default="softmax,linear")
    ap.add_argument("--shape", default="d256",
                    help="model/batch preset(s): " + ", ".join(sorted(SHAPES)) + ", a comma list, or all; "
                         "the flags below override their fields")
    for flag in ("d-model", "layers", "heads", "seq-len", "batch", "vocab"):
        ap.add_argument("--" + flag, type=int, default=None)
    ap.add_argument("--mlp", choices=("gelu", "none"), default=None)
    ap.add_argument("--ranks", type=int, default=None,
                    help="madtrain's MPI ranks, each with threads / ranks threads (default: one rank per "
                         "thread when mpirun is on PATH, madtrain's fastest CPU layout, docs/performance.md; "
                         "1 runs it without mpirun)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="alternate madtrain and PyTorch this many times per mixer; medians reported")
    ap.add_argument("--json", metavar="OUT", help="also write the results here as JSON")
    a = ap.parse_args()
    a.shapes = list(SHAPES) if a.shape == "all" else [x for x in a.shape.split(",") if x]
    for name in a.shapes:
        if name not in SHAPES:
            ap.error(f"unknown shape {name!r} (one of {', '.join(sorted(SHAPES))}, or all)")
    a.overrides = {k: getattr(a, k) for k in SHAPES["d256"] if getattr(a, k) is not None}
    apply_shape(a, a.shapes[0])
    if a.repeat < 1:
        ap.error("--repeat must be >= 1")
    if a.ranks is None:
        a.ranks = a.threads if shutil.which("mpirun") else 1
    if a.ranks < 1 or a.threads % a.ranks:
        ap.error(f"--ranks {a.ranks} must be >= 1 and divide --threads {a.threads}")
    if a.steps < 1 or a.warmup < 1:
        ap.error("--steps and --warmup must be >= 1 (madtrain's rate starts at the warm-up line)")
    for name in a.shapes:
        apply_shape(a, name)
        if a.d_model % a.heads or (a.d_model // a.heads) % 2:
            ap.error(f"shape {name}: d_model / heads must be an even integer (rotary pairs dims)")
    a.mixers = [m for m in a.mixers.split(",") if m]
    for m in a.mixers:
        if m not in MIXERS:
            ap.error(f"unknown mixer {m!r} (one of {', '.join(MIXERS)})")
    return a


ARGS = parse_args() if __name__ == "__main__" else None
MADTRAIN_ENV = dict(os.environ)  # madtrain gets the caller's environment untouched
if ARGS:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))
    # PyTorch's OpenMP threads spin between ops by default; passive waiting is what the issue
    # measured with, and what a shared 2-core machine needs (madtrain's env stays untouched).
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    # Debian's OpenBLAS 0.3.21 does not recognise recent CPUs and falls back to its SSE3 kernels;
    # madtrain re-executes itself with the kernels the CPU supports (src/util.c). PyTorch here
    # calls GEMMs through the same OpenBLAS, so it gets the kernels madtrain chose: a difference
    # in BLAS build must not pass for a difference in the trainers.
    if ARGS.madtrain != "none" and "OPENBLAS_CORETYPE" not in os.environ:
        out = subprocess.run([ARGS.madtrain, "--version"], capture_output=True, text=True).stdout
        core = out.split("OpenBLAS kernels ")[1].split(")")[0] if "OpenBLAS kernels " in out else ""
        if core and " " not in core:
            os.environ["OPENBLAS_CORETYPE"] = core

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE")  # shown in the header

# madtrain's defaults that affect the work per step; PyTorch mirrors them so that both
# sides do the same arithmetic (clipping costs a pass over all gradients).
LR, WEIGHT_DECAY, BETAS, GRAD_CLIP, NORM_EPS, ATTN_EPS, INIT_STD = 1e-3, 0.1, (0.9, 0.95), 1.0, 1e-5, 1e-6, 0.02


# ---------------------------------------------------------------------------------------
# PyTorch reference: written the way a researcher prototypes it, not tuned.

class RMSNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * self.weight


def rotate(x, cos, sin):
    # Half-split (GPT-NeoX) rotary: dim j pairs with dim j + D/2, as madtrain does.
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Mixer(nn.Module):
    def __init__(self, kind, c, n_heads, seq_len):
        super().__init__()
        self.kind, self.h, self.d = kind, n_heads, c // n_heads
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.wo = nn.Linear(c, c, bias=False)
        t = torch.arange(seq_len, dtype=torch.float32)
        # Built once: with a fixed T the masks and angles are constants, and rebuilding
        # them every step would charge PyTorch for work madtrain does not do.
        self.register_buffer("future", torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), 1))
        self.register_buffer("causal", torch.tril(torch.ones(seq_len, seq_len)))
        freq = 10000.0 ** (-2.0 * torch.arange(self.d // 2, dtype=torch.float32) / self.d)
        ang = t[:, None] * freq[None, :]
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())
        if kind == "cosformer":  # relu features re-weighted by cos(pi/2 (t - s) / M), M = T
            self.register_buffer("cos_decay", torch.cos(math.pi / 2 * (t[:, None] - t[None, :]) / seq_len)
                                 * self.causal)
        if kind == "loglinear":
            # Log-linear attention (Guo et al.): source s <= t sits in Fenwick level
            # bit_length(t XOR s) and is weighted by lambda_t^(level) = softplus(x_t W + b),
            # per head; W starts at 0 and b at log(e - 1), so every lambda starts at 1 (madtrain's
            # initialisation).
            self.levels = max(1, math.ceil(math.log2(seq_len))) + 1
            ti = torch.arange(seq_len)
            xor = ti[:, None] ^ ti[None, :]
            level = torch.zeros_like(xor)
            for bit in range(self.levels):
                level = torch.where(xor >= (1 << bit), bit + 1, level)
            self.register_buffer("level", level.clamp(max=self.levels - 1))
            self.lam = nn.Linear(c, n_heads * self.levels, bias=False)
            self.lam_bias = nn.Parameter(torch.full((n_heads, self.levels), math.log(math.e - 1)))

    def forward(self, x):
        B, T, C = x.shape
        # q|k|v are contiguous column blocks, heads contiguous inside each (madtrain's layout).
        q, k, v = (z.view(B, T, self.h, self.d).transpose(1, 2) for z in self.qkv(x).split(C, dim=-1))
        if self.kind == "softmax":
            q, k = rotate(q, self.cos[:T], self.sin[:T]), rotate(k, self.cos[:T], self.sin[:T])
            att = (q @ k.transpose(-2, -1)) / math.sqrt(self.d)
            att = att.masked_fill(self.future[:T, :T], float("-inf")).softmax(dim=-1)
            o = att @ v
        else:
            if self.kind == "cosformer":
                q, k = F.relu(q), F.relu(k)
                a = (q @ k.transpose(-2, -1)) * self.cos_decay[:T, :T]
            else:
                q, k = F.elu(q) + 1, F.elu(k) + 1
                a = (q @ k.transpose(-2, -1)) * self.causal[:T, :T]
            if self.kind == "loglinear":
                lam = F.softplus(self.lam(x).view(B, T, self.h, self.levels) + self.lam_bias)
                lam = lam.permute(0, 2, 1, 3)  # [B, H, T, levels]
                a = a * lam.gather(3, self.level[:T, :T].expand(B, self.h, T, T))
            o = (a @ v) / (a.sum(-1, keepdim=True) + ATTN_EPS)
        return self.wo(o.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, kind, c, n_heads, seq_len, mlp):
        super().__init__()
        self.n1 = RMSNorm(c)
        self.mix = Mixer(kind, c, n_heads, seq_len)
        self.mlp = mlp == "gelu"
        if self.mlp:
            self.n2 = RMSNorm(c)
            self.fc = nn.Linear(c, 4 * c, bias=False)
            self.proj = nn.Linear(4 * c, c, bias=False)

    def forward(self, x):
        h = x + self.mix(self.n1(x))
        if not self.mlp:
            return h
        return h + self.proj(F.gelu(self.fc(self.n2(h)), approximate="tanh"))


class LM(nn.Module):
    def __init__(self, kind, vocab, c, n_layers, n_heads, seq_len, mlp):
        super().__init__()
        self.wte = nn.Embedding(vocab, c)
        self.blocks = nn.ModuleList(Block(kind, c, n_heads, seq_len, mlp) for _ in range(n_layers))
        self.norm = RMSNorm(c)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=INIT_STD)
        for b in self.blocks:  # log-linear's lambda projection and bias keep their own init
            if hasattr(b.mix, "lam"):
                nn.init.zeros_(b.mix.lam.weight)
                nn.init.constant_(b.mix.lam_bias, math.log(math.e - 1))

    def forward(self, idx, targets, scored):
        x = self.wte(idx)
        for b in self.blocks:
            x = b(x)
        # Tied LM head on the scored positions only, as madtrain runs it on MQAR (its queries):
        # the two sides do the same head work, which at d 256 and vocab 8192 is most of a step.
        logits = self.norm(x)[scored] @ self.wte.weight.t()
        return F.cross_entropy(logits, targets[scored])


def num_queries(a):
    # MQAR needs room for its key-value pairs; fewer of them at small test shapes.
    return min(16, max(1, a.seq_len // 8))


def bench_pytorch(a, kind):
    torch.manual_seed(0)
    model = LM(kind, a.vocab, a.d_model, a.layers, a.heads, a.seq_len, a.mlp)
    # Decay matrices only, as madtrain does; norm gains stay undecayed.
    params = list(model.parameters())
    decayed = {n: p.dim() >= 2 and not n.endswith("lam_bias") for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in model.named_parameters() if decayed[n]], "weight_decay": WEIGHT_DECAY},
         {"params": [p for n, p in model.named_parameters() if not decayed[n]], "weight_decay": 0.0}],
        lr=LR, betas=BETAS)
    n = a.warmup + a.steps
    # Batches made up front so the timed loop measures training, not the RNG.
    idx = torch.randint(a.vocab, (n, a.batch, a.seq_len))
    tgt = torch.randint(a.vocab, (n, a.batch, a.seq_len))
    # As many scored positions per sequence as madtrain's MQAR has queries, in the second half.
    scored = torch.zeros(n, a.batch, a.seq_len, dtype=torch.bool)
    half = a.seq_len // 2
    for i in range(n):
        for b in range(a.batch):
            scored[i, b, half + torch.randperm(a.seq_len - half)[:num_queries(a)]] = True
    first_loss, t0 = None, None
    for i in range(n):
        if i == a.warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(idx[i], tgt[i], scored[i])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        opt.step()
        if first_loss is None:
            first_loss = loss.item()
    loss.item()  # ops are synchronous on CPU, but make sure the last step is done
    dt = time.perf_counter() - t0
    return a.steps * a.batch * a.seq_len / dt, first_loss


# ---------------------------------------------------------------------------------------
# madtrain: run the binary and read its metrics.jsonl.

def bench_madtrain(a, kind):
    with tempfile.TemporaryDirectory(prefix="bench_cpu_") as run_dir:
        cmd = [a.madtrain, "train",
               f"model.d_model={a.d_model}", f"model.n_layers={a.layers}", f"model.n_heads={a.heads}",
               f"model.mixer={kind}", f"model.mlp={a.mlp}", "model.tie_embeddings=true",
               "data.task=mqar", f"data.seq_len={a.seq_len}", f"data.vocab_size={a.vocab}",
               f"data.num_kv_pairs={num_queries(a)}",
               # Just the examples the run uses, and a one-batch final eval: neither is timed,
               # but the defaults (100k train, 1k test) would make each run minutes longer.
               f"data.train_examples={(a.warmup + a.steps) * a.batch}", f"data.test_examples={a.batch}",
               f"train.batch_size={a.batch}", f"train.steps={a.warmup + a.steps}",
               "train.eval_every=0", "train.log_every=1", f"optim.lr={LR}",
               f"run.dir={run_dir}", f"cpu.threads={a.threads // a.ranks}"]
        if a.ranks > 1:  # train.batch_size is the global batch: the same work per step
            cmd = ["mpirun", "--oversubscribe", "-n", str(a.ranks)] + (
                ["--allow-run-as-root"] if os.geteuid() == 0 else []) + cmd
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=MADTRAIN_ENV)
        if p.returncode != 0:
            sys.stderr.write(f"madtrain failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr}{p.stdout[-2000:]}")
            sys.exit(p.returncode if p.returncode > 0 else 1)
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            train = [r for r in map(json.loads, filter(str.strip, f)) if r.get("event") == "train"]
    # Rate from the step-`warmup` line on, so start-up and warm-up are excluded just as
    # in the PyTorch loop; cumulative tokens make it independent of how steps are numbered.
    start = next((r for r in train if r["step"] == a.warmup), None)
    if start is None or train[-1] is start:
        sys.exit(f"madtrain metrics.jsonl has no train line for step {a.warmup} before the last; "
                 f"steps seen: {[r['step'] for r in train]}")
    last = train[-1]
    rate = (last["tokens"] - start["tokens"]) / (last["elapsed_s"] - start["elapsed_s"])
    return rate, train[0]["loss"]


# ---------------------------------------------------------------------------------------

def cpu_model():
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    a, results = ARGS, []
    for name in a.shapes:
        apply_shape(a, name)
        results.append(run_shape(a))
        print(flush=True)
    if len(results) > 1:
        print("# summary: madtrain / PyTorch tokens/s (median of the alternating pairs)")
        print("# " + f"{'shape':>10} " + " ".join(f"{m:>10}" for m in a.mixers))
        for r in results:
            ratios = {x["mixer"]: x["ratio"] for x in r["results"]}
            print("  " + f"{r['config']['shape']:>10} " + " ".join(
                "-".rjust(10) if ratios[m] is None else f"{ratios[m]:10.2f}" for m in a.mixers))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results if len(results) > 1 else results[0], fh, indent=2)
            fh.write("\n")


def run_shape(a):
    mixers = a.mixers
    run_mt = a.madtrain.lower() != "none"
    if run_mt and not os.access(a.madtrain, os.X_OK):
        sys.exit(f"madtrain binary not found or not executable: {a.madtrain} (use --madtrain none to skip)")
    load = os.getloadavg()[0]
    torch.set_num_threads(a.threads)

    cfg = {"shape": a.shape, "mlp": a.mlp, "repeat": a.repeat, "d_model": a.d_model, "layers": a.layers, "heads": a.heads, "d_ff": 4 * a.d_model,
           "seq_len": a.seq_len, "batch": a.batch, "vocab": a.vocab, "threads": a.threads, "madtrain_ranks": a.ranks,
           "warmup": a.warmup, "steps": a.steps, "torch": torch.__version__, "cpu": cpu_model(),
           "cpus": os.cpu_count(), "load_avg_1m": load, "env": {k: MADTRAIN_ENV.get(k) for k in THREAD_ENV},
           "pytorch_openblas_threads": os.environ["OPENBLAS_NUM_THREADS"],
           "madtrain": a.madtrain if run_mt else None,
           "optim": {"lr": LR, "weight_decay": WEIGHT_DECAY, "betas": BETAS, "grad_clip": GRAD_CLIP}}
    print("# madtrain vs PyTorch: CPU training throughput (tokens/s, higher is better)")
    print(f"#   model    : d_model {a.d_model}, {a.layers} layers, {a.heads} heads (head dim "
          f"{a.d_model // a.heads}), d_ff {4 * a.d_model if a.mlp != 'none' else 0}, vocab {a.vocab}, tied LM head, RMSNorm, "
          f"MLP {a.mlp} (shape preset {a.shape})")
    print(f"#   repeat   : {a.repeat} alternating runs per side and mixer; tok/s are medians")
    print(f"#   batch    : {a.batch} x {a.seq_len} = {a.batch * a.seq_len} tokens/step")
    print(f"#   steps    : {a.warmup} warm-up + {a.steps} timed")
    print(f"#   optim    : AdamW lr {LR} wd {WEIGHT_DECAY} betas {BETAS}, grad clip {GRAD_CLIP}")
    print(f"#   threads  : {a.threads}: madtrain {a.ranks} rank(s) x {a.threads // a.ranks} thread(s) "
          f"(mpirun -n, cpu.threads), PyTorch torch.set_num_threads({a.threads})")
    print(f"#   torch    : {torch.__version__}")
    print(f"#   machine  : {cfg['cpu']}, {os.cpu_count()} CPUs")
    print("#   env      : " + " ".join(f"{k}={MADTRAIN_ENV.get(k, '(unset)')}" for k in THREAD_ENV)
          + " (PyTorch: " + " ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in THREAD_ENV) + ")")
    print(f"#   madtrain : {a.madtrain if run_mt else '(skipped)'}")
    # Spinning OpenMP/OpenBLAS threads collapse when other work shares the cores, so a
    # busy machine can make either side many times slower; say so next to the numbers.
    print(f"#   load     : {load:.2f} (1-min average at start)"
          + ("  WARNING: machine busy, timings unreliable" if load > 0.5 else ""))
    print("#")
    print(f"# first loss: step-1 loss of each side; both should be near ln(V) = {math.log(a.vocab):.3f}")
    print(f"# {'mixer':>8} {'madtrain tok/s':>15} {'pytorch tok/s':>15} {'ratio':>7}   "
          f"{'first loss (mt / pt)':>20}")
    rows = []
    for m in mixers:
        # Alternate the two sides so that a slow spell of a shared machine hits both; the
        # medians and the spread of the per-pair ratios say how steady the machine was.
        mt_runs, pt_runs = [], []
        for _ in range(a.repeat):
            if run_mt:
                mt_runs.append(bench_madtrain(a, m))
            pt_runs.append(bench_pytorch(a, m))
        mt_rate = statistics.median(r for r, _ in mt_runs) if run_mt else None
        pt_rate = statistics.median(r for r, _ in pt_runs)
        mt_loss, pt_loss = (mt_runs[0][1] if run_mt else None), pt_runs[0][1]
        ratio = mt_rate / pt_rate if mt_rate else None
        pair = [x[0] / y[0] for x, y in zip(mt_runs, pt_runs)]
        rows.append({"mixer": m, "madtrain_tok_s": mt_rate, "pytorch_tok_s": pt_rate, "ratio": ratio,
                     "pair_ratios": pair, "madtrain_first_loss": mt_loss, "pytorch_first_loss": pt_loss})
        f = lambda x, w, d: "-".rjust(w) if x is None else f"{x:{w}.{d}f}"
        spread = f"  (pairs {min(pair):.2f}-{max(pair):.2f})" if len(pair) > 1 else ""
        print(f"  {m:>8} {f(mt_rate, 15, 1)} {f(pt_rate, 15, 1)} {f(ratio, 7, 2)}   "
              f"{f(mt_loss, 9, 3)} / {f(pt_loss, 0, 3)}{spread}", flush=True)
    return {"config": cfg, "results": rows}


if __name__ == "__main__":
    main()
