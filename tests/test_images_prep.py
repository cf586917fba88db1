"""`madtrain prep images` from every input format, on real images nobody here drew.

1. scikit-learn's 8x8 digits (1,797 images shipped in Debian's python3-sklearn) as a folder of
   PNG class folders and as .npz (stored, compressed, float): the shards are identical, and
   hold exactly the generating arrays. JPEG files (PIL/libjpeg) decode as PIL decodes them.
   A colour folder (RGB PNGs with grey ones mixed in) gives C = 3, grey as R = G = B.
2. CIFAR-format files generated here: python pickles (a hand-written Python 2 cPickle stream
   as the official batches are, and Python 3's pickle.dump at protocols 2, 4 and 5) and the
   binary format, CIFAR-10 and CIFAR-100 layouts: checked against the arrays that made them.
3. --test-fraction: deterministic by --seed; launch/prep_digits.sh.
4. Bad inputs (truncated, wrong size, not an image, label out of range, mixed sizes, a pickle
   that calls os.system) are each refused with one line naming the file, exit 2, and nothing
   written.

usage: test_images_prep.py MADTRAIN WORK_DIR SOURCE_DIR
Exit 77 (skipped) when numpy, h5py or scikit-learn is not installed.
"""
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zlib

try:
    import h5py
    import numpy as np
    from sklearn.datasets import load_digits
except ImportError as e:
    print(f"SKIP: {e} (Debian: apt-get install python3-sklearn python3-h5py; launch/setup.sh does)")
    sys.exit(77)
try:
    from PIL import Image
except ImportError:
    Image = None

madtrain, work, source = sys.argv[1:4]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
failures = []


def check(cond, msg):
    print(("ok: " if cond else "FAIL: ") + msg)
    if not cond:
        failures.append(msg)


def prep(*args):
    r = subprocess.run([madtrain, "prep", "images", *args], capture_output=True, text=True)
    if r.returncode:
        print(r.stdout, r.stderr, end="")
    return r


def load(folder):
    """{split: (images, labels)} plus the attributes of the first shard, read by h5py."""
    rows = [l.split("\t") for l in open(os.path.join(folder, "manifest.tsv")).read().splitlines()
            if l and not l.startswith(("#", "madtrain-shards"))]
    out, attrs = {}, None
    for split, name, n in rows:
        with h5py.File(os.path.join(folder, name), "r") as f:
            im, lb = f["images"][:], f["labels"][:]
            check(zlib.crc32(lb.astype("<i4").tobytes(), zlib.crc32(im.tobytes()))
                  == f.attrs["checksum_crc32"] and im.dtype == np.uint8 and lb.dtype == np.int32
                  and len(im) == int(n), f"{folder}/{name}: uint8 images, int32 labels, zlib.crc32")
            attrs = attrs or {k: f.attrs[k] for k in f.attrs}
            a, b = out.get(split, (np.zeros((0,) + im.shape[1:], np.uint8), np.zeros(0, np.int32)))
            out[split] = (np.concatenate([a, im]), np.concatenate([b, lb]))
    return out, attrs


def same_shards(a, b, same_sharding=True):
    (sa, aa), (sb, ab) = load(a), load(b)
    keys = ("checksum_crc32",) * same_sharding + ("num_classes", "mean", "std")
    return (sa.keys() == sb.keys()
            and all(np.array_equal(sa[k][0], sb[k][0]) and np.array_equal(sa[k][1], sb[k][1])
                    for k in sa)
            and all(np.array_equal(aa[k], ab[k]) for k in keys)
            and list(aa["class_names"]) == list(ab["class_names"]))


