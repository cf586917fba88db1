#!/usr/bin/env python3
"""GPT-2 small training throughput in plain PyTorch: the peer of `madtrain bench --shapes gpt2-small`.

Measures tokens/s, step time, MFU and peak memory of full training steps (forward, fp32
cross-entropy, backward, AdamW) of the GPT-2 small architecture on random token ids:

  learned token embedding (vocab 50257, tied with the LM head) + learned positions,
  12 pre-LN blocks (LayerNorm with bias, eps 1e-5; attention: qkv Linear(C, 3C) ->
  causal scaled_dot_product_attention -> Linear(C, C); MLP: Linear(C, 4C) -> tanh GELU ->
  Linear(4C, C); all Linears with bias), final LayerNorm; d 768, 12 heads, T 1024, batch 8,
  no dropout, weights N(0, 0.02), biases 0.

On CUDA: bf16 autocast (fp32 master weights), cross-entropy on fp32 logits, fused AdamW
(lr 1e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on the matrices and embeddings),
the model (with its loss) compiled by torch.compile unless --no-compile.

Timing: --warmup steps (default 3; torch.compile compiles in the first) and then --steps
timed steps (default 10) between two CUDA events; tokens/s = steps * B * T / seconds.
Peak memory: torch.cuda.max_memory_allocated() with the peak reset just before the warm-up,
so it counts everything the steps hold: parameters, gradients, AdamW moments, activations and
any workspace that the compiled kernels or cuBLAS allocate (the GEMM peak runs before).

MFU = tokens/s * FLOPs per token / peak FLOP/s. The peak is measured in the same run: an
8192 x 8192 x 8192 bf16 matmul of random data, 3 warm-ups, then the mean of 10 timed with
CUDA events, at 2 n^3 FLOP each. FLOPs per token follow llm.c's convention, as madtrain's
bench does (src/bench.c):

  flops_per_token = 6 * (L * (C*3C + C*C + 2*C*4C) + V*C) + 3 * L * (2*T*C)

6 per matmul weight (forward 2, backward 4; the LM head counted, the embedding lookups and
biases not), plus causal softmax attention at 3x its forward, whose forward per token and
layer is 2*T*C (QK^T and AV: T*C/2 multiply-adds each on average over the causal triangle).

Run on the GPU machine (one JSON line is appended to --out):

    python3 bench/peer_gpt2.py --out peer_gpt2.jsonl
    python3 bench/peer_gpt2.py --seq-len 4096 --batch 2 --out peer_gpt2.jsonl   # gpt2-small-4k

CPU smoke test (torch 1.13 works: manual attention, fp32, no compile, 512^3 fp32 GEMM peak):

    /usr/bin/python3 bench/peer_gpt2.py --device cpu --d-model 64 --layers 2 --heads 4 \\
        --seq-len 64 --batch 2 --vocab 512 --steps 2 --warmup 1 --out /tmp/p.jsonl
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

GPT2_SMALL = dict(d_model=768, layers=12, heads=12, vocab=50257)
# madtrain's names for GPT-2 small at the sequence lengths of its bench table
SHAPE_NAMES = {1024: "gpt2-small", 4096: "gpt2-small-4k"}

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class Block(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(c, eps=1e-5)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.ln2 = nn.LayerNorm(c, eps=1e-5)
        self.fc = nn.Linear(c, 4 * c)
        self.gelu = nn.GELU(approximate="tanh")
        self.fc_out = nn.Linear(4 * c, c)

    def attention(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        if HAS_SDPA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0 (the CPU smoke test on Debian's torch): the same maths, unfused
            s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            y = s.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fc_out(self.gelu(self.fc(self.ln2(x))))


class GPT2(nn.Module):
    def __init__(self, vocab, seq_len, c, layers, heads):
        super().__init__()
        self.wte = nn.Embedding(vocab, c)
        self.wpe = nn.Embedding(seq_len, c)
        self.blocks = nn.ModuleList(Block(c, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(c, eps=1e-5)
        self.lm_head = nn.Linear(c, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # The loss lives inside forward so that torch.compile sees (and can fuse) the fp32
    # cross-entropy too, as madtrain fuses its own.
    def forward(self, idx, targets):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def flops_per_token(c, layers, vocab, seq_len):
    matmul_weights = layers * (c * 3 * c + c * c + 2 * c * 4 * c) + vocab * c
    attention_forward = layers * 2 * seq_len * c
    return 6 * matmul_weights + 3 * attention_forward


def gemm_peak(device):
    """Measured matrix-product peak in FLOP/s: bf16 8192^3 on CUDA, fp32 512^3 on CPU."""
    cuda = device.type == "cuda"
    n = 8192 if cuda else 512
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        c = a @ b
    if cuda:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(10)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(10)]
        torch.cuda.synchronize()
        for s, e in zip(starts, ends):
            s.record()
            c = a @ b
            e.record()
        torch.cuda.synchronize()
        seconds = [1e-3 * s.elapsed_time(e) for s, e in zip(starts, ends)]
    else:
        seconds = []
        for _ in range(10):
            t0 = time.perf_counter()
            c = a @ b
            seconds.append(time.perf_counter() - t0)
    del a, b, c
    if cuda:
        torch.cuda.empty_cache()
    return 2.0 * n ** 3 / (sum(seconds) / len(seconds))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-model", type=int, default=GPT2_SMALL["d_model"])
    ap.add_argument("--layers", type=int, default=GPT2_SMALL["layers"])
    ap.add_argument("--heads", type=int, default=GPT2_SMALL["heads"])
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=GPT2_SMALL["vocab"])
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before them (compilation happens here)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke test)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile's mode (default: its default; e.g. max-autotune, which compiles longer)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--shape-name", default=None,
                    help="name in the JSON line (default: gpt2-small / gpt2-small-4k for GPT-2 small's "
                         "dims at T 1024 / 4096, else custom)")
    ap.add_argument("--out", metavar="FILE", help="append one JSON line with the results here")
    a = ap.parse_args()
    if a.steps < 1 or a.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    if a.d_model % a.heads:
        ap.error("--d-model must be a multiple of --heads")
    if a.shape_name is None:
        gpt2 = all(getattr(a, k) == v for k, v in GPT2_SMALL.items())
        a.shape_name = SHAPE_NAMES.get(a.seq_len, "custom") if gpt2 else "custom"
    return a


def main():
    a = parse_args()
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("peer_gpt2: CUDA is not available (use --device cpu for the smoke test)")
    torch.manual_seed(a.seed)
    B, T, C, V = a.batch, a.seq_len, a.d_model, a.vocab

    # Before the model exists, so that the GEMM's 400 MB never count in the peak memory.
    peak = gemm_peak(device)

    model = GPT2(V, T, C, a.layers, a.heads).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    # The usual GPT-2 split: matrices and embeddings decay, biases and LayerNorm gains do not.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt_kw = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    if cuda:
        opt_kw["fused"] = True
    opt = torch.optim.AdamW(groups, **opt_kw)

    compiled = cuda and not a.no_compile and hasattr(torch, "compile")
    step_model = torch.compile(model, mode=a.compile_mode) if compiled else model

    gen = torch.Generator().manual_seed(a.seed)
    idx = torch.randint(0, V, (B, T), generator=gen).to(device)
    targets = torch.randint(0, V, (B, T), generator=gen).to(device)

    def step():
        if cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step_model(idx, targets)
        else:
            loss = step_model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(a.warmup):
        loss = step()
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(a.steps):
            loss = step()
        end.record()
        torch.cuda.synchronize()
        seconds = 1e-3 * start.elapsed_time(end)
        memory = torch.cuda.max_memory_allocated()
        device_name = torch.cuda.get_device_name(device)
    else:
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = step()
        seconds = time.perf_counter() - t0
        memory = 0  # no allocator statistics on CPU
        device_name = "cpu"

    final_loss = float(loss.detach())
    if not math.isfinite(final_loss):
        raise SystemExit(f"peer_gpt2: loss is {final_loss} after {a.warmup + a.steps} steps")
    tokens_per_s = a.steps * B * T / seconds
    fpt = flops_per_token(C, a.layers, V, T)
    mfu = tokens_per_s * fpt / peak
    result = {
        "peer": "pytorch", "shape": a.shape_name, "batch": B, "T": T, "device": device_name,
        "torch": torch.__version__, "compiled": compiled,
        "compile_mode": (a.compile_mode or "default") if compiled else None, "tokens_per_s": tokens_per_s,
        "step_ms": 1e3 * seconds / a.steps, "flops_per_token": fpt, "peak_flops": peak, "mfu": mfu,
        "peak_memory_bytes": memory,
    }
    print(f"pytorch {torch.__version__} | {device_name} | {a.shape_name} (d {C}, {a.layers} layers, "
          f"{a.heads} heads, V {V}, {n_params / 1e6:.1f}M params) batch {B} x T {T} | "
          f"{'compiled' if compiled else 'eager'} | {tokens_per_s:,.0f} tokens/s, "
          f"{result['step_ms']:.1f} ms/step | MFU {100 * mfu:.1f}% of {peak / 1e12:.1f} TFLOP/s measured | "
          f"peak memory {memory / 2 ** 20:.0f} MiB | loss {final_loss:.3f}")
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
