#!/usr/bin/env bash
# Bad shard input: every case stops with exactly one error line naming the file and the
# problem (HDF5's own error stack silenced) and exit code 1; the stack appears with
# checkpoint.hdf5_errors=true. Under mpirun -n 2 a fault that only one rank sees (the shard it
# checksums, a token it reads) still ends every rank, without a hang.
#
# usage: test_data_errors.sh MADTRAIN TEST_DATA_FIXTURES WORK_DIR
set -uo pipefail
madtrain=$1 fixtures=$2 work=$3
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
rm -rf "$work" && mkdir -p "$work"
"$fixtures" "$work" > /dev/null || { echo "FAIL: writing the fixtures"; exit 1; }
fast=(run.dir="$work/run" train.steps=2 train.eval_every=0 model.d_model=16 train.batch_size=4
      cpu.threads=1)
fail=0

expect() {  # expect CASE "<message after 'madtrain: error: '>" [key=value ...]
  local case=$1 want="madtrain: error: $2"; shift 2
  local out rc
  out=$("$madtrain" data.path="$work/$case" "${fast[@]}" "$@" 2>&1 >/dev/null); rc=$?
  if [[ $rc -ne 1 || "$out" != "$want" ]]; then
    echo "FAIL: $case $*"; echo "  want (exit 1): $want"; echo "  got  (exit $rc): $out"; fail=1
  else
    echo "ok: $case $*"
  fi
}

if ! "$madtrain" data.path="$work/good" "${fast[@]}" > /dev/null; then
  echo "FAIL: the good fixture does not train"; exit 1
fi
d=$work
expect nope "cannot read $d/nope/manifest.tsv: No such file or directory (is data.path a folder made by madtrain prep?)"
expect missing-shard "$d/missing-shard/train-00000.h5: cannot open: No such file or directory"
expect no-dataset "$d/no-dataset/train-00000.h5: no dataset 'tokens' (language modelling) or 'inputs' + 'targets' (sequences)"
expect float-tokens "$d/float-tokens/train-00000.h5: dataset 'tokens' holds float64; expected uint16 or uint32 token ids"
expect int64-tokens "$d/int64-tokens/train-00000.h5: dataset 'tokens' holds int64; expected uint16 or uint32 token ids"
expect future-version "$d/future-version/train-00000.h5: format_version 2 is newer than this madtrain reads (1): upgrade madtrain"
expect missing-attr "$d/missing-attr/train-00000.h5: missing attribute 'vocab_size' (docs/data-format.md lists them)"
expect bad-token "$d/bad-token/train-00000.h5: token id 70 at tokens[5] is >= vocab_size 64"
# Without the open-time check the reader still refuses the id when a batch reaches it.
expect bad-token "$d/bad-token/train-00000.h5: token id 70 at tokens[5] is >= vocab_size 64" data.verify=false train.batch_size=16
expect bad-target "$d/bad-target/train-00000.h5: id 99 at targets[3, 7] is outside [0, vocab_size 64)" data.seq_len=32
# Chunks never stored read as fill values: refused at open, verify or not.
expect unwritten "$d/unwritten/train-00000.h5: dataset 'tokens' is not fully written (some chunks were never stored)"
expect unwritten "$d/unwritten/train-00000.h5: dataset 'tokens' is not fully written (some chunks were never stored)" data.verify=false
expect truncated "$d/truncated/train-00000.h5: not a readable HDF5 file (truncated file: eof = 1500, sblock->base_addr = 0, stored_eof = 10192)"
expect not-hdf5 "$d/not-hdf5/train-00000.h5: not a readable HDF5 file (file signature not found)"
expect corrupted "$d/corrupted/train-00000.h5: checksum mismatch: the data hashes to crc32 0x0970de74 but checksum_crc32 says 0xe252c243 (corrupted file)"
expect future-manifest "$d/future-manifest/manifest.tsv: format version 2 is newer than this madtrain reads (1): upgrade madtrain"
expect manifest-count "$d/manifest-count/train-00000.h5: manifest.tsv lists 999 tokens but the shard holds 1000 (replaced or truncated?)"
expect no-valid "$d/no-valid/manifest.tsv lists no shard of split 'valid' (splits there: train)"
# A manifest naming a directory, or the same shard twice; shards of different T in one folder
# (each file named, each described once).
cp -r "$d/good" "$d/shard-dir" && mkdir "$d/shard-dir/dir.h5" && sed -i 's/train-00000.h5/dir.h5/' "$d/shard-dir/manifest.tsv"
expect shard-dir "$d/shard-dir/dir.h5: is a directory, not a shard file"
cp -r "$d/good" "$d/dup-shard" && printf 'train\ttrain-00000.h5\t1000\n' >> "$d/dup-shard/manifest.tsv"
expect dup-shard "$d/dup-shard/manifest.tsv:4: lists train-00000.h5 a second time (one line per shard)"
"$MADTRAIN_BIN" prep synthetic --out "$d/T16" data.task=mqar data.seq_len=16 data.vocab_size=64 \
  data.num_kv_pairs=2 data.train_examples=31 data.test_examples=31 > /dev/null
