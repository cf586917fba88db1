#!/usr/bin/env bash
# Checkpoints, exact resume and faults (issue: checkpoints/preemption). Each block asserts one
# behaviour; the script stops at the first failure.
set -uo pipefail
madtrain=$1 params_diff=$2 work=$3
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
rm -rf "$work"; mkdir -p "$work"
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
common=(data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4 model.d_model=32 model.n_heads=2
        train.steps=40 train.batch_size=8 train.eval_every=0 train.log_every=10
        data.test_examples=16 cpu.threads=1 checkpoint.keep=50)
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
# summary_of DIR FIELD: FIELD of the last summary line in DIR/metrics.jsonl (empty if none).
summary_of() {
  grep '"event":"summary"' "$1/metrics.jsonl" 2> /dev/null | tail -n 1 \
    | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}
same() { "$params_diff" "$1" "$2" --bitwise > "$work/diff.txt" || { cat "$work/diff.txt"; fail "$3"; }; ok "$3"; }
close() { "$params_diff" "$1" "$2" 1e-5 > "$work/diff.txt" || { cat "$work/diff.txt"; fail "$3"; }; ok "$3"; }
expect_err() {  # expect_err "<substring>" <exit code> cmd...
  local want=$1 code=$2; shift 2
  local out; out=$("$@" 2>&1 > /dev/null); local rc=$?
  [[ $rc -eq $code && "$out" == *"$want"* ]] || { echo "$out"; fail "expected exit $code and '$want' from: $*"; }
  ok "exit $code: $want"
}

# ran DIR STEP WORLD STEPS_THIS_RUN STATUS WHAT: the run's last summary says it reached STEP on
# WORLD rank(s), STEPS_THIS_RUN of them in this run, and ended with STATUS.
ran() {
  local got="$(summary_of "$1" step) $(summary_of "$1" world) $(summary_of "$1" steps_this_run) $(summary_of "$1" status)"
  [[ $got == "$2 $3 $4 $5" ]] || fail "$6: summary says step/world/steps this run/status '$got', expected '$2 $3 $4 $5'"
}
# resumed LOG DIR STEP WORLD WHAT: LOG shows a resume from DIR's step-STEP checkpoint, written on
# WORLD rank(s). Without this a resume that silently started afresh would pass every comparison.
resumed() {
  local want; printf -v want 'resume: %s/ckpt-%08d.h5 at step %d (written by %d rank(s))' "$2" "$3" "$3" "$4"
  grep -qxF "$want" "$1" || { cat "$1"; fail "$5: no line '$want'"; }
}

# Straight runs: 1 rank and 2 ranks. Training must move the parameters, or every comparison
# below would hold for a trainer that does nothing.
"$madtrain" "${common[@]}" run.dir="$work/straight1" > /dev/null || fail "straight 1-rank run"
ran "$work/straight1" 40 1 40 finished "straight 1-rank run"
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" run.dir="$work/straight2" > /dev/null || fail "straight 2-rank run"
ran "$work/straight2" 40 2 40 finished "straight 2-rank run"
"$madtrain" "${common[@]}" train.steps=1 optim.lr=0 optim.warmup_steps=0 run.dir="$work/untrained" > /dev/null || fail "untrained run"
"$params_diff" "$work/untrained/final_state.bin" "$work/straight1/final_state.bin" 1e-3 > /dev/null \
  && fail "40 steps did not change the parameters"

# Bitwise resume: stop after 20 steps (the signal path), resume, 20 more.
"$madtrain" "${common[@]}" run.dir="$work/split1" debug.stop_at_step=20 > /dev/null || fail "stop at 20"
[[ $(cat "$work/split1/status") == preempted ]] || fail "status after a stop request is not 'preempted'"
ran "$work/split1" 20 1 20 preempted "stop at 20"
"$madtrain" "${common[@]}" run.dir="$work/split1" --resume auto > "$work/split1.log" || fail "resume"
resumed "$work/split1.log" "$work/split1" 20 1 "1-rank resume"
ran "$work/split1" 40 1 20 finished "1-rank resume"
same "$work/straight1/final_state.bin" "$work/split1/final_state.bin" "1 rank: 20 + resume + 20 == 40 straight (params, moments bitwise)"
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" run.dir="$work/split2" debug.stop_at_step=20 > /dev/null || fail "2-rank stop"
ran "$work/split2" 20 2 20 preempted "2-rank stop at 20"
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" run.dir="$work/split2" --resume auto > "$work/split2.log" || fail "2-rank resume"
resumed "$work/split2.log" "$work/split2" 20 2 "2-rank resume"
ran "$work/split2" 40 2 20 finished "2-rank resume"
same "$work/straight2/final_state.bin" "$work/split2/final_state.bin" "2 ranks: stop + resume == straight (bitwise)"