def png(path, img):
    """A minimal PNG writer (zlib + struct): 8-bit grey [H, W] or RGB [H, W, 3]."""
    img = np.asarray(img, np.uint8)
    h, w = img.shape[:2]
    colour = 2 if img.ndim == 3 else 0
    raw = b"".join(b"\0" + img[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_folder(root, images, labels, names, ext="png"):
    for i, (im, lb) in enumerate(zip(images, labels)):
        d = os.path.join(root, names[lb])
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"{i:05d}.{ext}")
        if ext == "png":
            png(path, im)
        else:
            Image.fromarray(im).save(path, quality=95)


def fail_case(name, args, want_in_line):
    out = os.path.join(work, "bad-" + name)
    r = prep(*args, "--out", out)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and want_in_line in lines[0]
          and not os.path.exists(os.path.join(out, "manifest.tsv")),
          f"refused ({name}): exit {r.returncode}, {lines}")


# ---- 1. digits: folder of PNGs == .npz --------------------------------------------------
d = load_digits()
images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
labels = d.target.astype(np.int32)
names = [str(c) for c in d.target_names]
test_mask = np.arange(len(labels)) % 5 == 0  # a fixed split both inputs share
# A folder lists class by class, files by name: order the arrays the same way.
order = {s: np.argsort(labels[m], kind="stable") for s, m in (("train", ~test_mask), ("test", test_mask))}
arrays = {s: (images[m][order[s]], labels[m][order[s]])
          for s, m in (("train", ~test_mask), ("test", test_mask))}
folder = os.path.join(work, "digits-png")
for s, (im, lb) in arrays.items():
    write_folder(os.path.join(folder, s), im, lb, names)
r = prep("--folder", folder, "--out", os.path.join(work, "from-folder"))
check(r.returncode == 0, "digits as PNG class folders prepare")
npz = os.path.join(work, "digits.npz")
np.savez(npz, train_images=arrays["train"][0], train_labels=arrays["train"][1],
         test_images=arrays["test"][0], test_labels=arrays["test"][1], class_names=np.array(names))
r = prep("--npz", npz, "--out", os.path.join(work, "from-npz"))
check(r.returncode == 0, "digits as .npz (np.savez) prepare")
check(same_shards(os.path.join(work, "from-folder"), os.path.join(work, "from-npz")),
      "folder and .npz give identical shards (images, labels, checksums, classes, mean, std)")
got, attrs = load(os.path.join(work, "from-npz"))
check(all(np.array_equal(got[s][0][..., 0], arrays[s][0]) and np.array_equal(got[s][1], arrays[s][1])
          for s in arrays) and got["train"][0].shape[1:] == (8, 8, 1),
      "the shards hold exactly the digits arrays ([N, 8, 8, 1])")
x = arrays["train"][0].astype(np.float64) / 255
check(np.allclose(attrs["mean"], [x.mean()], rtol=0, atol=1e-12)
      and np.allclose(attrs["std"], [x.std()], rtol=0, atol=1e-12)
      and list(attrs["class_names"]) == names and attrs["num_classes"] == 10,
      f"mean {attrs['mean']} and std {attrs['std']} of the training split, class names")
npzc = os.path.join(work, "digits-compressed.npz")
np.savez_compressed(npzc, train_images=arrays["train"][0], train_labels=arrays["train"][1].astype(np.int64),
                    test_images=arrays["test"][0], test_labels=arrays["test"][1].astype(np.uint8),
                    class_names=np.array(names))
r = prep("--npz", npzc, "--out", os.path.join(work, "from-npzc"))
check(r.returncode == 0 and same_shards(os.path.join(work, "from-npz"), os.path.join(work, "from-npzc")),
      "np.savez_compressed (deflate) with int64 / uint8 labels: identical shards")
npzf = os.path.join(work, "digits-float.npz")
np.savez(npzf, train_images=(arrays["train"][0] / 255.0).astype(np.float32), train_labels=arrays["train"][1],
         test_images=arrays["test"][0] / 255.0, test_labels=arrays["test"][1], class_names=np.array(names))
r = prep("--npz", npzf, "--out", os.path.join(work, "from-npzf"))
check(r.returncode == 0 and same_shards(os.path.join(work, "from-npz"), os.path.join(work, "from-npzf")),
      "float32 / float64 images in [0, 1]: identical shards")
