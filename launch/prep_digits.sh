#!/usr/bin/env bash
# scikit-learn's 8x8 handwritten digits (1,797 images, shipped inside Debian's python3-sklearn,
# so no download) as image shards in OUTDIR: 1,438 train + 359 test images, 10 classes.
# The 17 grey levels (0..16) are stored as uint8 round(v * 255 / 16); the test split is
# madtrain's --test-fraction 0.2 with seed 0 (a keyed permutation: the same on every machine).
# usage: launch/prep_digits.sh OUTDIR [MADTRAIN]
set -euo pipefail
out=${1:?usage: launch/prep_digits.sh OUTDIR [MADTRAIN]}
here=$(cd "$(dirname "$0")/.." && pwd)
madtrain=${2:-$here/build/madtrain}
mkdir -p "$out"
/usr/bin/python3 - "$out/digits.npz" <<'PY'
import sys
try:
    import numpy as np
    from sklearn.datasets import load_digits
except ImportError as e:
    sys.exit(f"prep_digits: {e}: install python3-sklearn (launch/setup.sh does)")
d = load_digits()
images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)  # [1797, 8, 8], 0..16 -> 0..255
np.savez(sys.argv[1], images=images, labels=d.target.astype(np.int32),
         class_names=np.array([str(c) for c in d.target_names]))
PY
"$madtrain" prep images --npz "$out/digits.npz" --test-fraction 0.2 --seed 0 --out "$out"
