#!/usr/bin/env bash
# Context parallelism (parallel.context): the ranks of a group split every sequence into
# slices and pass the mixers' states (and the short convolution's window) along the group.
#   - 1 rank == 2 ranks splitting T == 4 ranks splitting T == 4 ranks as 2 groups of 2, after 12
#     training steps, parameters and AdamW moments within 1e-5 (relative), for each mixer family
#     that carries its state (the users' oscillators too) and for softmax attention (each slice
#     reads the earlier slices' keys and values); rotary positions, learned positions and the short convolution on;
#   - the same with activation checkpointing and ZeRO-1 (2 groups of 2);
#   - the evaluation of the same runs gives the same test accuracy (whole examples, not slices)
#     and loss, as printed;
#   - a split run stopped at step 6 and resumed ends bitwise where the straight split run ends;
#     resumed on 1 rank it ends where the 1-rank run ends (within 1e-5);
#   - bad groups are refused with one line and exit 2.
set -euo pipefail
madtrain=$1 params_diff=$2 work=${3:-$(mktemp -d)}
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
rm -rf "$work"; mkdir -p "$work"  # a rerun starts clean (resumes read these folders)
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
common=(data.task=mqar data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4
        model.d_model=32 model.n_heads=2 model.n_layers=2 train.steps=12 train.batch_size=8
        train.eval_every=0 train.log_every=6 data.test_examples=16 cpu.threads=1
        mixer.conv_kernel=3 model.pos_embedding=true)

sliced() {  # LOG GROUPS SIZE TOKENS: the run split its sequences as the comparison assumes
  grep -q "^context: $2 group(s) of $3 ranks, each rank a slice of $4 tokens" "$1" \
    || { echo "FAIL: $1 did not run as $2 group(s) of $3 ranks x $4 tokens"; exit 1; }
}
test_acc() { sed -n 's/^done: .*test acc \([0-9.]*\), test loss \([0-9.]*\).*/\1 \2/p' "$1"; }

for mixer in softmax linear cosformer decay gla mamba2 deltanet gated_deltanet hydra linoss \
             oscgate circulant_diagonal; do
  extra=(model.mixer=$mixer)
  [[ $mixer == linear ]] && extra+=(model.rope=on)
  [[ $mixer == cosformer ]] && extra+=(mixer.max_len=32)
  [[ $mixer == linoss || $mixer == oscgate ]] && extra+=(mixer.oscillators=8 mixer.chunk=4)
  [[ $mixer == circulant_diagonal ]] && extra+=(mixer.circulant_n=8 mixer.chunk=4)
  "$madtrain" "${common[@]}" "${extra[@]}" run.dir="$work/$mixer-1" > "$work/$mixer-1.log"
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" "${extra[@]}" parallel.context=2 \
    run.dir="$work/$mixer-c2" > "$work/$mixer-c2.log"
  "${mpirun[@]}" -n 4 "$madtrain" "${common[@]}" "${extra[@]}" parallel.context=4 \
    run.dir="$work/$mixer-c4" > "$work/$mixer-c4.log"
  "${mpirun[@]}" -n 4 "$madtrain" "${common[@]}" "${extra[@]}" parallel.context=2 \
    run.dir="$work/$mixer-2x2" > "$work/$mixer-2x2.log"
  sliced "$work/$mixer-c2.log" 1 2 16
  sliced "$work/$mixer-c4.log" 1 4 8
  sliced "$work/$mixer-2x2.log" 2 2 16
  for run in c2 c4 2x2; do
    echo "[$mixer] 1 rank vs $run:"
    "$params_diff" "$work/$mixer-1/final_state.bin" "$work/$mixer-$run/final_state.bin" 1e-5
    a=$(test_acc "$work/$mixer-1.log") b=$(test_acc "$work/$mixer-$run.log")
    [[ -n $a && $a == "$b" ]] \
      || { echo "FAIL: [$mixer] test acc, loss $a (1 rank) vs $b ($run)"; exit 1; }
  done
done

# With activation checkpointing (the recomputed forward passes states along the group again)
# and ZeRO-1 over the 4 ranks of 2 groups.
"${mpirun[@]}" -n 4 "$madtrain" "${common[@]}" model.mixer=gla parallel.context=2 \
  model.recompute=all optim.zero=1 run.dir="$work/gla-2x2-recompute-zero" \
  > "$work/gla-2x2-recompute-zero.log"