mkdir -p "$d/mixed-T" && cp "$d/seq-T32/train-00000.h5" "$d/T16/valid-00000.h5" "$d/mixed-T/"
printf 'madtrain-shards\t1\ntrain\ttrain-00000.h5\t992\nvalid\tvalid-00000.h5\t496\n' > "$d/mixed-T/manifest.tsv"
expect mixed-T "$d/mixed-T/valid-00000.h5 holds sequences of 16 tokens (task 'mqar', tokenizer 'none', vocab_size 64) but $d/mixed-T/train-00000.h5 holds sequences of 32 tokens (task 'mqar', tokenizer 'none', vocab_size 64): the shards of a data set must match" data.seq_len=32

expect seq-T32 "data.seq_len is 64 but the shards in $d/seq-T32 hold sequences of 32 tokens: set data.seq_len=32"

# Asked for, HDF5's own stack comes first and our line still ends the output.
out=$("$madtrain" data.path="$work/truncated" "${fast[@]}" checkpoint.hdf5_errors=true 2>&1 >/dev/null); rc=$?
if [[ $rc -eq 1 ]] && grep -q "HDF5-DIAG" <<< "$out" && [[ "$(tail -1 <<< "$out")" == "madtrain: error: $d/truncated/train-00000.h5: not a readable HDF5 file"* ]]; then
  echo "ok: checkpoint.hdf5_errors=true shows HDF5's error stack"
else
  echo "FAIL: checkpoint.hdf5_errors=true (exit $rc):"; echo "$out"; fail=1
fi

if command -v mpirun > /dev/null; then
  mpirun=(timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none -n 2)
  # The failing rank's error ends the job through MPI_Abort with its exit code 1, which mpirun
  # returns; any other non-zero code (a crash, 124 for a hang) is a failure.
  mpi_expect() {  # mpi_expect CASE "<text stderr must contain>" [key=value ...]
    local case=$1 want=$2; shift 2
    local out rc
    out=$("${mpirun[@]}" "$madtrain" data.path="$work/$case" "${fast[@]}" "$@" 2>&1 >/dev/null); rc=$?
    if [[ $rc -ne 1 ]] || ! grep -qF "$want" <<< "$out"; then
      echo "FAIL: mpirun -n 2 $case $*: exit $rc (124 = hung)"; echo "$out" | head -20; fail=1
    else
      echo "ok: mpirun -n 2 $case: exit $rc, every rank stopped"
    fi
  }
  if ! "${mpirun[@]}" "$madtrain" data.path="$work/good" "${fast[@]}" > /dev/null 2>&1; then
    echo "FAIL: the good fixture does not train on 2 ranks"; fail=1
  fi
  # Shard 1 is checksummed by rank 1 only.
  mpi_expect corrupted-second "madtrain: error: [rank 1] $d/corrupted-second/train-00001.h5: checksum mismatch"
  mpi_expect bad-token "$d/bad-token/train-00000.h5: token id 70 at tokens[5] is >= vocab_size 64" data.verify=false train.batch_size=16
  mpi_expect missing-shard "$d/missing-shard/train-00000.h5: cannot open: No such file or directory"
fi
exit $fail
