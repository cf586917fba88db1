"""A PyTorch model and madtrain, started from the same weights, train to the same losses.

The check of a port that docs/pytorch-port.md describes, run on E029-style models (learned
positions, pre-LayerNorm blocks with biases, GELU MLP with biases, final LayerNorm, untied
bias-free head; ReLU linear attention as a / (sum a + eps), and causal softmax attention):

1. an associative-recall data set is written as HDF5 shards (docs/data-format.md) whose
   training split is exactly one batch, so every madtrain step sees the whole split (in some
   order) and the PyTorch model can train on the same batches without madtrain's shuffle;
2. the PyTorch model (float64, weights rounded to float32 so both start from the same
   numbers) writes its parameters with h5py in madtrain's checkpoint layout
   (docs/checkpoints.md: /params/<name>, each with its FNV-1a 64 checksum);
3. madtrain trains from it (`checkpoint.init_from`) with the PyTorch-matching options and
   torch.optim.AdamW's settings, logging every step; PyTorch trains the same steps;
4. the per-step losses agree within 1e-4 relative, and so do the final parameters (madtrain's
   last checkpoint) within a small absolute tolerance.

usage: test_pytorch_port.py MADTRAIN WORK_DIR
Exit 77 (skipped) when torch, h5py or numpy is missing.
"""
import json
import os
import shutil
import subprocess
import sys
import zlib

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as Fn
except ImportError as e:
    print(f"SKIP: {e} (Debian: apt-get install python3-torch python3-h5py)")
    sys.exit(77)

madtrain, work = sys.argv[1:3]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
failures = []

B, T, V, C, H, L, STEPS = 16, 24, 16, 32, 4, 2, 8
PAIRS = 6  # key-value pairs at positions 0 .. 2 PAIRS - 1, pad 0 after, the query key at T-1


def check(cond, msg):
    print(("ok: " if cond else "FAIL: ") + msg)
    if not cond:
        failures.append(msg)


# ---- data: one training batch as a shard folder -----------------------------------------------
def ar_examples(n, seed):
    rng = np.random.default_rng(seed)
    inputs = np.zeros((n, T), np.uint16)
    targets = np.full((n, T), -1, np.int32)
    for i in range(n):
        keys = rng.choice(np.arange(1, V), PAIRS, replace=False)
        values = rng.integers(1, V, PAIRS)
        inputs[i, 0:2 * PAIRS:2], inputs[i, 1:2 * PAIRS:2] = keys, values
        q = rng.integers(PAIRS)
        inputs[i, T - 1] = keys[q]
        targets[i, T - 1] = values[q]
    return inputs, targets


def write_shards(folder, inputs, targets):
    os.makedirs(folder)
    with h5py.File(os.path.join(folder, "train-00000.h5"), "w") as f:
        f.create_dataset("inputs", data=inputs)
        f.create_dataset("targets", data=targets)
        crc = zlib.crc32(targets.astype("<i4").tobytes(), zlib.crc32(inputs.astype("<u2").tobytes()))
        f.attrs.update({"format_version": 1, "vocab_size": V, "tokenizer": "none", "task": "ar",
                        "split": "train", "checksum_crc32": crc})
    with open(os.path.join(folder, "manifest.tsv"), "w") as f:
        f.write(f"madtrain-shards\t1\n# split\tfile\ttokens\ntrain\ttrain-00000.h5\t{inputs.size}\n")