r = subprocess.run([madtrain, "prep", "check", os.path.join(work, "from-folder")], capture_output=True, text=True)
check(r.returncode == 0 and "2 of 2 shard(s) good, 1797 images" in r.stdout, "prep check verifies image shards")

# JPEG (lossy): libjpeg's pixels equal PIL's decode of the same files (both libjpeg).
if Image is None:
    print("note: PIL not installed (Debian: python3-pil): the JPEG part is skipped")
else:
    big = np.kron(images[:120], np.ones((4, 4), np.uint8))  # 32x32: JPEG blocks are 8x8
    jf = os.path.join(work, "digits-jpeg")
    write_folder(jf, big, labels[:120], names, ext="jpg")
    # and PNGs in the same class folders
    write_folder(jf, big[:0], labels[:0], names)
    for i in range(120, 140):
        png(os.path.join(jf, names[labels[i]], f"{i:05d}.png"), np.kron(images[i], np.ones((4, 4), np.uint8)))
    r = prep("--folder", jf, "--test-fraction", "0", "--out", os.path.join(work, "from-jpeg"))
    got, _ = load(os.path.join(work, "from-jpeg"))
    want, paths = [], []
    for c in sorted(os.listdir(jf)):
        for f in sorted(os.listdir(os.path.join(jf, c))):
            want.append(np.asarray(Image.open(os.path.join(jf, c, f)).convert("L")))
            paths.append(f)
    want = np.stack(want)
    is_jpeg = np.array([p.endswith(".jpg") for p in paths])
    g = got["train"][0][..., 0] if r.returncode == 0 else np.zeros_like(want)
    diff = np.abs(g.astype(int) - want.astype(int))
    check(r.returncode == 0 and diff[~is_jpeg].max() == 0 and diff[is_jpeg].max() <= 1,
          f"JPEG + PNG folder: PNGs exact, JPEGs within {diff[is_jpeg].max()} of PIL's decode")
    orig = np.abs(want[is_jpeg].astype(int) - np.stack([big[int(p[:5])] for p in np.array(paths)[is_jpeg]]))
    print(f"note: JPEG quality 95 vs the original pixels: mean abs error {orig.mean():.2f}")