# Resume onto another world size: 2 -> 1 and 1 -> 2 ranks (same global batch).
cp -r "$work/split2" "$work/to1"; rm -f "$work/to1/final_state.bin" "$work/to1/ckpt-00000040.h5"
echo ckpt-00000020.h5 > "$work/to1/latest"
"$madtrain" "${common[@]}" run.dir="$work/to1" --resume auto > "$work/to1.log" || fail "resume 2 -> 1"
resumed "$work/to1.log" "$work/to1" 20 2 "resume 2 ranks -> 1 rank"
ran "$work/to1" 40 1 20 finished "resume 2 ranks -> 1 rank"
close "$work/straight1/final_state.bin" "$work/to1/final_state.bin" "resume 2 ranks -> 1 rank within 1e-5"
"$madtrain" "${common[@]}" run.dir="$work/to2" debug.stop_at_step=20 > /dev/null || fail "stop at 20 (1 -> 2)"
ran "$work/to2" 20 1 20 preempted "stop at 20 (1 -> 2)"
"${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" run.dir="$work/to2" --resume auto > "$work/to2.log" || fail "resume 1 -> 2"
resumed "$work/to2.log" "$work/to2" 20 1 "resume 1 rank -> 2 ranks"
ran "$work/to2" 40 2 20 finished "resume 1 rank -> 2 ranks"
close "$work/straight2/final_state.bin" "$work/to2/final_state.bin" "resume 1 rank -> 2 ranks within 1e-5"

# kill -9 trials. Each trial kills a run with SIGKILL and proves where the kill landed: `wait`
# reports signal 9 (the run did not end by itself), the run had logged training steps, and it
# had not finished (no summary line, no status file, no final state). Then it resumes
# (--resume auto) from exactly the checkpoint it must use, runs the remaining steps and ends
# bitwise equal to the uninterrupted run.
#  - trials 1-6: killed once training passes a random step; resumed from the checkpoint `latest`
#    names, strictly between step 0 and the last step.
#  - trials 7-10: killed in the middle of a checkpoint write. The writer is frozen (SIGSTOP) while
#    its temporary file ckpt-N.h5.tmp.<pid> exists and killed while frozen, so the kill lands
#    mid-write by construction; the temporary file is still there after the kill, no file has
#    the checkpoint's real name, and the run resumes from the checkpoint before N. Trials 7-8
#    pick a random checkpoint, trial 9 the final one (written after step 300, resumed from 294),
#    trial 10 the first one (step 7: nothing to resume from, so the run starts from scratch).
# KILL_SEED=<n> repeats a sequence of random moments.
long=(data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4 model.d_model=32 model.n_heads=2
      train.steps=300 train.batch_size=8 train.eval_every=0 train.log_every=50 data.test_examples=16
      cpu.threads=1 checkpoint.every_steps=7 checkpoint.keep=2)