# ---- the PyTorch model, computing what madtrain computes ----------------------------------------
class Mixer(nn.Module):
    def __init__(self, kind, bias):
        super().__init__()
        self.kind = kind
        self.qkv = nn.Linear(C, 3 * C, bias=bias)  # q | k | v, heads contiguous in each third
        self.out = nn.Linear(C, C, bias=bias)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (z.view(b, t, H, C // H).transpose(1, 2) for z in self.qkv(x).split(C, -1))
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        if self.kind == "softmax":
            s = (q @ k.transpose(-1, -2)) / (C // H) ** 0.5
            a = torch.softmax(s.masked_fill(~mask, float("-inf")), -1)
        else:  # ReLU linear attention over the masked T x T form, normalised a / (sum a + 1e-6)
            a = (Fn.relu(q) @ Fn.relu(k).transpose(-1, -2)) * mask
            a = a / (a.sum(-1, keepdim=True) + 1e-6)
        return self.out((a @ v).transpose(1, 2).reshape(b, t, C))


class Block(nn.Module):
    def __init__(self, kind, proj_bias, gelu):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.mixer = Mixer(kind, proj_bias)
        # model.mlp: gelu is the tanh form (as GPT-2); gelu_erf is nn.GELU()'s default
        self.fc, self.act, self.proj = nn.Linear(C, 4 * C), nn.GELU(approximate=gelu), nn.Linear(4 * C, C)

    def forward(self, x):
        x = x + self.mixer(self.ln1(x))
        return x + self.proj(self.act(self.fc(self.ln2(x))))


class Model(nn.Module):
    def __init__(self, kind, proj_bias, gelu):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.blocks = nn.ModuleList(Block(kind, proj_bias, gelu) for _ in range(L))
        self.lnf, self.head = nn.LayerNorm(C), nn.Linear(C, V, bias=False)

    def forward(self, ids, targets):
        x = self.wte(ids) + self.wpe.weight[: ids.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.lnf(x))
        return Fn.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)


def madtrain_names(model):
    """madtrain's parameter name for each PyTorch parameter (docs/pytorch-port.md)."""
    names = {"wte.weight": "wte", "wpe.weight": "wpe", "lnf.weight": "lnf", "lnf.bias": "lnf_bias",
             "head.weight": "lm_head"}
    per_layer = {"ln1.weight": "ln1", "ln1.bias": "ln1_bias", "ln2.weight": "ln2",
                 "ln2.bias": "ln2_bias", "mixer.qkv.weight": "mixer.wqkv",
                 "mixer.qkv.bias": "mixer.bqkv", "mixer.out.weight": "mixer.wo",
                 "mixer.out.bias": "mixer.bo", "fc.weight": "mlp.w_fc", "fc.bias": "mlp.b_fc",
                 "proj.weight": "mlp.w_proj", "proj.bias": "mlp.b_proj"}
    out = {}
    for name, _ in model.named_parameters():
        if name.startswith("blocks."):
            _, l, rest = name.split(".", 2)
            out[name] = f"layers.{l}.{per_layer[rest]}"
        else:
            out[name] = names[name]
    return out


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def write_checkpoint(path, model):
    with h5py.File(path, "w") as f:
        g = f.create_group("params")
        for name, p in model.named_parameters():
            a = p.detach().numpy().astype("<f4")
            ds = g.create_dataset(madtrain_names(model)[name], data=a)
            ds.attrs.create("checksum_fnv1a64", fnv1a64(a.tobytes()), dtype=np.uint64)


def run_case(label, kind, proj_bias, gelu, overrides):
    torch.manual_seed(7)
    model = Model(kind, proj_bias, gelu).double()
    with torch.no_grad():  # both start from the same float32 numbers
        for p in model.parameters():
            p.copy_(p.float().double())
    ckpt = os.path.join(work, f"{label}-init.h5")
    write_checkpoint(ckpt, model)
    run_dir = os.path.join(work, label)
    args = [madtrain, "train", f"data.path={data_dir}", f"data.seq_len={T}", "data.eval_split=",
            f"model.d_model={C}", f"model.n_layers={L}", f"model.n_heads={H}", "model.mlp=" + ("gelu" if gelu == "tanh" else "gelu_erf"),
            "model.norm=layernorm", "model.mlp_bias=true", f"model.proj_bias={str(proj_bias).lower()}",
            "model.init=pytorch", "model.pos_embedding=true", "model.tie_embeddings=false",
            "model.rope=off", "optim.decay=all", "optim.lr=1e-3", "optim.schedule=constant",
            "optim.warmup_steps=0", "optim.grad_clip=0", "optim.beta1=0.9", "optim.beta2=0.999",
            "optim.eps=1e-8", "optim.weight_decay=0.1", f"train.batch_size={B}",
            f"train.steps={STEPS}", "train.log_every=1", "train.eval_every=0", "cpu.threads=1",
            f"checkpoint.init_from={ckpt}", f"run.dir={run_dir}", *overrides]
    r = subprocess.run(args, capture_output=True, text=True)
    check(r.returncode == 0, f"{label}: madtrain trains from the PyTorch checkpoint")
    if r.returncode:
        print(r.stdout[-3000:], r.stderr[-3000:])
        return
    ours = [json.loads(l)["loss"] for l in open(os.path.join(run_dir, "metrics.jsonl"))
            if '"event":"train"' in l]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.1)
    ids, tgt = torch.from_numpy(inputs.astype(np.int64)), torch.from_numpy(targets.astype(np.int64))
    theirs = []
    for _ in range(STEPS):
        loss = model(ids, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        theirs.append(loss.item())
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs)) if len(ours) == STEPS else 1
    for s, (a, b) in enumerate(zip(ours, theirs)):
        print(f"   step {s + 1}: madtrain {a:.7f}  pytorch {b:.7f}")
    check(len(ours) == STEPS and worst < 1e-4,
          f"{label}: {STEPS} per-step losses agree (worst relative difference {worst:.2e} < 1e-4)")
    check(theirs[-1] < theirs[0], f"{label}: the loss falls ({theirs[0]:.4f} -> {theirs[-1]:.4f})")
    names = madtrain_names(model)
    with h5py.File(os.path.join(run_dir, f"ckpt-{STEPS:08d}.h5")) as f:
        diffs = {}
        for n, p in model.named_parameters():
            d = np.abs(f["params/" + names[n]][...] - p.detach().numpy())
            if n.endswith("mixer.qkv.bias") and kind == "softmax":
                # The k bias adds q.b_k to every score of a query: softmax ignores it, so its
                # gradient is rounding noise (~1e-9) that Adam scales up to +-lr in both
                # implementations, with independent signs. Only q and v are compared.
                d = np.concatenate([d[:C], d[2 * C:]])
            diffs[names[n]] = float(d.max())
    worst = max(diffs, key=diffs.get)
    check(diffs[worst] < 2e-5, f"{label}: final parameters agree (max |difference| "
          f"{diffs[worst]:.2e} < 2e-5, in {worst})")


