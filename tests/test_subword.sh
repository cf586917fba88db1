#!/usr/bin/env bash
# Subword prep (madtrain prep wikitext --tokenizer bpe|unigram) on the WikiText-2 sample:
# - a BPE model of 2000 pieces is trained on the training split and saved beside the shards
#   (tokenizer.model, vocab.txt with one piece a line), and `prep check` accepts the folder;
# - the same command again gives the same pieces and shards (a deterministic trainer);
# - a model file that is not the one that wrote the shards (another model, or none) is refused
#   by `prep check` with one line naming it;
# - training on the shards works (40 steps: the logged loss falls by half a nat);
# - a bad --vocab-size or tokenizer name is one line and exit 2.
# Skipped (exit 77) when the sample is absent or madtrain was built without SentencePiece.
#
# usage: test_subword.sh MADTRAIN WIKITEXT_DIR WORK_DIR
set -uo pipefail
madtrain=$1 data=$2 work=$3
if [[ ! -f "$data/valid.txt" || ! -f "$data/test.txt" ]]; then
  echo "SKIP: the WikiText-2 sample ($data/valid.txt, test.txt) is absent"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work"
fail=0
check() { if ! eval "$1"; then echo "FAIL: $2"; fail=1; fi; }
prep() { "$madtrain" prep wikitext --train "$data/valid.txt" --valid "$data/test.txt" "$@"; }

prep --tokenizer bpe --vocab-size 2000 --out "$work/bpe" > "$work/bpe.log" 2>&1
rc=$?
if [[ $rc -ne 0 ]] && grep -q "built without it" "$work/bpe.log"; then
  echo "SKIP: $(cat "$work/bpe.log")"
  exit 77
fi
cat "$work/bpe.log"
check "[[ $rc -eq 0 ]]" "prep --tokenizer bpe exited $rc"
check "[[ -s $work/bpe/tokenizer.model && \$(wc -l < $work/bpe/vocab.txt) -eq 2000 ]]" \
  "no tokenizer.model, or vocab.txt does not hold 2000 pieces"
"$madtrain" prep check "$work/bpe" > "$work/check.log" 2>&1
check "[[ $? -eq 0 ]] && grep -q 'vocab 2000  lm/bpe-' $work/check.log" "prep check refused the BPE shards: $(tail -2 "$work/check.log")"

prep --tokenizer bpe --vocab-size 2000 --out "$work/bpe2" > /dev/null 2>&1
# (The model files differ in the paths the trainer records in them, so the pieces and the
# shards' data checksums are compared.)
check "cmp -s $work/bpe/vocab.txt $work/bpe2/vocab.txt" "a second run trained other pieces"
check "[[ \"\$($madtrain prep check $work/bpe | grep -o 'crc32 [0-9a-f]*')\" == \"\$($madtrain prep check $work/bpe2 | grep -o 'crc32 [0-9a-f]*')\" ]]" \
  "a second run wrote other shards"

prep --tokenizer unigram --vocab-size 1500 --out "$work/uni" > "$work/uni.log" 2>&1
check "[[ $? -eq 0 ]] && [[ \$(wc -l < $work/uni/vocab.txt) -eq 1500 ]]" "prep --tokenizer unigram failed: $(tail -2 "$work/uni.log")"
cp "$work/uni/tokenizer.model" "$work/bpe2/tokenizer.model"
"$madtrain" prep check "$work/bpe2" > "$work/mismatch.log" 2>&1
rc=$?
check "[[ $rc -ne 0 ]] && grep -q \"^madtrain: error: .*train-00000.h5: written by tokenizer bpe-[0-9a-f]*, but $work/bpe2/tokenizer.model has crc32 [0-9a-f]*: not the model that wrote the shards\" $work/mismatch.log" \
  "another model beside the shards was not refused (exit $rc): $(head -2 "$work/mismatch.log")"
rm "$work/bpe2/tokenizer.model"
"$madtrain" prep check "$work/bpe2" > "$work/missing.log" 2>&1
check "[[ $? -ne 0 ]] && grep -q 'tokenizer.model is missing: not the model' $work/missing.log" \
  "a missing tokenizer.model was not refused"

"$madtrain" data.path="$work/bpe" data.seq_len=64 model.d_model=64 model.n_layers=2 \
  model.mixer=softmax train.batch_size=16 train.steps=40 train.log_every=5 train.eval_every=0 \
  optim.lr=3e-3 optim.warmup_steps=2 cpu.threads=1 run.dir="$work/run" > "$work/train.log" 2>&1
check "[[ $? -eq 0 ]]" "training on the BPE shards failed: $(tail -3 "$work/train.log")"
first=$(grep -o '"loss":[0-9.e+-]*' "$work/run/metrics.jsonl" | head -1 | cut -d: -f2)
last=$(grep '"event":"train"' "$work/run/metrics.jsonl" | tail -1 | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2)
echo "training on BPE shards: logged loss $first -> $last (ln 2000 = 7.60)"
check "awk -v a=$first -v b=$last 'BEGIN { exit !(b < a - 0.5) }'" "the loss did not fall by half a nat in 40 steps ($first -> $last)"

for bad in "--vocab-size 5" "--tokenizer wordpiece"; do
  prep --tokenizer bpe $bad --out "$work/bad" > "$work/bad.log" 2>&1
  rc=$?
  check "[[ $rc -eq 2 && \$(wc -l < $work/bad.log) -eq 1 ]] && grep -q '^madtrain: error: prep wikitext: ' $work/bad.log" \
    "'$bad' was not one line and exit 2 (exit $rc: $(cat "$work/bad.log"))"
done
[[ $fail -eq 0 ]] && echo "PASSED" || echo "FAILED"
exit $fail
