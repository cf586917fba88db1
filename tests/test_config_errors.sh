#!/usr/bin/env bash
# Every kind of bad configuration: exactly one error line (the exact text below), exit code 2,
# and no work started (no run directory created). Also checked under mpirun with 2 ranks.
set -uo pipefail
madtrain=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

expect() {  # expect "<exact stderr>" args...
  local want=$1; shift
  local out rc
  out=$("$madtrain" run.dir="$work/run" "$@" 2>&1 >/dev/null); rc=$?
  if [[ $rc -ne 2 || "$out" != "$want" ]]; then
    echo "FAIL: madtrain $*"; echo "  want (exit 2): $want"; echo "  got  (exit $rc): $out"; fail=1
  elif [[ -e "$work/run" ]]; then
    echo "FAIL: madtrain $*: created the run directory before failing"; fail=1
  else
    echo "ok: $want"
  fi
}

printf 'model:\n  d_model: 32\noptim:\n  lrr: 0.1\n' > "$work/typo.yaml"
printf 'model:\n  d_model: [32\n' > "$work/broken.yaml"
printf 'train:\n  steps: many\n' > "$work/type.yaml"

expect "madtrain: error: $work/typo.yaml:4: unknown key 'optim.lrr' (did you mean 'optim.lr'?)" --config "$work/typo.yaml"
expect "madtrain: error: command line: unknown key 'model.d_modle' (did you mean 'model.d_model'?)" model.d_modle=32
expect "madtrain: error: command line: unknown key 'lr' (did you mean 'optim.lr'?)" lr=0.1
expect "madtrain: error: command line: unknown key 'zzzzzzzz' (madtrain --help lists the keys)" zzzzzzzz=1
expect "madtrain: error: $work/type.yaml:2: key 'train.steps' expects an integer, got 'many'" --config "$work/type.yaml"
expect "madtrain: error: command line: key 'optim.lr' expects a number, got '1e-3x'" optim.lr=1e-3x
expect "madtrain: error: command line: key 'model.tie_embeddings' expects true or false, got 'maybe'" model.tie_embeddings=maybe
expect "madtrain: error: command line: key 'optim.lr' = -1 is out of range [0, 10]" optim.lr=-1
expect "madtrain: error: command line: key 'model.n_layers' = 0 is out of range [1, 64]" model.n_layers=0
expect "madtrain: error: command line: key 'model.mlp' expects one of gelu|swiglu|none|gelu_erf, got 'relu'" model.mlp=relu
# Invalid UTF-8 (the config written into the run would not be YAML; libyaml's emitter hung).
expect "madtrain: error: command line: key 'run.name' value is not valid UTF-8" run.name=$'a\xea\xea-b'
mixers=$("$madtrain" --help | awk '/^Mixers:/ {f = 1; next} /^$/ {f = 0} f {print $1}' | paste -sd'|')
expect "madtrain: error: command line: key 'model.mixer' expects mixers from $mixers, got 'mamba'" model.mixer=softmax,mamba
# Repeated keys (a file, the command line), pairs of keys that must agree, long values.
printf 'model:\n  d_model: 32\n  n_heads: 2\nmodel:\n  d_model: 64\n' > "$work/dup.yaml"
printf 'model:\n  mixer: [softmax, linear]\n  mixer: [linear]\n' > "$work/dupseq.yaml"
expect "madtrain: error: $work/dup.yaml:5: key 'model.d_model' is given twice (first at line 2)" --config "$work/dup.yaml"
expect "madtrain: error: $work/dupseq.yaml:3: key 'model.mixer' is given twice (first at line 2)" --config "$work/dupseq.yaml"
expect "madtrain: error: command line: key 'optim.lr' is given twice ('optim.lr=0.1' and 'optim.lr=0.2')" optim.lr=0.1 optim.lr=0.2
expect "madtrain: error: optim.min_lr (0.1) is above optim.lr (0.01): the schedule would climb, not decay" optim.lr=0.01 optim.min_lr=0.1
expect "madtrain: error: cosformer features need mixer.max_len (32) >= the sequence length (64): cos(pi/2 (t-s)/M) turns negative past M" model.mixer=cosformer mixer.max_len=32
expect "madtrain: error: command line: key 'mixer.chunk' = 0 is out of range [1, 1048576]" mixer.chunk=0
# The recurrent baselines' options (mamba2, gla): out of range, inconsistent with the model,
# or set for a mixer that does not read them.
expect "madtrain: error: command line: key 'mixer.d_state' = 0 is out of range [1, 4096]" model.mixer=mamba2 mixer.d_state=0
expect "madtrain: error: command line: key 'mixer.gate_rank' = -1 is out of range [0, 4096]" model.mixer=gla mixer.gate_rank=-1
expect "madtrain: error: mixer.n_groups (3) must divide model.n_heads (4)" model.mixer=mamba2 model.n_heads=4 mixer.n_groups=3
expect "madtrain: error: model.rope=on needs q|k|v inputs; mixer mamba2 reads none; set model.rope=off" model.mixer=mamba2 model.rope=on
expect "madtrain: error: mixer.dt_min (0.5) must not exceed mixer.dt_max (0.1)" model.mixer=mamba2 mixer.dt_min=0.5 mixer.dt_max=0.1
expect "madtrain: error: mixer.neg_eigval = true: model.mixer gla does not read it (an option of deltanet,gated_deltanet,mamba2)" model.mixer=gla mixer.neg_eigval=true
expect "madtrain: error: mixer.d_state = 8: model.mixer softmax,linear does not read it (an option of mamba2)" model.n_layers=2 model.mixer=softmax,linear mixer.d_state=8
expect "madtrain: error: command line: key 'mixer.hydra_norm' expects one of count|none, got 'sum'" mixer.hydra_norm=sum
# The oscillators' options (linoss, oscgate, oscgate_mve).
expect "madtrain: error: command line: key 'mixer.oscillators' = 0 is out of range [1, 65536]" model.mixer=oscgate mixer.oscillators=0
expect "madtrain: error: command line: key 'mixer.osc_dt' = 0 is out of range [1e-06, 10]" model.mixer=oscgate mixer.osc_dt=0
expect "madtrain: error: command line: key 'mixer.osc_zeta_bias' = 50 is out of range [-30, 30]" model.mixer=oscgate mixer.osc_zeta_bias=50
expect "madtrain: error: command line: key 'mixer.linoss_form' expects one of im|imex, got 'foo'" model.mixer=linoss mixer.linoss_form=foo
expect "madtrain: error: mixer.osc_zeta_bias = -2: model.mixer linoss does not read it (an option of oscgate,oscgate_mve)" model.mixer=linoss mixer.osc_zeta_bias=-2
# The DPLR SSM's options.
expect "madtrain: error: command line: key 'mixer.neumann_order' = 17 is out of range [0, 16]" model.mixer=dplr mixer.neumann_order=17
expect "madtrain: error: command line: key 'mixer.dplr_rank' = 5 is out of range [1, 4]" model.mixer=dplr mixer.dplr_rank=5
# The circulant-diagonal SSM's state size (mixers.md 17).
expect "madtrain: error: command line: key 'mixer.circulant_n' = 1 is out of range [2, 4096]" model.mixer=circulant_diagonal mixer.circulant_n=1
expect "madtrain: error: mixer.circulant_n = 16: model.mixer oscgate does not read it (an option of circulant_diagonal)" model.mixer=oscgate mixer.circulant_n=16
# The monomial mixer's options.
expect "madtrain: error: command line: key 'mixer.monomial_matrices' = 0 is out of range [1, 256]" model.mixer=monomial mixer.monomial_matrices=0
expect "madtrain: error: mixer.monomial_blocks (3) must divide mixer.monomial_states (16)" model.mixer=monomial mixer.monomial_blocks=3
expect "madtrain: error: command line: key 'mixer.monomial_select' expects one of ste|soft, got 'gumbel'" model.mixer=monomial mixer.monomial_select=gumbel
# A model far beyond this machine's memory is refused before any allocation, with the estimate,
# what is available and the keys that reduce it (the numbers depend on the machine).
out=$(timeout 120 "$madtrain" run.dir="$work/run" model.d_model=4096 model.n_layers=48 model.n_heads=32 2>&1 >/dev/null); rc=$?
if [[ $rc -eq 2 && $(wc -l <<< "$out") -eq 1 && $out == "madtrain: error: this run needs about "*" GiB per rank on cpu (9664335872 parameters: "*"reduce model.d_model, model.n_layers, train.batch_size (or raise train.grad_accum) or data.seq_len" && ! -e "$work/run" ]]; then
  echo "ok: a model beyond memory is refused: $out"