def check_init():
    """model.init pytorch draws each tensor as PyTorch's default for its layer would."""
    run_dir = os.path.join(work, "init")
    r = subprocess.run([madtrain, "train", f"data.path={data_dir}", f"data.seq_len={T}",
                        "data.eval_split=", f"model.d_model={C}", f"model.n_layers={L}",
                        f"model.n_heads={H}", "model.mixer=linear", "model.norm=layernorm",
                        "model.mlp_bias=true", "model.proj_bias=true", "model.init=pytorch",
                        "model.pos_embedding=true", "model.tie_embeddings=false", "optim.lr=0",
                        f"train.batch_size={B}", "train.steps=1", "cpu.threads=1",
                        f"run.dir={run_dir}"], capture_output=True, text=True)
    check(r.returncode == 0, "init: madtrain trains one step at lr 0 (parameters as drawn)")
    if r.returncode:
        print(r.stdout[-3000:], r.stderr[-3000:])
        return
    fan_in = {"wqkv": C, "bqkv": C, "wo": C, "bo": C, "w_fc": C, "b_fc": C, "w_proj": 4 * C,
              "b_proj": 4 * C, "lm_head": C}
    bad = []
    with h5py.File(os.path.join(run_dir, "ckpt-00000001.h5")) as f:
        def visit(name, ds):
            if not isinstance(ds, h5py.Dataset):
                return
            a, leaf = ds[...].astype(np.float64), name.split(".")[-1]
            if leaf in ("wte", "wpe"):  # nn.Embedding: N(0, 1)
                ok = abs(a.mean()) < 0.1 and abs(a.std() - 1) < 0.1
            elif leaf in fan_in:  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), weight and bias
                bound = fan_in[leaf] ** -0.5
                ok = np.abs(a).max() <= bound and np.abs(a).max() > 0.8 * bound and \
                    abs(a.std() - bound / 3 ** 0.5) < 0.25 * bound / 3 ** 0.5
            elif leaf.endswith("_bias"):  # nn.LayerNorm: bias 0, weight 1
                ok = not a.any()
            else:
                ok = (a == 1).all()
            if not ok:
                bad.append(f"{name} (mean {a.mean():.3g}, std {a.std():.3g}, max {np.abs(a).max():.3g})")
        f["params"].visititems(visit)
    check(not bad, "init: every tensor as PyTorch's default for its layer" +
          (": " + ", ".join(bad) if bad else ""))


inputs, targets = ar_examples(B, 3)
data_dir = os.path.join(work, "data")
write_shards(data_dir, inputs, targets)
check_init()
# The MVE's set-up: projections without biases. The second case turns them on to cover them.
run_case("linear-relu-gelu-erf", "linear", False, "none", ["model.mixer=linear", "mixer.feature_map=relu"])
run_case("softmax-proj-bias", "softmax", True, "tanh", ["model.mixer=softmax"])

print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
