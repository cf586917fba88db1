#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost (slurmctld, slurmd, munge from Debian): sbatch the
# CPU config with 2 tasks through launch/madtrain.sbatch, send the job USR1 mid-run with
# scancel, let the script requeue it, and check the job finishes with parameters bitwise equal
# to an uninterrupted run. Skips (exit 77) where SLURM cannot be started.
set -uo pipefail
madtrain=$1 params_diff=$2 work=$3 root=$4
# Overrides after a common argument list: the last of each key wins (tests/last_wins.sh).
export MADTRAIN_BIN=$madtrain
madtrain=$(dirname "$0")/last_wins.sh
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [[ -f "$work/job.out" ]] && tail -n 30 "$work/job.out"; exit 1; }
for cmd in slurmctld slurmd munged sbatch scontrol scancel sinfo; do
  command -v $cmd > /dev/null || skip "$cmd not installed (Debian: slurmctld slurmd slurm-client munge)"
done
[[ $(id -u) -eq 0 ]] || skip "starting slurmd and munged needs root"
rm -rf "$work"; mkdir -p "$work"/{state,spool,log}
host=$(hostname -s)
pids=()
cleanup() {
  for f in "$work/slurmctld.pid" "$work/slurmd.pid"; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; done
  [[ -f /run/munge/munged.pid ]] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null
  true
}
trap cleanup EXIT