else
  echo "FAIL: a model beyond memory: exit $rc, '$out'"; fail=1
fi
# 64 layers of the longest mixer name: the list is held whole (no buffer cuts it short)
long=$(printf 'cos_loglinear,%.0s' $(seq 63))cos_loglinear
expect "madtrain: error: model.mixer lists 64 mixers but model.n_layers is 2" model.mixer="$long"
expect "madtrain: error: precision: bf16 needs device: cuda (the cpu backend is fp32)" device=cpu precision=bf16
expect "madtrain: error: comm.backend: nccl needs device: cuda (this run is on the cpu)" device=cpu comm.backend=nccl
# device: cuda where no GPU is visible (CI), or in a build without CUDA (the sanitizer build).
out=$("$madtrain" run.dir="$work/run" device=cuda 2>&1 >/dev/null); rc=$?
if [[ -e /dev/nvidia0 ]]; then
  echo "ok: (a GPU is visible: device=cuda refusal not checked here)"
elif [[ $rc -eq 2 && ( "$out" == "madtrain: error: device: cuda, but no CUDA device is visible on this node" ||
        "$out" == "madtrain: error: device: cuda, but this madtrain was built without CUDA (nvcc and NCCL not found, or -DMADTRAIN_WITH_CUDA=OFF)" ) && ! -e "$work/run" ]]; then
  echo "ok: $out"
