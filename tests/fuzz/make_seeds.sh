#!/usr/bin/env bash
# Regenerates the HDF5 seeds of tests/fuzz/corpus/ (shard and checkpoint) with a built madtrain:
#   bash tests/fuzz/make_seeds.sh build/madtrain
# The config and manifest seeds are hand-written text files, kept as they are.
set -euo pipefail
madtrain=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
small=(data.seq_len=16 data.vocab_size=16 data.num_kv_pairs=2 data.train_examples=4
       data.test_examples=2)
mkdir -p "$here/corpus/shard" "$here/corpus/checkpoint" "$here/corpus/manifest"
# Sequence shards (contiguous, and gzip-chunked: the H5Dread path), and LM token shards.
"$madtrain" prep synthetic --task mqar "${small[@]}" --out "$work/seq" > /dev/null
"$madtrain" prep synthetic --task ar data.seq_len=12 data.ar_symbols=4 data.train_examples=3 \
  data.test_examples=1 --gzip 1 --out "$work/gz" > /dev/null
printf 'the cat sat on the mat\n = Title =\n a dog ran\n' > "$work/t.txt"
"$madtrain" prep wikitext --train "$work/t.txt" --valid "$work/t.txt" --out "$work/lm" > /dev/null
"$madtrain" prep wikitext --train "$work/t.txt" --tokenizer byte --dtype uint32 \
  --out "$work/lm32" > /dev/null
cp "$work/seq/train-00000.h5" "$here/corpus/shard/seq-mqar.h5"
cp "$work/gz/train-00000.h5" "$here/corpus/shard/seq-ar-gzip.h5"
cp "$work/lm/train-00000.h5" "$here/corpus/shard/lm-word-uint16.h5"
cp "$work/lm32/train-00000.h5" "$here/corpus/shard/lm-byte-uint32.h5"
cp "$work/seq/manifest.tsv" "$here/corpus/manifest/prep-synthetic.tsv"
cp "$work/lm/manifest.tsv" "$here/corpus/manifest/prep-wikitext.tsv"
# Checkpoints of the tiny model fuzz_checkpoint builds: 2 steps, one after each.
"$madtrain" train --config "$here/tiny.yaml" train.steps=2 train.batch_size=2 \
  checkpoint.every_steps=1 checkpoint.keep=2 device=cpu cpu.threads=1 run.dir="$work/run" \
  > /dev/null
cp "$work/run/ckpt-00000001.h5" "$here/corpus/checkpoint/tiny-step1.h5"
cp "$work/run/ckpt-00000002.h5" "$here/corpus/checkpoint/tiny-step2.h5"
ls -l "$here"/corpus/shard "$here"/corpus/checkpoint