# munge: a key and the daemon, as the munge user.
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
[[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge > /dev/null 2>&1; then
  su -s /bin/sh munge -c munged || skip "munged does not start"
  sleep 1
fi
munge -n | unmunge > /dev/null 2>&1 || skip "munge does not authenticate"

cat > "$work/slurm.conf" <<CONF
ClusterName=madtrain-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
NodeName=$host CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf
slurmctld -f "$SLURM_CONF" || skip "slurmctld does not start"
slurmd -f "$SLURM_CONF" || skip "slurmd does not start"
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 0.5; done
sinfo -h -o %T | grep -q idle || skip "the node did not come up idle: $(sinfo 2>&1 | tail -1)"

cfg=(data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4 model.d_model=32 model.n_heads=2
     train.steps=3000 train.batch_size=8 train.eval_every=0 train.log_every=20 data.test_examples=16
     cpu.threads=1 checkpoint.every_steps=500)
printf 'seed: 7\n' > "$work/run.yaml"
# The uninterrupted reference, same world size (2 ranks) and threads.
mpirun --allow-run-as-root --oversubscribe --bind-to none -n 2 "$madtrain" --config "$work/run.yaml" \
  "${cfg[@]}" run.dir="$work/straight" > /dev/null || fail "reference run"

cd "$root"
job=$(MADTRAIN="$madtrain" MADTRAIN_RUN_DIR="$work/run" sbatch --parsable --nodes=1 --ntasks=2 --ntasks-per-node=2 \
      --gpus-per-node=0 --cpus-per-task=1 --output="$work/job.out" launch/madtrain.sbatch \
      "$work/run.yaml" "${cfg[@]}") || fail "sbatch"
echo "submitted job $job"
# Signal once training is under way (past the first checkpoint, before the end).
for _ in $(seq 3000); do
  step=$(grep -o '"event":"train","step":[0-9]*' "$work/run/metrics.jsonl" 2>/dev/null | tail -1 | grep -o '[0-9]*$')
  [[ -n "$step" && $step -ge 600 ]] && break; sleep 0.1
done
[[ -n "${step:-}" ]] || fail "the job did not start training"
(( step >= 600 && step < 3000 )) || fail "the signal must come past the first checkpoint (500) and before the end; the job was at step $step"
scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1"
echo "sent USR1 at about step $step"
# The script requeues the job; a requeued job waits for a begin time, so release it now.
for _ in $(seq 1500); do
  state=$(scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
  restarts=$(scontrol show job "$job" 2>/dev/null | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
  if [[ ${restarts:-0} -ge 1 && $state == PENDING && -z "${released:-}" ]]; then
    # Give slurmd time to finish the old instance: released at once, the new launch can race
    # its clean-up and die with "Job credential revoked".
    sleep 3
    scontrol update JobId="$job" StartTime=now 2> /dev/null && released=1
  fi
  [[ ${restarts:-0} -ge 1 && $state == COMPLETED ]] && break
  [[ $state == FAILED || $state == CANCELLED ]] && fail "job ended $state"
  sleep 0.2
done
[[ ${restarts:-0} -ge 1 && $state == COMPLETED ]] || fail "job did not complete after a requeue (state ${state:-?}, restarts ${restarts:-?})"
grep -q "requeueing job $job" "$work/job.out" || fail "the batch script did not requeue"
# The first instance stopped because of the signal, mid-run, and the requeued one resumed from
# exactly the checkpoint that stop wrote.
stop=$(sed -n 's/^stopped by signal at step \([0-9]*\): .*/\1/p' "$work/job.out")
[[ $(wc -w <<< "$stop") -eq 1 ]] && (( stop >= step && stop < 3000 )) || fail "expected one stop by signal past step $step, got '$stop'"
grep -qxF "resume: $work/run/$(printf 'ckpt-%08d.h5' "$stop") at step $stop (written by 2 rank(s))" "$work/job.out" \
  || fail "the requeued job did not resume from the step-$stop checkpoint"
[[ $(cat "$work/run/status") == finished ]] || fail "final status is not finished"
"$params_diff" "$work/straight/final_state.bin" "$work/run/final_state.bin" --bitwise || fail "final state differs"
echo "ok: USR1 at step ~$step, stopped at $stop, requeued ($restarts restart), resumed from $stop, final state bitwise equal"

# The ladder as a job array: `madtrain ladder --slurm` submits one array task per run through
# launch/madtrain.sbatch; every run finishes in the run directory the ladder names, and the
# report reads them.
printf 'model: {mixer: linear, d_model: 16, n_layers: 1, n_heads: 2}\ndata: {task: mqar, seq_len: 32, vocab_size: 32, num_kv_pairs: 4, test_examples: 16}\ntrain: {batch_size: 8, eval_every: 0, log_every: 50}\ncpu: {threads: 1}\n' > "$work/ladder.yaml"
LADDER_SBATCH_ARGS="--parsable --nodes=1 --ntasks=1 --ntasks-per-node=1 --gpus-per-node=0 --cpus-per-task=1 --output=$work/ladder-%a.out" \
  MADTRAIN="$MADTRAIN_BIN" "$MADTRAIN_BIN" ladder --config "$work/ladder.yaml" --baselines softmax --rungs 2 \
  --tokens-per-param 0.5 --out "$work/ladder" --slurm > "$work/ladder-submit.out" 2>&1 || fail "ladder --slurm: $(tail -2 "$work/ladder-submit.out")"
array=$(tail -1 "$work/ladder-submit.out")
[[ $array =~ ^[0-9]+$ ]] || fail "ladder --slurm did not submit an array: $(cat "$work/ladder-submit.out")"
for _ in $(seq 1500); do
  left=$(squeue -h -j "$array" 2>/dev/null | wc -l)
  [[ $left -eq 0 ]] && break
  sleep 0.2
done
[[ $(cat "$work"/ladder/r*/status 2>/dev/null | grep -c finished) -eq 4 ]] \
  || fail "the ladder's 4 array tasks did not all finish: $(tail -3 "$work"/ladder-*.out)"
"$MADTRAIN_BIN" report --ladder "$work/ladder" > "$work/ladder-report.md" 2>&1 || fail "report --ladder"
[[ $(grep -c '^| [01] | \(linear\|softmax\) | ' "$work/ladder-report.md") -eq 4 ]] || fail "the ladder report lacks runs"
echo "ok: ladder as a 4-task SLURM array, every run finished, report read them"