sliced "$work/gla-2x2-recompute-zero.log" 2 2 16
echo "[gla] 1 rank vs 2 groups of 2 with model.recompute=all and optim.zero=1:"
"$params_diff" "$work/gla-1/final_state.bin" "$work/gla-2x2-recompute-zero/final_state.bin" 1e-5
"${mpirun[@]}" -n 4 "$madtrain" "${common[@]}" model.mixer=softmax parallel.context=4 \
  model.recompute=all run.dir="$work/softmax-c4-recompute" > "$work/softmax-c4-recompute.log"
sliced "$work/softmax-c4-recompute.log" 1 4 8
echo "[softmax] 1 rank vs 4 slices with model.recompute=all:"
"$params_diff" "$work/softmax-1/final_state.bin" "$work/softmax-c4-recompute/final_state.bin" 1e-5

# Resume: split run stopped at step 6, resumed split (bitwise) and resumed on one rank.
gla=(model.mixer=gla checkpoint.every_steps=3)
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" "${gla[@]}" parallel.context=2 \
  run.dir="$work/resume-straight" > /dev/null
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" "${gla[@]}" parallel.context=2 \
  debug.stop_at_step=6 run.dir="$work/resume-split" > /dev/null
cp -r "$work/resume-split" "$work/resume-1rank"
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" "${gla[@]}" parallel.context=2 \
  run.dir="$work/resume-split" --resume auto > "$work/resume-split.log"
"$madtrain" "${common[@]}" "${gla[@]}" run.dir="$work/resume-1rank" --resume auto \
  > "$work/resume-1rank.log"
for f in resume-split resume-1rank; do
  grep -q "^resume: .*ckpt-00000006.h5 at step 6" "$work/$f.log" \
    || { echo "FAIL: $f did not resume at step 6"; exit 1; }
done
echo "[gla] split run resumed at step 6 vs straight:"
"$params_diff" "$work/resume-straight/final_state.bin" "$work/resume-split/final_state.bin" --bitwise
echo "[gla] split run resumed on 1 rank vs 1 rank straight:"
"$params_diff" "$work/gla-1/final_state.bin" "$work/resume-1rank/final_state.bin" 1e-5

# Bad groups: one line naming the key, exit 2, on every rank count.
refused() {  # WHAT PATTERN CMD...: exit 2 and the line
  local what=$1 pattern=$2; shift 2
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [[ $rc == 2 ]] || { echo "FAIL: $what: exit $rc (expected 2)"; echo "$out"; exit 1; }
  grep -q "$pattern" <<< "$out" || { echo "FAIL: $what: no '$pattern' in:"; echo "$out"; exit 1; }
  echo "ok   refused: $what"
}
refused "3 ranks in groups of 2" "parallel.context (2) must divide the number of ranks (3)" \
  "${mpirun[@]}" -n 3 "$madtrain" "${common[@]}" parallel.context=2 run.dir="$work/bad1"
refused "T 32 in 3 slices" "parallel.context (3) must divide the sequence length (32)" \
  "${mpirun[@]}" -n 3 "$madtrain" "${common[@]}" parallel.context=3 train.batch_size=3 \
  run.dir="$work/bad2"
refused "loglinear has neither form" "model.mixer loglinear has no context-parallel form" \
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=loglinear parallel.context=2 \
  run.dir="$work/bad3"
refused "a bidirectional mixer" "mixer.causal false reads the whole sequence" \
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" model.mixer=linear mixer.causal=false \
  parallel.context=2 run.dir="$work/bad6"
refused "packed rows" "parallel.context > 1 does not split packed rows" \
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" data.task=word_problem data.pack=true \
  parallel.context=2 \
  run.dir="$work/bad4"
refused "slices shorter than the convolution" "shorter than the short convolution's window" \
  "${mpirun[@]}" -n 4 "$madtrain" "${common[@]}" data.seq_len=8 data.num_kv_pairs=2 \
  model.mixer=linear mixer.conv_kernel=4 parallel.context=4 run.dir="$work/bad5"
for d in bad1 bad2 bad3 bad4 bad5 bad6; do
  [[ ! -e "$work/$d/final_state.bin" ]] || { echo "FAIL: $d wrote a final state"; exit 1; }
done
echo "PASSED"
