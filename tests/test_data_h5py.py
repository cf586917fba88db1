"""Shards are plain HDF5 that h5py reads and writes without madtrain.

1. `madtrain prep wikitext` (word and byte tokenisers) and `prep synthetic` shards, read with
   h5py, hold exactly the tokens an independent Python tokenisation gives (the shipped
   WikiText-2 sample too, when ../shared/data is there); checksums match zlib.crc32, datasets
   are contiguous, attributes complete; h5dump reads them.
2. Shards written by the Python code of docs/data-format.md (run from the doc itself) pass
   `madtrain prep check` (madtrain's CRC of the bytes it reads equals Python's) and train.

usage: test_data_h5py.py MADTRAIN WORK_DIR DOCS_DATA_FORMAT_MD WIKITEXT_DIR
Exit 77 (skipped) when h5py is not installed.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import zlib

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"SKIP: {e} (Debian: apt-get install python3-h5py)")
    sys.exit(77)

madtrain, work, doc_path, wikitext = sys.argv[1:5]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
failures = []


def check(cond, msg):
    print(("ok: " if cond else "FAIL: ") + msg)
    if not cond:
        failures.append(msg)


def run(*args):
    r = subprocess.run([madtrain, *args], capture_output=True, text=True)
    if r.returncode:
        print(r.stdout, r.stderr)
    return r


def shards(folder, split):
    rows = [l.split("\t") for l in open(os.path.join(folder, "manifest.tsv")).read().splitlines()
            if l and not l.startswith(("#", "madtrain-shards"))]
    return [os.path.join(folder, f) for s, f, n in rows if s == split]


def read_tokens(folder, split):
    parts = []
    for path in shards(folder, split):
        with h5py.File(path, "r") as f:
            d = f["tokens"]
            crc = zlib.crc32(d[:].astype("<u" + str(d.dtype.itemsize)).tobytes())
            check(crc == f.attrs["checksum_crc32"], f"{os.path.basename(path)}: zlib.crc32 matches")
            check(d.chunks is None and d.compression is None, f"{path}: contiguous, uncompressed")
            check(all(k in f.attrs for k in ("format_version", "vocab_size", "tokenizer", "task",
                                              "split")), f"{path}: attributes present")
            parts.append(d[:])
    return np.concatenate(parts)


def python_words(data):
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines = lines[:-1]
    return [w for line in lines for w in line.split() + [b"<eos>"]]


def check_word_folder(folder, texts):
    vocab = open(os.path.join(folder, "vocab.txt"), "rb").read().split(b"\n")[:-1]
    ids = {w: i for i, w in enumerate(vocab)}
    for split, data in texts.items():
        want = np.array([ids.get(w, ids[b"<unk>"]) for w in python_words(data)])
        got = read_tokens(folder, split)
        check(np.array_equal(got, want), f"word tokens of {split} ({len(want)}) match Python's")


# ---- 1. prep output read by h5py ------------------------------------------------------------
text = {"train": b" \n = Alpha = \n the cat  sat\ton the <unk> mat . \n\n caf\xc3\xa9 the cat \r\n"
                 b" = Beta = \n the dog \n last line",
        "valid": b" the zebra . \n the cat \n"}
for split, data in text.items():
    open(os.path.join(work, f"{split}.txt"), "wb").write(data)
word = os.path.join(work, "word")
check(run("prep", "wikitext", "--in", work, "--out", word, "--shard-tokens", "9").returncode == 0,
      "prep wikitext (word)")
check_word_folder(word, text)
byte = os.path.join(work, "byte")
check(run("prep", "wikitext", "--in", work, "--out", byte, "--tokenizer", "byte").returncode == 0,
      "prep wikitext (byte)")
for split, data in text.items():
    check(read_tokens(byte, split).tobytes() == np.frombuffer(data, np.uint8).astype("<u2").tobytes(),
          f"byte tokens of {split} are the file's bytes")

if os.path.isdir(wikitext):
    wt = os.path.join(work, "wikitext-2")
    check(run("prep", "wikitext", "--train", os.path.join(wikitext, "valid.txt"), "--valid",
              os.path.join(wikitext, "test.txt"), "--out", wt).returncode == 0, "prep WikiText-2")
    check_word_folder(wt, {"train": open(os.path.join(wikitext, "valid.txt"), "rb").read(),
                           "valid": open(os.path.join(wikitext, "test.txt"), "rb").read()})
else:
    print(f"note: {wikitext} absent, the WikiText-2 round trip is skipped")

syn = os.path.join(work, "synthetic")
check(run("prep", "synthetic", "--task", "mqar", "--out", syn, "data.seq_len=32",
          "data.vocab_size=32", "data.train_examples=100", "data.test_examples=10").returncode == 0,
      "prep synthetic")
with h5py.File(shards(syn, "train")[0], "r") as f:
    x, y = f["inputs"][:], f["targets"][:]
    check(x.shape == (100, 32) and y.shape == (100, 32) and y.dtype == np.int32,
          "synthetic shard: inputs and targets [100, 32], int32 targets")
    check(((y == -1) | ((y >= 0) & (y < 32))).all() and (y >= 0).sum() == 100 * 4,
          "synthetic shard: 4 scored queries per sequence, -1 elsewhere")
    crc = zlib.crc32(y.astype("<i4").tobytes(), zlib.crc32(x.astype("<u2").tobytes()))
    check(crc == f.attrs["checksum_crc32"], "synthetic shard: CRC of inputs then targets")
    check(f.attrs["task"] == "mqar" and f.attrs["task.seq_len"] == 32, "synthetic shard: task attributes")

if shutil.which("h5dump"):
    r = subprocess.run(["h5dump", "-H", shards(word, "train")[0]], capture_output=True, text=True)
    check(r.returncode == 0 and 'DATASET "tokens"' in r.stdout, "h5dump reads a shard")
else:
    print("note: h5dump not installed (Debian: hdf5-tools), not checked")

# ---- 2. the doc's writer -----------------------------------------------------------------------
doc = open(doc_path).read()
block = doc.split("<!-- shard-writer: tests/test_data_h5py.py runs this block -->", 1)[1]
code = "\n".join(re.findall(r"```python\n(.*?)```", block, re.S))
namespace = {}
exec(compile(code, doc_path, "exec"), namespace)
rng = np.random.default_rng(0)
lm = os.path.join(work, "python-lm")
namespace["write_lm_folder"](lm, {"train": rng.integers(0, 300, 5000), "valid": rng.integers(0, 300, 800)},
                             vocab_size=300, shard_tokens=2000)
r = run("prep", "check", lm)
check(r.returncode == 0 and "4 of 4 shard(s) good" in r.stdout,
      "doc-written LM shards (3 train, 1 valid) pass madtrain prep check")
r = run("data.path=" + lm, "run.dir=" + os.path.join(work, "run-lm"), "data.seq_len=32",
        "model.d_model=16", "train.steps=3", "train.batch_size=4", "cpu.threads=1")
evals = [json.loads(l) for l in open(os.path.join(work, "run-lm", "metrics.jsonl"))
         if '"eval"' in l] if r.returncode == 0 else []
check(len(evals) == 1 and evals[0]["tokens"] == 799 and "ppl" in evals[0],
      "madtrain trains on them and scores all 799 predictable valid tokens")

seq = os.path.join(work, "python-seq")
os.makedirs(seq)
x = rng.integers(0, 50, (40, 16))
y = np.where(rng.random((40, 16)) < 0.5, -100, rng.integers(0, 50, (40, 16)))
n = namespace["write_shard"](os.path.join(seq, "train-00000.h5"), "train", 50, inputs=x,
                             targets=y, task="copy", ignore_index=-100)
n2 = namespace["write_shard"](os.path.join(seq, "valid-00000.h5"), "valid", 50, inputs=x[:8],
                              targets=y[:8], task="copy", ignore_index=-100)
namespace["write_manifest"](seq, [("train", "train-00000.h5", n), ("valid", "valid-00000.h5", n2)])
r = run("prep", "check", seq)
check(r.returncode == 0 and "2 of 2 shard(s) good" in r.stdout,
      "doc-written sequence shards (ignore_index -100) pass madtrain prep check")
r = run("data.path=" + seq, "run.dir=" + os.path.join(work, "run-seq"), "data.seq_len=16",
        "model.d_model=16", "train.steps=3", "train.batch_size=4", "cpu.threads=1")
check(r.returncode == 0, "madtrain trains on doc-written sequence shards")

# An image set by the doc's write_image_shard: madtrain verifies it, and it equals what
# `madtrain prep images` writes from the same arrays.
img = os.path.join(work, "python-images")
os.makedirs(img)
pix = rng.integers(0, 256, (30, 6, 5, 3), dtype=np.uint8)
lab = rng.integers(0, 4, 30)
names = ["cat", "dog", "ship", "frog"]
x = pix[:24] / 255
mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
rows = [("train", "train-00000.h5", namespace["write_image_shard"](
            os.path.join(img, "train-00000.h5"), "train", pix[:24], lab[:24], names, mean, std)),
        ("test", "test-00000.h5", namespace["write_image_shard"](
            os.path.join(img, "test-00000.h5"), "test", pix[24:], lab[24:], names, mean, std))]
namespace["write_manifest"](img, rows)
r = run("prep", "check", img)
check(r.returncode == 0 and "2 of 2 shard(s) good, 30 images" in r.stdout,
      "doc-written image shards pass madtrain prep check")
np.savez(os.path.join(work, "images.npz"), train_images=pix[:24], train_labels=lab[:24],
         test_images=pix[24:], test_labels=lab[24:], class_names=np.array(names))
r = run("prep", "images", "--npz", os.path.join(work, "images.npz"), "--out", os.path.join(work, "prep-images"))
same = r.returncode == 0
for name in ("train-00000.h5", "test-00000.h5"):
    if not same:
        break
    with h5py.File(os.path.join(img, name)) as a, h5py.File(os.path.join(work, "prep-images", name)) as b:
        same = (np.array_equal(a["images"][:], b["images"][:]) and np.array_equal(a["labels"][:], b["labels"][:])
                and a["labels"].dtype == b["labels"].dtype and a.attrs["checksum_crc32"] == b.attrs["checksum_crc32"]
                and np.allclose(a.attrs["mean"], b.attrs["mean"], rtol=1e-12)
                and np.allclose(a.attrs["std"], b.attrs["std"], rtol=1e-12)
                and list(a.attrs["class_names"]) == list(b.attrs["class_names"]))
check(same, "they equal `madtrain prep images` of the same arrays (checksums, mean and std to 1e-12)")

print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