# Colour: RGB PNGs with some grey ones: C = 3, grey expanded to R = G = B.
cf = os.path.join(work, "colour")
rgb = np.stack([images[:30], 255 - images[:30], images[:30] // 2], axis=-1)
for i in range(30):
    os.makedirs(os.path.join(cf, names[labels[i]]), exist_ok=True)
    png(os.path.join(cf, names[labels[i]], f"{i:05d}.png"), rgb[i] if i % 3 else images[i])
r = prep("--folder", cf, "--test-fraction", "0", "--out", os.path.join(work, "from-colour"))
got, attrs = load(os.path.join(work, "from-colour"))
want = []
for c in sorted(os.listdir(cf)):
    for f in sorted(os.listdir(os.path.join(cf, c))):
        i = int(f[:5])
        want.append(rgb[i] if i % 3 else np.repeat(images[i][..., None], 3, axis=-1))
check(r.returncode == 0 and np.array_equal(got["train"][0], np.stack(want)) and len(attrs["mean"]) == 3,
      "RGB and grey PNGs together: [N, 8, 8, 3], grey as R = G = B, three channel means")

# Tiny ImageNet's layout: train/<wnid>/images/*.JPEG (+ <wnid>_boxes.txt), val/images with
# val/val_annotations.txt, an unlabelled test/ (ignored). PNG bytes under .JPEG names: files
# are decoded by what they hold, and PNG keeps the comparison exact.
tiny = os.path.join(work, "tiny-imagenet-200")
wnids = ["n01443537", "n01629819", "n01641577"]
os.makedirs(os.path.join(tiny, "val", "images"))
os.makedirs(os.path.join(tiny, "test", "images"))
open(os.path.join(tiny, "wnids.txt"), "w").write("\n".join(wnids[::-1]) + "\n")
tiny_train, tiny_val = [], []
for k, w in enumerate(wnids):
    os.makedirs(os.path.join(tiny, "train", w, "images"))
    open(os.path.join(tiny, "train", w, w + "_boxes.txt"), "w").write("x\t0\t0\t8\t8\n")
    for j in range(4):
        im = images[10 * k + j]
        png(os.path.join(tiny, "train", w, "images", f"{w}_{j}.JPEG"), im)
        tiny_train.append((im, k))
ann = []
for j in range(5):
    im, k = images[100 + j], (j * 2) % 3
    png(os.path.join(tiny, "val", "images", f"val_{j}.JPEG"), im)
    ann.append(f"val_{j}.JPEG\t{wnids[k]}\t0\t0\t8\t8")
    tiny_val.append((im, k))
png(os.path.join(tiny, "test", "images", "test_0.JPEG"), images[0])
open(os.path.join(tiny, "val", "val_annotations.txt"), "w").write("\n".join(ann) + "\n")
r = prep("--folder", tiny, "--out", os.path.join(work, "from-tiny"))
got, attrs = load(os.path.join(work, "from-tiny")) if r.returncode == 0 else ({}, {})
check(r.returncode == 0 and np.array_equal(got["train"][0][..., 0], np.stack([a for a, _ in tiny_train]))
      and list(got["train"][1]) == [k for _, k in tiny_train]
      and np.array_equal(got["test"][0][..., 0], np.stack([a for a, _ in tiny_val]))
      and list(got["test"][1]) == [k for _, k in tiny_val] and list(attrs["class_names"]) == wnids,
      "Tiny ImageNet layout: train/<wnid>/images, val labelled by val_annotations.txt (as 'test')")

# ---- 2. CIFAR pickles and binary ----------------------------------------------------------
rng = np.random.default_rng(1)


def cifar_arrays(n, k):
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, k, n).astype(np.int64)


def py2_cpickle(data, labels):
    """A batch as Python 2's cPickle.dump(d, f, 2) writes the official files: str (bytes)
    keys, numpy.core.multiarray._reconstruct with a BUILD state, BINSTRING raw data."""
    out = io.BytesIO()
    w = out.write
    w(b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04"
      b"K\x00\x85U\x01b\x87Rq\x05(K\x01" + b"M" + struct.pack("<H", data.shape[0]) + b"M\x00\x0c\x86"
      b"cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
      b"\x89T" + struct.pack("<I", data.size) + data.tobytes() + b"tbU\x06labelsq\x08]q\x09(")
    for v in labels:
        w(b"K" + bytes([int(v)]))
    w(b"eU\x0bbatch_labelq\x0aU\x0etraining batchq\x0bu.")
    return out.getvalue()


def chw_to_hwc(data):
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


c10 = os.path.join(work, "cifar-10-batches-py")
os.makedirs(c10)
batches = [cifar_arrays(n, 10) for n in (20, 17, 9, 6, 5, 4)]
with open(os.path.join(c10, "data_batch_1"), "wb") as f:
    f.write(py2_cpickle(*batches[0]))
with open(os.path.join(c10, "data_batch_2"), "wb") as f:
    pickle.dump({b"data": batches[1][0], b"labels": [int(v) for v in batches[1][1]]}, f, protocol=2)
with open(os.path.join(c10, "data_batch_3"), "wb") as f:
    pickle.dump({b"data": batches[2][0], b"labels": batches[2][1]}, f, protocol=5)  # array labels
with open(os.path.join(c10, "test_batch"), "wb") as f:
    pickle.dump({b"data": batches[3][0].tobytes(), b"labels": list(map(int, batches[3][1]))}, f, protocol=4)
cifar_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# batches.meta as Python 2's pickle wrote text (protocol 0): S'...' strings, I ints, p/g memo.
meta = "(dp0\nS'num_cases_per_batch'\np1\nI10000\nsS'label_names'\np2\n(lp3\n"
meta += "".join(f"S'{n}'\np{4 + i}\na" for i, n in enumerate(cifar_names))
meta += "sS'num_vis'\np20\nI3072\nsS'note'\np21\nS'it\\'s \\x41\\n'\np22\ns."
open(os.path.join(c10, "batches.meta"), "w").write(meta)
with open(os.path.join(c10, "data_batch_4"), "wb") as f:  # protocol 0 from Python 3: V strings
    pickle.dump({b"data": batches[4][0], b"labels": list(map(int, batches[4][1]))}, f, protocol=0)
with open(os.path.join(c10, "data_batch_5"), "wb") as f:
    pickle.dump({b"data": batches[5][0], b"labels": list(map(int, batches[5][1]))}, f, protocol=1)
r = prep("--cifar", c10, "--out", os.path.join(work, "from-c10py"))
got, attrs = load(os.path.join(work, "from-c10py"))
train_batches = batches[:3] + batches[4:]
want_train = np.concatenate([b[0] for b in train_batches])
check(r.returncode == 0 and np.array_equal(got["train"][0], chw_to_hwc(want_train))
      and np.array_equal(got["train"][1], np.concatenate([b[1] for b in train_batches]))
      and np.array_equal(got["test"][0], chw_to_hwc(batches[3][0]))
      and np.array_equal(got["test"][1], batches[3][1]) and list(attrs["class_names"]) == cifar_names,
      "CIFAR-10 pickles (Python 2 cPickle, a Python 2 text meta file, pickle.dump protocols 0, 1, "
      "2, 4, 5; arrays, lists and bytes) hold the generating arrays, HWC, with label_names")

c10b = os.path.join(work, "cifar-10-batches-bin")
os.makedirs(c10b)
for i, (data, lab) in enumerate(batches):  # data_batch_1..5 = batches 0, 1, 2, 4, 5
    name = f"data_batch_{i + 1 - (i > 3)}.bin" if i != 3 else "test_batch.bin"
    with open(os.path.join(c10b, name), "wb") as f:
        f.write(np.concatenate([lab.astype(np.uint8)[:, None], data], axis=1).tobytes())
with open(os.path.join(c10b, "batches.meta.txt"), "w") as f:
    f.write("\n".join(cifar_names) + "\n\n")
r = prep("--cifar", c10b, "--out", os.path.join(work, "from-c10bin"))
check(r.returncode == 0 and same_shards(os.path.join(work, "from-c10py"), os.path.join(work, "from-c10bin")),
      "CIFAR-10 binary batches: the same shards as the pickles")

c100 = os.path.join(work, "cifar-100-python")
c100b = os.path.join(work, "cifar-100-binary")
os.makedirs(c100), os.makedirs(c100b)
fine_names = [f"class{i}" for i in range(100)]
coarse_names = [f"super{i}" for i in range(20)]
c100_arrays = {}
for split, n in (("train", 30), ("test", 12)):
    data, fine = cifar_arrays(n, 100)
    coarse = fine // 5
    c100_arrays[split] = (data, fine, coarse)
    with open(os.path.join(c100, split), "wb") as f:
        pickle.dump({b"filenames": [b"x.png"] * n, b"batch_label": b"b", b"fine_labels": list(map(int, fine)),
                     b"coarse_labels": list(map(int, coarse)), b"data": data}, f, protocol=4)
    with open(os.path.join(c100b, split + ".bin"), "wb") as f:
        f.write(np.concatenate([coarse.astype(np.uint8)[:, None], fine.astype(np.uint8)[:, None], data], 1).tobytes())
with open(os.path.join(c100, "meta"), "wb") as f:
    pickle.dump({b"fine_label_names": [s.encode() for s in fine_names],
                 b"coarse_label_names": [s.encode() for s in coarse_names]}, f, protocol=2)
open(os.path.join(c100b, "fine_label_names.txt"), "w").write("\n".join(fine_names) + "\n")
open(os.path.join(c100b, "coarse_label_names.txt"), "w").write("\n".join(coarse_names) + "\n")
r = prep("--cifar", c100, "--out", os.path.join(work, "from-c100py"))
got, attrs = load(os.path.join(work, "from-c100py"))
check(r.returncode == 0 and np.array_equal(got["train"][1], c100_arrays["train"][1])
      and np.array_equal(got["test"][0], chw_to_hwc(c100_arrays["test"][0]))
      and attrs["num_classes"] == 100 and list(attrs["class_names"]) == fine_names,
      "CIFAR-100 pickles: fine labels and names, images HWC")
r = prep("--cifar", c100b, "--out", os.path.join(work, "from-c100bin"))
check(r.returncode == 0 and same_shards(os.path.join(work, "from-c100py"), os.path.join(work, "from-c100bin")),
      "CIFAR-100 binary: the same shards as the pickles")
r = prep("--cifar", c100b, "--coarse", "--out", os.path.join(work, "from-c100coarse"))
got, attrs = load(os.path.join(work, "from-c100coarse"))
check(r.returncode == 0 and np.array_equal(got["train"][1], c100_arrays["train"][2])
      and attrs["num_classes"] == 20 and list(attrs["class_names"]) == coarse_names,
      "CIFAR-100 --coarse: the 20 superclasses")

# ---- 3. --test-fraction and launch/prep_digits.sh -------------------------------------------
np.savez(os.path.join(work, "all.npz"), images=images, labels=labels)
r1 = prep("--npz", os.path.join(work, "all.npz"), "--test-fraction", "0.2", "--seed", "3", "--out", os.path.join(work, "frac-a"))
r2 = prep("--npz", os.path.join(work, "all.npz"), "--test-fraction", "0.2", "--seed", "3", "--out", os.path.join(work, "frac-b"),
          "--shard-images", "500")
r3 = prep("--npz", os.path.join(work, "all.npz"), "--test-fraction", "0.2", "--seed", "4", "--out", os.path.join(work, "frac-c"))
ga, _ = load(os.path.join(work, "frac-a"))
gc, _ = load(os.path.join(work, "frac-c"))
check(r1.returncode == r2.returncode == r3.returncode == 0 and len(ga["test"][1]) == 359
      and len(ga["train"][1]) == 1438 and same_shards(os.path.join(work, "frac-a"), os.path.join(work, "frac-b"), False)
      and not np.array_equal(ga["test"][1], gc["test"][1]),
      "--test-fraction 0.2: 1438 + 359, the same for a seed (any shard size), another for another seed")
pd = os.path.join(work, "prep-digits")
r = subprocess.run(["bash", os.path.join(source, "launch", "prep_digits.sh"), pd, madtrain], capture_output=True, text=True)
gd, _ = load(pd) if r.returncode == 0 else ({}, None)
check(r.returncode == 0 and len(gd["train"][1]) == 1438 and len(gd["test"][1]) == 359,
      "launch/prep_digits.sh: 1438 train + 359 test digits")

# ---- 4. bad inputs: one line naming the file, exit 2, nothing written -----------------------
bad = os.path.join(work, "bad")
os.makedirs(bad)
t = os.path.join(bad, "truncated.bin")
open(t, "wb").write(open(os.path.join(c10b, "test_batch.bin"), "rb").read()[:-100])
fail_case("truncated-bin", ["--cifar", t, "--test-fraction", "0.2"], t)
t = os.path.join(bad, "data_batch_1")
open(t, "wb").write(open(os.path.join(c10, "data_batch_2"), "rb").read()[:5000])
fail_case("truncated-pickle", ["--cifar", t, "--test-fraction", "0.2"], t)
t = os.path.join(bad, "truncated.npz")
open(t, "wb").write(open(npzc, "rb").read()[:3000])
fail_case("truncated-npz", ["--npz", t], t)
tf = os.path.join(bad, "truncated-png")
shutil.copytree(os.path.join(folder, "train"), tf)
victim = os.path.join(tf, "3", sorted(os.listdir(os.path.join(tf, "3")))[4])
open(victim, "r+b").truncate(40)
fail_case("truncated-png", ["--folder", tf, "--test-fraction", "0.2"], victim)
if Image is not None:
    tj = os.path.join(bad, "truncated-jpeg")
    shutil.copytree(jf, tj)
    victim = os.path.join(tj, "0", sorted(f for f in os.listdir(os.path.join(tj, "0")) if f.endswith(".jpg"))[0])
    open(victim, "r+b").truncate(300)
    fail_case("truncated-jpeg", ["--folder", tj, "--test-fraction", "0"], victim)
t = os.path.join(bad, "wrong-size")
with open(t, "wb") as f:
    pickle.dump({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0, 1, 2, 3]}, f, protocol=2)