steps=300 every=7
"$madtrain" "${long[@]}" run.dir="$work/kill-straight" > /dev/null || fail "kill straight run"
[[ $(summary_of "$work/kill-straight" status) == finished ]] || fail "kill straight run did not finish"
seed=${KILL_SEED:-$RANDOM}; RANDOM=$seed
echo "kill -9 trials: KILL_SEED=$seed"
mkfifo "$work/snooze"; exec {snooze_fd}<> "$work/snooze"
snooze() { read -r -t "$1" -u "$snooze_fd" _; }  # a sleep without a fork: nothing is ever written
# proc_state PID: sets `state` to the process state letter (R, S, D, T, Z), empty once reaped.
proc_state() { state=; read -r _ _ state _ 2> /dev/null < "/proc/$1/stat"; }
running() { proc_state "$1"; [[ -n $state && $state != Z ]]; }
# reach_step PID DIR STEP: waits until the run has logged step STEP or later; 1 if it ended first.
reach_step() {
  local last
  while running "$1"; do
    last=$(tail -n 1 "$2/metrics.jsonl" 2> /dev/null | sed -n 's/.*"step":\([0-9]*\).*/\1/p')
    [[ -n $last ]] && (( last >= $3 )) && return 0
    snooze 0.005
  done
  return 1
}
# freeze_mid_write PID DIR LO HI: stops PID (SIGSTOP) while it writes a checkpoint N, LO <= N <=
# HI, and its temporary file exists; sets `frozen` to N. 1 if the run passed HI or ended first.
freeze_mid_write() {
  local pid=$1 dir=$2 lo=$3 hi=$4 tmp n
  while running "$pid"; do
    for tmp in "$dir"/ckpt-*.h5.tmp."$pid"; do
      [[ -e $tmp ]] || continue
      n=${tmp##*/ckpt-}; n=$((10#${n%%.h5.tmp.*}))
      (( n > hi )) && return 1
      (( n < lo )) && continue
      kill -STOP "$pid" 2> /dev/null || return 1
      while proc_state "$pid"; [[ $state != T && $state != Z && -n $state ]]; do snooze 0.001; done
      [[ $state == T ]] || return 1
      # Frozen: if the temporary file is still there, the write is unfinished.
      [[ -e $tmp ]] && { frozen=$n; return 0; }
      kill -CONT "$pid"  # the rename beat the stop: wait for a later write
    done
    snooze 0.001
  done
  return 1
}
mid_write=0 by_chance=0 from_scratch=0 retries=0
for trial in $(seq 1 10); do
  dir="$work/kill-$trial"
  case $trial in
    [1-6]) mode=step target=$(( 10 + RANDOM % 270 ));;  # a step in [10, 279]
    [7-8]) mode=write lo=$(( 14 + RANDOM % 274 )) hi=294;;  # the first write at or after lo
    9) mode=write lo=$steps hi=$steps;;
    10) mode=write lo=$every hi=$every;;
  esac
  for attempt in 1 2 3 4 5; do
    rm -rf "$dir"
    "$madtrain" "${long[@]}" train.log_every=1 run.dir="$dir" > "$dir.killed.log" 2>&1 & pid=$!
    if [[ $mode == step ]]; then reach_step "$pid" "$dir" "$target"; else freeze_mid_write "$pid" "$dir" "$lo" "$hi"; fi
    landed=$?
    kill -9 "$pid" 2> /dev/null; wait "$pid" 2> /dev/null; rc=$?
    (( landed == 0 )) && break
    # The moment passed before the kill (a write finished between the look and the stop).
    echo "note: kill -9 trial $trial, attempt $attempt: the moment passed (exit $rc); again"
    retries=$(( retries + 1 ))
  done
  (( landed == 0 )) || fail "kill -9 trial $trial: 5 attempts, none killed at the moment it wants"
  # The kill landed mid-run.
  [[ $rc -eq 137 ]] || fail "kill -9 trial $trial: the run exited with $rc, not by SIGKILL"
  last=$(grep -o '^{"event":"train","step":[0-9]*' "$dir/metrics.jsonl" | tail -n 1 | grep -o '[0-9]*$')
  [[ -n $last ]] && (( last >= 1 )) || fail "kill -9 trial $trial: the killed run had logged no training step"
  grep -q '"event":"summary"' "$dir/metrics.jsonl" && fail "kill -9 trial $trial: the killed run had finished (summary logged)"
  [[ -e $dir/status || -e $dir/final_state.bin ]] && fail "kill -9 trial $trial: the killed run had finished (status or final state written)"
  tmps=("$dir"/ckpt-*.h5.tmp.*)
  latest_step=0; [[ -f $dir/latest ]] && latest_step=$((10#$(sed -n 's/^ckpt-\([0-9]*\)\.h5$/\1/p' "$dir/latest")))
  if [[ $mode == step ]]; then
    (( last >= target && last < steps )) || fail "kill -9 trial $trial: killed at step $last, wanted in [$target, $steps)"
    want=$latest_step
    (( want > 0 && want <= last )) || fail "kill -9 trial $trial: latest checkpoint at step $want, killed at step $last"
    where="at step $last"
    if [[ -e ${tmps[0]} ]]; then
      where+=", by chance mid-write (${tmps[0]##*/} left)"; mid_write=$(( mid_write + 1 )); by_chance=$(( by_chance + 1 ))
    fi
  else
    name=$(printf 'ckpt-%08d.h5' "$frozen")
    [[ ${#tmps[@]} -eq 1 && ${tmps[0]} == "$dir/$name.tmp.$pid" ]] \
      || fail "kill -9 trial $trial: after a kill mid-write of $name, expected only $name.tmp.$pid, found: ${tmps[*]##*/}"
    [[ -e $dir/$name ]] && fail "kill -9 trial $trial: a half-written checkpoint has its real name $name"
    want=$(( (frozen - 1) / every * every ))  # the checkpoint before the interrupted one
    (( latest_step == want )) || fail "kill -9 trial $trial: latest names step $latest_step, expected $want"
    where="mid-write of $name (step $last logged, ${tmps[0]##*/} left)"
    mid_write=$(( mid_write + 1 ))
  fi
  # The resume.
  "$madtrain" "${long[@]}" run.dir="$dir" --resume auto > "$dir.resumed.log" 2>&1 \
    || { tail -n 5 "$dir.resumed.log"; fail "resume after kill -9 (trial $trial)"; }
  line=$(grep -m 1 '^resume: ' "$dir.resumed.log")
  if (( want == 0 )); then
    [[ $line == "resume: no checkpoint in $dir, starting fresh" ]] \
      || fail "kill -9 trial $trial: expected a fresh start, the log says: $line"
    from_scratch=$(( from_scratch + 1 ))
  else
    (( want > 0 && want < steps )) || fail "kill -9 trial $trial: resume step $want is not inside (0, $steps)"
    [[ $line == "resume: $dir/$(printf 'ckpt-%08d.h5' "$want") at step $want (written by 1 rank(s))" ]] \
      || fail "kill -9 trial $trial: expected a resume from step $want, the log says: $line"
  fi
  [[ $(summary_of "$dir" status) == finished && $(summary_of "$dir" step) == "$steps" &&
     $(summary_of "$dir" steps_this_run) == $(( steps - want )) ]] \
    || fail "kill -9 trial $trial: the resumed run did not finish the remaining $(( steps - want )) steps"
  "$params_diff" "$work/kill-straight/final_state.bin" "$dir/final_state.bin" --bitwise > "$work/diff.txt" \
    || { cat "$work/diff.txt"; fail "kill -9 trial $trial (resumed from step $want): final state differs"; }
  # The next start removed what the killed writer left.
  ls "$dir"/*.tmp.* > /dev/null 2>&1 && fail "kill -9 trial $trial: a temporary file survived the resume"
  echo "ok: kill -9 trial $trial: killed $where; resumed from step $want, $(( steps - want )) steps; == straight run (bitwise)"
done
exec {snooze_fd}>&-
(( mid_write >= 4 )) || fail "only $mid_write kill(s) landed mid-checkpoint-write"
echo "ok: kill -9: 10 trials killed mid-run; $mid_write landed mid-checkpoint-write (4 by design, $by_chance by chance); $from_scratch resumed from scratch; $retries attempt(s) repeated"

# Corrupted checkpoints: truncated and bit-flipped files are refused with a clear message;
# resume auto falls back to the previous good checkpoint and says so.
c=$work/corrupt; mkdir -p "$c"
cp "$work/split1/ckpt-00000020.h5" "$c/trunc.h5"; truncate -s 3000 "$c/trunc.h5"
expect_err "trunc.h5: not a readable HDF5 checkpoint (truncated or corrupted)" 1 "$madtrain" "${common[@]}" run.dir="$c/r1" --resume "$c/trunc.h5"
cp "$work/split1/ckpt-00000020.h5" "$c/flip.h5"
python3 - "$c/flip.h5" <<'PY'
import sys
# Flip one bit inside the raw data of /params/wte: find a stretch that is the stored float data
# by searching the file for the dataset's bytes is not possible without h5py, so flip a byte in
# the largest run of non-metadata bytes: the middle of the file is parameter or moment data.
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); i = len(b) // 2; b[i] ^= 0x10
open(p, 'wb').write(bytes(b))
PY
expect_err "checksum mismatch in dataset" 1 "$madtrain" "${common[@]}" run.dir="$c/r2" --resume "$c/flip.h5"
fb=$work/fallback; cp -r "$work/split1" "$fb"
python3 - "$fb/ckpt-00000040.h5" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); i = len(b) // 2; b[i] ^= 0x10
open(p, 'wb').write(bytes(b))
PY
out=$("$madtrain" "${common[@]}" run.dir="$fb" train.steps=45 --resume auto 2>&1) || { echo "$out"; fail "fallback resume"; }
[[ "$out" == *"checksum mismatch"*"falling back to the previous checkpoint"* && "$out" == *"resume: $fb/ckpt-00000020.h5 at step 20"* ]] \
  || { echo "$out"; fail "resume auto did not fall back to the previous checkpoint"; }
ran "$fb" 45 1 25 finished "fallback resume"
ok "resume auto: corrupted latest -> falls back to step 20 and says so"

# Config changes on resume: the model shape is refused, the schedule length is allowed.
expect_err "cannot resume from $work/split1/ckpt-00000040.h5 with a different model.d_model: 32 -> 64" 2 \
  "$madtrain" "${common[@]}" model.d_model=64 run.dir="$work/split1" --resume "$work/split1/ckpt-00000040.h5"
out=$("$madtrain" "${common[@]}" train.steps=44 train.log_every=2 run.dir="$work/split1" --resume auto 2>&1) || fail "allowed change"
[[ "$out" == *"changed settings: train.steps: 40 -> 44, train.log_every: 10 -> 2"* ]] || { echo "$out"; fail "allowed changes not logged"; }
[[ "$out" == *"resume: $work/split1/ckpt-00000040.h5 at step 40 (written by 1 rank(s))"* ]] || { echo "$out"; fail "the longer schedule did not resume from step 40"; }
ran "$work/split1" 44 1 4 finished "resume with a longer schedule"
ok "resume with a longer schedule is allowed and logged"

# Warm start: parameters only, matched by name and shape; mismatches are listed.
# With lr 0 the one step leaves the loaded parameters as they are: they must be the checkpoint's
# (the straight run's final parameters), bitwise; the moments are this run's own.
"$madtrain" "${common[@]}" train.steps=1 optim.lr=0 checkpoint.init_from="$work/straight1/ckpt-00000040.h5" run.dir="$work/warm" > "$work/warm.log" || fail "init_from"
grep -qxF "init_from: parameters loaded from $work/straight1/ckpt-00000040.h5" "$work/warm.log" || { cat "$work/warm.log"; fail "init_from: no 'parameters loaded' line"; }
"$params_diff" "$work/straight1/final_state.bin" "$work/warm/final_state.bin" --bitwise > "$work/diff.txt"
grep -q "^ok params: " "$work/diff.txt" || { cat "$work/diff.txt"; fail "init_from: the warm-started parameters are not the checkpoint's"; }
ok "init_from loads the checkpoint's parameters"
expect_err "3 parameter(s) do not match the model: wte (shape), layers.0.mixer.wg (missing), layers.1.mixer.wg (missing)" 2 \
  "$madtrain" "${common[@]}" data.vocab_size=40 model.gate=true checkpoint.init_from="$work/straight1/ckpt-00000040.h5" run.dir="$work/warm2"

# Signals on 2 ranks: SIGUSR1 to mpirun reaches the ranks; they agree, checkpoint, exit 0.
sig=$work/signal
"${mpirun[@]}" -n 2 "$madtrain" "${long[@]}" train.steps=100000 checkpoint.every_steps=0 run.dir="$sig" > "$work/sig.log" 2>&1 & pid=$!
for _ in $(seq 150); do grep -q "step .*50/" "$work/sig.log" 2>/dev/null && break; sleep 0.2; done
grep -q "step .*50/" "$work/sig.log" || { kill -9 $pid; cat "$work/sig.log"; fail "SIGUSR1 on 2 ranks: the run did not reach step 50"; }
kill -USR1 $pid; wait $pid; rc=$?
[[ $rc -eq 0 && $(cat "$sig/status") == preempted ]] || { cat "$work/sig.log"; fail "SIGUSR1 on 2 ranks: exit $rc"; }
# It stopped mid-run (past step 50, far from the end) because of the signal, at a step whose
# checkpoint is the only one (checkpoint.every_steps=0).
stop=$(sed -n 's/^stopped by signal at step \([0-9]*\): checkpoint written, exit 0 (status: preempted)$/\1/p' "$work/sig.log")
[[ -n $stop ]] && (( stop >= 50 && stop < 100000 )) || { cat "$work/sig.log"; fail "SIGUSR1 on 2 ranks: no 'stopped by signal' line past step 50"; }
ran "$sig" "$stop" 2 "$stop" preempted "SIGUSR1 on 2 ranks"
ckpts=("$sig"/ckpt-*.h5)
[[ ${#ckpts[@]} -eq 1 && ${ckpts[0]} == "$sig/$(printf 'ckpt-%08d.h5' "$stop")" ]] || fail "SIGUSR1: expected only the step-$stop checkpoint, found: ${ckpts[*]##*/}"
ok "SIGUSR1 on 2 ranks: stopped at step $stop, its checkpoint written, exit 0, status preempted"

# Non-finite gradients: skipped and counted exactly; K in a row stop the run (or roll back if
# asked). skipped_are DIR LOG "STEP:ROW ..." WHAT: the steps skipped are exactly these, each
# with its log line ("ROW in a row") and its metrics event, and the summary and the log's done
# line count exactly that many.
skipped_are() {
  local dir=$1 log=$2 want=$3 what=$4 n lines events
  n=$(wc -w <<< "$want")
  lines=$(sed -n 's/^step \([0-9]*\): non-finite gradient, step skipped (\([0-9]*\) in a row)$/\1:\2/p' "$log" | paste -sd' ')
  events=$(sed -n 's/^{"event":"skipped","step":\([0-9]*\)}$/\1/p' "$dir/metrics.jsonl" | paste -sd' ')
  [[ $lines == "$want" ]] || fail "$what: skipped steps logged '$lines', expected '$want'"
  [[ $events == "$(sed 's/:[0-9]*//g' <<< "$want")" ]] || fail "$what: skipped-step events at steps '$events', expected '$want'"
  [[ $(summary_of "$dir" skipped_steps) == "$n" ]] || fail "$what: summary skipped_steps '$(summary_of "$dir" skipped_steps)', expected $n"
  grep -q "^done: .*, skipped $n step(s)$" "$log" || fail "$what: the done line does not say 'skipped $n step(s)'"
}
# One NaN step (debug.nan_count defaults to 1): exactly step 5 skipped, training finishes.
"$madtrain" "${common[@]}" debug.nan_at_step=5 run.dir="$work/nan1" > "$work/nan1.log" 2>&1 || { cat "$work/nan1.log"; fail "one NaN step"; }
skipped_are "$work/nan1" "$work/nan1.log" "5:1" "one NaN step"
ran "$work/nan1" 40 1 40 finished "one NaN step"
ok "one non-finite step (5) is skipped and counted: 1 skipped"
# 10 NaN steps from step 5, at most 3 in a row: steps 5, 6, 7 are skipped, and the run stops
# at 7 (the other 7 poisoned steps never run), exit 1, with its one error line.
"$madtrain" "${common[@]}" debug.nan_at_step=5 debug.nan_count=10 train.max_bad_steps=3 run.dir="$work/nan2" \
  > "$work/nan2.log" 2> "$work/nan2.err"; rc=$?
[[ $rc -eq 1 && $(cat "$work/nan2.err") == "madtrain: error: 3 non-finite steps in a row (train.max_bad_steps) at step 7; stopping" ]] \
  || { cat "$work/nan2.log" "$work/nan2.err"; fail "max_bad_steps: exit $rc"; }
skipped_are "$work/nan2" "$work/nan2.log" "5:1 6:2 7:3" "max_bad_steps"
ran "$work/nan2" 7 1 7 failed "max_bad_steps"
ok "3 non-finite steps in a row (5, 6, 7) stop the run at 7: 3 skipped, exit 1"
# An overflowing layer (its input projection set to +Inf from step 5 on): the skip lines and the
# stop name the first layer whose mixer values are non-finite; a poisoned gradient alone (nan2
# above) names none.
"$madtrain" "${common[@]}" model.mixer=oscgate_mve model.n_layers=2 mixer.oscillators=4 \
  debug.nan_at_step=5 debug.inf_param=layers.1.mixer.wqkv train.max_bad_steps=3 run.dir="$work/inf1" \
  > "$work/inf1.log" 2> "$work/inf1.err"; rc=$?
where="(first in layer 1's mixer, oscgate_mve: "
[[ $rc -eq 1 ]] && grep -qF "step 5: non-finite gradient, step skipped (1 in a row) $where" "$work/inf1.log" \
  && [[ $(cat "$work/inf1.err") == "madtrain: error: 3 non-finite steps in a row (train.max_bad_steps) at step 7 $where"*"); stopping" ]] \
  || { cat "$work/inf1.log" "$work/inf1.err"; fail "overflowing layer: exit $rc, or the layer is not named"; }
ok "an overflowing layer stops the run naming it: $(cat "$work/inf1.err")"
# 3 NaN steps from 25 with rollback: 25, 26, 27 skipped, one rollback to step 20, finished.
"$madtrain" "${common[@]}" debug.nan_at_step=25 debug.nan_count=3 train.max_bad_steps=3 train.rollback_on_nan=true \
  checkpoint.every_steps=10 run.dir="$work/nan3" > "$work/nan3.log" 2>&1 || { cat "$work/nan3.log"; fail "rollback run"; }
skipped_are "$work/nan3" "$work/nan3.log" "25:1 26:2 27:3" "rollback_on_nan"
[[ $(grep -c '^rollback: ' "$work/nan3.log") -eq 1 ]] && grep -qxF "rollback: reloaded $work/nan3/ckpt-00000020.h5" "$work/nan3.log" \
  || { cat "$work/nan3.log"; fail "rollback_on_nan: expected exactly one rollback, to ckpt-00000020.h5"; }
ran "$work/nan3" 40 1 40 finished "rollback_on_nan"
ok "rollback_on_nan: 3 non-finite steps (25-27) skipped, one rollback to step 20, finished"

# One rank failing takes every rank down with its message (the timeout only guards against a hang).
expect_err "[rank 1] injected failure at step 3" 1 timeout 30 "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" debug.fail_at_step=3 debug.fail_rank=1 run.dir="$work/abort"
# A rank killed outright mid-run: mpirun ends the job instead of leaving the other rank waiting.
"${mpirun[@]}" -n 2 "$madtrain" "${long[@]}" train.steps=100000 run.dir="$work/kill1" > "$work/kill1.log" 2>&1 & pid=$!
for _ in $(seq 150); do grep -q "step .*50/" "$work/kill1.log" 2>/dev/null && break; sleep 0.2; done
grep -q "step .*50/" "$work/kill1.log" || { kill -9 $pid; cat "$work/kill1.log"; fail "rank kill: the run did not reach step 50"; }
ranks=($(pgrep -f "run.dir=$work/kill1" | while read -r p; do [[ $(cat /proc/$p/comm 2>/dev/null) == madtrain ]] && echo "$p"; done))
[[ ${#ranks[@]} -eq 2 ]] || { kill -9 $pid; fail "rank kill: expected 2 madtrain ranks, found ${#ranks[@]}"; }
kill -9 "${ranks[1]}" || { kill -9 $pid; fail "rank kill: could not kill rank process ${ranks[1]}"; }
timeout 30 tail --pid=$pid -f /dev/null || { kill -9 $pid; fail "rank kill: the job still runs 30 s after a rank was killed (hang)"; }
wait $pid; rc=$?
[[ $rc -ne 0 ]] || fail "rank kill: mpirun exited 0 after a rank was killed"
grep -q "exited on signal 9 (Killed)" "$work/kill1.log" || { cat "$work/kill1.log"; fail "rank kill: mpirun did not report the killed rank"; }
! grep -q "^done: " "$work/kill1.log" && [[ ! -e $work/kill1/status ]] || fail "rank kill: the run finished instead of being killed"
left=$(pgrep -f "run.dir=$work/kill1"); [[ -z $left ]] || { kill -9 $left; fail "rank kill: processes left after the job ended: $left"; }
ok "a rank killed with SIGKILL mid-run ends the whole job (mpirun exit $rc, no process left)"

# Replicas: a rank whose parameters drift is caught by the hash check.
expect_err "replicas diverged at step 3: parameter hashes differ across ranks" 1 timeout 30 "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" debug.diverge_at_step=3 train.check_replicas_every=1 run.dir="$work/diverge"

# SLURM world-size check: ranks started as singletons are refused.
expect_err "SLURM_NTASKS is 2 but the MPI world has 1 rank(s)" 2 env SLURM_JOB_ID=1 SLURM_NTASKS=2 "$madtrain" "${common[@]}" run.dir="$work/slurm"

# h5py reads a checkpoint without madtrain.
if /usr/bin/python3 -c "import h5py" 2>/dev/null; then
  /usr/bin/python3 - "$work/straight1/ckpt-00000040.h5" <<'PY' || fail "h5py could not read the checkpoint"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["step"] == 40 and f["params/wte"].shape == (32, 32), dict(f.attrs)
n = sum(d.size for d in f["params"].values())
assert f["optimizer/adam_m"].shape == (n,) and np.isfinite(f["params/layers.0.mixer.wqkv"][...]).all()
print("h5py: step", f.attrs["step"], "params", n)
PY
  ok "h5py reads the checkpoint"
else
  echo "skip: h5py not installed (python3-h5py), h5py read not checked"
fi
# Disk full (a file-size limit set after start-up: writes fail with EFBIG as on a full disk),
# resuming at step 20 with a checkpoint due every 5 steps: every write (25, 30, 35, 40) fails
# and is reported, no partial file is left and none has a checkpoint's name, the previous
# checkpoint stays `latest`, and training goes on to the end (the straight run's state, bitwise).
df=$work/diskfull; mkdir -p "$df"; cp "$work/split1/ckpt-00000020.h5" "$df/"; echo ckpt-00000020.h5 > "$df/latest"
limit=$(( $(stat -c %s "$work/straight1/final_state.bin") + 4096 ))
"$madtrain" "${common[@]}" checkpoint.every_steps=5 debug.file_size_limit=$limit run.dir="$df" --resume auto > "$work/diskfull.log" 2> "$work/diskfull.err"; rc=$?
resumed "$work/diskfull.log" "$df" 20 1 "disk full"
want=$(for s in 25 30 35; do echo "madtrain: error: cannot write checkpoint '$df/ckpt-000000$s.h5': File too large; training goes on from the previous checkpoint"; done
       echo "madtrain: error: cannot write checkpoint '$df/ckpt-00000040.h5': File too large; the run finished, but its newest checkpoint is the previous one")
[[ $(grep '^madtrain: ' "$work/diskfull.err") == "$want" ]] \
  || { cat "$work/diskfull.err"; fail "disk full: expected the 4 failed writes (steps 25, 30, 35, 40) reported"; }
[[ $(grep -o '"event":"checkpoint_failed","step":[0-9]*' "$df/metrics.jsonl" | grep -o '[0-9]*$' | paste -sd' ') == "25 30 35 40" ]] \
  || fail "disk full: checkpoint_failed events are not exactly steps 25, 30, 35, 40"
ls "$df"/*.tmp.* > /dev/null 2>&1 && fail "disk full left a temporary file"
[[ $(cd "$df" && echo ckpt-*.h5) == ckpt-00000020.h5 && $(cat "$df/latest") == ckpt-00000020.h5 ]] \
  || fail "disk full: expected ckpt-00000020.h5 alone, named by latest; found $(cd "$df" && echo ckpt-*), latest $(cat "$df/latest")"
ran "$df" 40 1 20 finished "disk full"
same "$work/straight1/final_state.bin" "$df/final_state.bin" "disk full: training went on from step 20 to 40 (== straight run, bitwise)"
# The last checkpoint was not written: exit 1 (a runtime failure), not 0, and no crash at exit
# (HDF5's exit handler used to segfault on the file whose close had failed: exit 139).
[[ $rc -eq 1 ]] || fail "disk full: exit $rc, expected 1 (the final checkpoint failed)"
ok "disk full: 4 failed writes reported, no partial file, previous checkpoint kept, training finished, exit 1"

# A stop request whose checkpoint cannot be written (2 ranks): nothing claims it was written,
# the run ends failed (exit 1, status failed) so a requeued job is not silently set back, and
# the previous checkpoint stays latest.
ds=$work/stopfull; mkdir -p "$ds"; cp "$work/split1/ckpt-00000020.h5" "$ds/"; echo ckpt-00000020.h5 > "$ds/latest"
timeout 120 "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" debug.stop_at_step=23 debug.file_size_limit=$limit \
  run.dir="$ds" --resume auto > "$work/stopfull.log" 2> "$work/stopfull.err"; rc=$?
[[ $rc -eq 1 ]] || { cat "$work/stopfull.err"; fail "stop + full disk: exit $rc, expected 1"; }
grep -qF "madtrain: error: cannot write checkpoint '$ds/ckpt-00000023.h5': File too large; stopping without a checkpoint of this step (status: failed); its previous checkpoint stays the newest" "$work/stopfull.err" \
  || { cat "$work/stopfull.err"; fail "stop + full disk: no error line for the failed write"; }
grep -q "checkpoint written" "$work/stopfull.log" && fail "stop + full disk: the log claims a checkpoint was written"
[[ $(cat "$ds/status") == failed && $(cat "$ds/latest") == ckpt-00000020.h5 ]] \
  || fail "stop + full disk: status '$(cat "$ds/status")', latest '$(cat "$ds/latest")'"
ok "stop + full disk (2 ranks): exit 1, status failed, the failed write reported, ckpt-20 still latest"

# Rank 0's write fails and a NaN rollback comes due (2 ranks, no earlier checkpoint): both
# ranks know there is nothing to roll back to and stop with the same error, promptly (before,
# rank 1 believed its own no-op write had succeeded, rolled back alone and the job hung).
dn=$work/nanfull; mkdir -p "$dn"
timeout 120 "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" checkpoint.every_steps=5 debug.file_size_limit=$limit \
  debug.nan_at_step=12 debug.nan_count=3 train.max_bad_steps=3 train.rollback_on_nan=true \
  run.dir="$dn" > "$work/nanfull.log" 2> "$work/nanfull.err"; rc=$?
[[ $rc -eq 1 ]] || { cat "$work/nanfull.err"; fail "nan + full disk: exit $rc, expected 1 (124: a hang)"; }
grep -qF "madtrain: error: 3 non-finite steps in a row (train.max_bad_steps) at step 14; stopping" "$work/nanfull.err" \
  || { cat "$work/nanfull.err"; fail "nan + full disk: expected the max_bad_steps stop"; }
grep -q "rollback" "$work/nanfull.log" "$work/nanfull.err" && fail "nan + full disk: a rank rolled back"
ok "nan + full disk (2 ranks): every rank stops alike, no rollback, no hang"

# A real full disk: the run directory on a small tmpfs (root, where mount is allowed; skipped
# with a message elsewhere) that holds about two checkpoints. 2 ranks, a checkpoint every 5
# steps: the writes that no longer fit fail with ENOSPC and are reported, no partial file is
# left, `latest` names a complete checkpoint, and a run resumed from it elsewhere ends bitwise
# like the straight 2-rank run.
tm=$work/tmpfs; mkdir -p "$tm"
ck=$(stat -c %s "$work/split1/ckpt-00000020.h5")
if mount -t tmpfs -o size=$(( (ck * 5 / 2 + 65536) / 1024 ))k tmpfs "$tm" 2> /dev/null; then
  timeout 120 "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" checkpoint.every_steps=5 run.dir="$tm/run" \
    > "$work/tmpfs.log" 2> "$work/tmpfs.err"; rc=$?
  nospace=$(grep -c "No space left on device" "$work/tmpfs.err")
  cp -r "$tm/run" "$work/tmpfs-run"; umount "$tm"
  [[ $rc -ne 124 && $nospace -ge 1 ]] || { cat "$work/tmpfs.err"; fail "tmpfs: exit $rc, $nospace ENOSPC report(s)"; }
  ls "$work/tmpfs-run"/*.tmp.* > /dev/null 2>&1 && fail "tmpfs: a temporary file was left"
  last=$(cat "$work/tmpfs-run/latest")
  [[ -f "$work/tmpfs-run/$last" ]] || fail "tmpfs: latest names '$last', which is not there"
  "${mpirun[@]}" -n 2 "$madtrain" "${common[@]}" run.dir="$work/tmpfs-run" --resume auto \
    > "$work/tmpfs-resume.log" || fail "tmpfs: resuming from $last"
  same "$work/straight2/final_state.bin" "$work/tmpfs-run/final_state.bin" \
    "tmpfs full disk (2 ranks): $nospace write(s) refused with ENOSPC and reported, exit $rc, no partial file; resumed from $last to the straight run's state"
else
  echo "skip: cannot mount a tmpfs here (not root, or no mount permission): the real full-disk case is not run; the file-size-limit cases above stand in"
fi
echo "all checkpoint tests passed"