else
  echo "FAIL: madtrain device=cuda without a GPU: exit $rc: $out"; fail=1
fi
expect "madtrain: error: cannot read config file '$work/missing.yaml': No such file or directory" --config "$work/missing.yaml"
expect "madtrain: error: $work/broken.yaml:3:1: invalid YAML: did not find expected ',' or ']'" --config "$work/broken.yaml"
expect "madtrain: error: command line: 'steps' is not key=value" steps
expect "madtrain: error: unknown option '--bogus' (see madtrain --help)" --bogus
expect "madtrain: error: model.d_model (30) must be a multiple of model.n_heads (4)" model.d_model=30
expect "madtrain: error: data.valid_examples is for the in-process tasks; with data.path the held-out split is data.eval_split" data.path="$work/shards" data.valid_examples=10
expect "madtrain: error: data.crop_pad and data.hflip augment image shards (data.path of \`madtrain prep images\`); the in-process tasks have no images" data.crop_pad=4
expect "madtrain: error: command line: key 'data.crop_pad' = -1 is out of range [0, 4096]" data.crop_pad=-1
out=$("$madtrain" prep synthetic --out "$work/shards" data.valid_examples=10 2>&1 >/dev/null); rc=$?
want="madtrain: error: prep synthetic: data.valid_examples is not written to shards: the held-out split prep writes ('valid') is data.test_examples"
if [[ $rc -ne 2 || "$out" != "$want" || -e "$work/shards" ]]; then
  echo "FAIL: prep synthetic data.valid_examples=10"; echo "  want (exit 2): $want"; echo "  got  (exit $rc): $out"; fail=1
else
  echo "ok: $want"