fail_case("wrong-size-pickle", ["--cifar", t, "--test-fraction", "0.2"], t)
t = os.path.join(bad, "mismatch.npz")
np.savez(t, images=images[:10], labels=labels[:9])
fail_case("wrong-size-npz", ["--npz", t, "--test-fraction", "0.2"], t)
nf = os.path.join(bad, "not-image")
shutil.copytree(os.path.join(folder, "train"), nf)
notes = os.path.join(nf, "7", "notes.txt")
open(notes, "w").write("not an image\n")
fail_case("not-an-image", ["--folder", nf, "--test-fraction", "0.2"], notes)
lb = os.path.join(bad, "cifar-10-label")
shutil.copytree(c10b, lb)
raw = bytearray(open(os.path.join(lb, "data_batch_2.bin"), "rb").read())
raw[5 * 3073] = 10
open(os.path.join(lb, "data_batch_2.bin"), "wb").write(raw)
fail_case("label-out-of-range", ["--cifar", lb], os.path.join(lb, "data_batch_2.bin"))
mf = os.path.join(bad, "mixed")
shutil.copytree(os.path.join(folder, "train"), mf)
odd = os.path.join(mf, "5", "zz-odd.png")
png(odd, np.zeros((9, 8), np.uint8))
fail_case("mixed-sizes", ["--folder", mf, "--test-fraction", "0.2"], odd)
t = os.path.join(bad, "evil")
open(t, "wb").write(b"\x80\x02cos\nsystem\nX\x07\x00\x00\x00echo hi\x85R.")
fail_case("code-calling-pickle", ["--cifar", t, "--test-fraction", "0.2"], "os.system")
fail_case("no-split", ["--npz", os.path.join(work, "all.npz")], "--test-fraction")