fi
expect "madtrain: error: model.mixer lists 3 mixers but model.n_layers is 2" model.mixer=softmax,linear,softmax
expect "madtrain: error: model.recompute '0,2': expected none, all or block indices 0..1 separated by commas" model.recompute=0,2
expect "madtrain: error: model.recompute 'x': expected none, all or block indices 0..1 separated by commas" model.recompute=x
expect "madtrain: error: train.batch_size (10) must be a multiple of ranks x train.grad_accum (1 x 4)" train.batch_size=10 train.grad_accum=4
# The MAD tasks' parameters.
expect "madtrain: error: data.task compression needs model.head: autoencoder (read at every position, the task is the identity)" data.task=compression data.vocab_size=16 data.seq_len=32
expect "madtrain: error: in_context_recall needs an even data.seq_len >= 4 (127) and data.vocab_size - data.noise_vocab_size >= 4 (64): keys and values are halves of the rest" data.task=in_context_recall data.seq_len=127
expect "madtrain: error: fuzzy_recall: data.vocab_size 6 leaves 2 key and 3 value symbols, fewer than data.k_motif_size (3) / data.v_motif_size (1)" data.task=fuzzy_recall data.vocab_size=6 data.k_motif_size=3
expect "madtrain: error: data.frac_noise (0.2) needs data.noise_vocab_size >= 1" data.task=noisy_recall data.frac_noise=0.2
expect "madtrain: error: memorization does not read data.noise_vocab_size or data.frac_noise" data.task=memorization data.vocab_size=256 data.seq_len=32 data.noise_vocab_size=16
expect "madtrain: error: selective_copy: data.seq_len (32) must exceed 2 x data.num_tokens_to_copy + 1 = 33, and data.vocab_size at least 3" data.task=selective_copy data.seq_len=32
expect "madtrain: error: command line: key 'model.head' expects one of lm|autoencoder, got 'cls'" model.head=cls
# The state-tracking tasks' parameters.
expect "madtrain: error: data.pack needs an in-process task with variable-length examples (parity, cumulative_parity, modular_arithmetic, word_problem)" data.pack=true
expect "madtrain: error: data.pack needs an in-process task with variable-length examples (parity, cumulative_parity, modular_arithmetic, word_problem)" data.pack=true data.task=index_copy
expect "madtrain: error: data.pack is for model.head lm (the autoencoder pools one example per row)" data.pack=true data.task=parity data.seq_len=300 model.head=autoencoder
expect "madtrain: error: data.pack needs an in-process task with variable-length examples (parity, cumulative_parity, modular_arithmetic, word_problem); data.path shards carry no example boundaries" data.pack=true data.task=parity data.seq_len=300 data.path=/nonexistent
expect "madtrain: error: data.group 'S9': expected factors Z<n> (n >= 2), S<n> (2..7) or A<n> (3..7) joined by x, e.g. S5, A4xZ5" data.task=word_problem data.group=S9 data.seq_len=256
expect "madtrain: error: parity: data.seq_len (100) must hold the longest example: max(data.max_len, data.test_max_len) = 256" data.task=parity data.seq_len=100
expect "madtrain: error: parity: data.min_len <= data.max_len and data.test_min_len <= data.test_max_len, all >= 1 (got 50..40 and 40..256)" data.task=parity data.seq_len=300 data.min_len=50

# Under mpirun: every rank stops with exit code 2 before any work; the message is printed once.
if command -v mpirun > /dev/null; then
  out=$(mpirun --allow-run-as-root --oversubscribe -n 2 "$madtrain" run.dir="$work/run" optim.lrr=1 2>&1 >/dev/null); rc=$?
  n=$(grep -c "madtrain: error: command line: unknown key 'optim.lrr' (did you mean 'optim.lr'?)" <<< "$out")
  if [[ $rc -ne 2 || $n -ne 1 || -e "$work/run" ]]; then
    echo "FAIL: mpirun -n 2 with a bad key: exit $rc, message printed $n time(s)"; echo "$out"; fail=1
  else
    echo "ok: mpirun -n 2: exit 2, one error line"
  fi
fi
exit $fail