# ---- 5. damaged shards: prep check and the loader name the file ------------------------------
def damaged(name, edit):
    out = os.path.join(work, "damaged-" + name)
    shutil.copytree(os.path.join(work, "from-npz"), out)
    with h5py.File(os.path.join(out, "test-00000.h5"), "r+") as f:
        edit(f)
    return out, os.path.join(out, "test-00000.h5")


def flip_pixel(f):
    im = f["images"]
    im[0, 0, 0, 0] = 255 - im[0, 0, 0, 0]


def bad_label(f):
    f["labels"][3] = 10


def other_size(f):
    im = f["images"][:, :, :7, :]
    del f["images"]
    f.create_dataset("images", data=im)
    f.attrs["checksum_crc32"] = np.uint32(zlib.crc32(f["labels"][:].tobytes(), zlib.crc32(im.tobytes())))


for name, edit, want, where in (("checksum", flip_pixel, "checksum mismatch", "check"),
                                ("label", bad_label, "is outside [0, num_classes 10)", "check"),
                                ("size", other_size, "do not match the training images", "train")):
    out, shard = damaged(name, edit)
    args = ["prep", "check", out] if where == "check" else [
        "train", "data.path=" + out, "data.eval_split=test", "run.dir=" + out + "/run"]
    r = subprocess.run([madtrain, *args], capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if "error" in l]
    check(r.returncode != 0 and len(lines) == 1 and want in lines[0]
          and (shard in lines[0] or out in lines[0]),
          f"damaged image shard ({name}): {where} says {lines}")

print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
