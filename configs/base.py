"""Shared defaults of every experiment (the paper's SKD setup).

Experiment configs (`gemma_translate.py`, ...) start from `get_config()` and
override what differs; `make_tiny(config)` turns any of them into a fully
offline run of about a minute on CPU (their `:tiny` argument).

Model paths (`student.path`, `teacher.path`) accept:
  * a local HF directory (config.json + safetensors) or a `.gguf` file;
  * a preset name from `skd_jax.models.config.PRESETS` ("gemma-2b", "tiny-gemma",
    ...): random init (tests, smoke runs), shaped by `overrides`;
  * a hub id ("google/gemma-2b-it"): downloaded with huggingface_hub when online.
"""
import ml_collections

from skd_jax.train import methods


def _model(path: str, dtype: str = "float32", rules: str = "student") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      path=path,            # Local dir / .gguf / preset name / hub id (see above).
      dtype=dtype,          # Compute dtype ("bfloat16" on accelerators).
      param_dtype="",       # Storage dtype of loaded weights; "" = dtype.
      init_seed=0,          # Seed of a preset's random init.
      rules=rules,          # `skd_jax.sharding` rule table: student (FSDP) / teacher (TP).
      keep_layers=(),       # Layer-pruned copy: keep these decoder layers (() = all).
      # ModelConfig field overrides for presets (e.g. hidden_size=32).
      overrides=ml_collections.ConfigDict(),
  ))


def get_config() -> ml_collections.ConfigDict:
  """The defaults; every knob has a comment."""
  c = ml_collections.ConfigDict()
  c.name = "base"                     # Experiment name (default workdir suffix).
  c.workdir = ""                      # Output folder; "" = /tmp/skd_jax/<name>.
  c.seed = 0                          # Run key: params init, coin flips, sampling.
  # Method: sft | supervised_kd | seq_kd (cross-entropy on teacher samples)
  # | seq_kd_divergence | on_policy | gkd | imitkd | two_stage | skd | skd_mixed
  # (see docs/DRIVER.md).
  c.method = "skd"

  c.student = _model("google/gemma-2b-it", "bfloat16")
  c.teacher = _model("google/gemma-7b-it", "bfloat16", "teacher")
  # Tokenizer: "" = the student's checkpoint; "testing:gemma" / "testing:qwen" =
  # the tiny offline BPE tokenizer of `skd_jax.data.testing`; or a path / hub id.
  c.tokenizer = ""

  c.task = ml_collections.ConfigDict(dict(
      name="translation",             # `skd_jax.data.get_task` name.
      train_size=1000,                # Seeded training subset (paper: 1K; 0 = all).
      max_prompt_tokens=256,          # Prompt budget (longer inputs truncated).
      max_new_tokens=256,             # Completion budget (sampling and references).
      overlong="truncate",            # "truncate" | "drop" over-long examples.
      raw_dir="",                     # Raw data folder ("" = $SKD_RAW_DATA_DIR / default).
  ))

  # Sampling settings; defaults are the official code's (table in docs/DRIVER.md).
  c.sampler = ml_collections.ConfigDict(dict(
      top_k=25,                       # SKD acceptance K (0 = teacher, vocab = student).
      gamma=5,                        # Student draft tokens per teacher verify pass.
      temperature=0.2,                # SKD / teacher sampling temperature (both models).
      top_p=0.5,                      # SKD / teacher nucleus (both models).
      sampling_top_k=50,              # SKD / teacher top-k filter (0 = off; HF's default 50).
      acceptance="raw",               # "raw" | "warped" teacher distribution for the top-K test.
      # Official-code variants (SamplerConfig docstring; docs/RESULTS.md "Acceptance variants"):
      acceptance_top_p=0.0,           # 0 = top-K test; p in (0, 1]: accept inside the teacher's
                                      #   top-p nucleus instead (the official `teacher_p`).
      top_k_decay_length=0,           # 0 = constant K; L > 0: the official linearly decaying K
                                      #   (`expected_seq_len`), by completion index.
      # Acceptance-targeting K (beyond the paper; skd_jax/train/acceptance_control.py): K
      # moves between steps to hold the teacher-replacement rate near a target.
      target_replacement_rate=0.0,    # 0 = off (K = top_k throughout); else the rate to hold.
      target_band=0.05,               # No change while |rate - target| <= band.
      target_k_min=1,                 # Bounds of the controlled K (k_max 0 = vocabulary size).
      target_k_max=0,
      target_gain=0.5,                # log-K step per unit log error (stable for gain * a < 2).
      # Student-only sampling, one (temperature, top_p, sampling_top_k) per method.
      on_policy_temperature=0.5,      # on_policy (official: student T 0.5, top-p 0.5,
      on_policy_top_p=0.5,            #   HF generate's default top-k 50).
      on_policy_sampling_top_k=50,
      imitkd_temperature=1.0,         # imitkd (official "mixed": generate() defaults,
      imitkd_top_p=1.0,               #   no temperature / top-p passed).
      imitkd_sampling_top_k=50,
      two_stage_temperature=1.0,      # two_stage (official "mixed_train": the same).
      two_stage_top_p=1.0,
      two_stage_sampling_top_k=50,
      gkd_temperature=0.9,            # gkd (TRL GKDConfig temperature 0.9, top-k 0).
      gkd_top_p=1.0,
      gkd_sampling_top_k=0,
      prompt_buckets=(),              # Padded prompt lengths; () = powers of two.
      cache_length=0,                 # KV-cache slots; 0 = prompt + max_new + gamma.
      shared_vocab_size=0,            # Qwen2-7B vs 0.5B: sample over the shared ids.
  ))

  # Each method's mixing knobs (gkd: lmbda, gkd_per_sequence, gkd_seq_kd; imitkd:
  # imitkd_fraction; skd_mixed: skd_fraction; two_stage: two_stage_fraction), with
  # their defaults and one-line docs, live in its entry of skd_jax/train/methods.py.
  c.mix = ml_collections.ConfigDict(methods.mix_defaults())

  c.loss = ml_collections.ConfigDict(dict(
      divergence="fkl",               # fkl | rkl | jsd | tvd | skl.
      temperature=1.0,                # Softmax temperature of both models in the loss.
      beta=0.5,                       # jsd interpolation (TRL: 0 = fkl, 1 = rkl).
      alpha=0.1,                      # skl skew.
      top_k=None,                     # Sparse teacher over its top-k (None = full vocab).
      reduction="sequence",           # "sequence" (paper) | "token" mean.
      chunk_size=32,                  # Positions per chunk of the memory-bounded loss.
      num_microbatches=1,             # Gradient accumulation steps.
      remat=False,                    # Rematerialise student layers in the backward pass.
  ))

  c.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-5,             # Peak learning rate (AdamW).
      schedule="linear",              # Linear decay to end_learning_rate over the run.
      warmup_steps=0,
      end_learning_rate=0.0,
      b1=0.9, b2=0.999, eps=1e-6,
      weight_decay=0.0,
      max_grad_norm=1.0,              # Global-norm clipping (0 = off).
  ))

  c.batch_size = 8                    # Global sequences per update (all hosts).
  c.num_epochs = 10                   # Passes over the training subset.
  c.max_steps = 0                     # Cap on updates (0 = epochs decide).
  # Device mesh ("data", "fsdp", "tensor"; one -1 takes the rest, see docs/SCALING.md).
  # The batch is split over data x fsdp, so batch_size must be a multiple of it.
  c.mesh = "data:1,fsdp:-1,tensor:1"
  c.num_devices = 0                   # Devices the mesh covers (0 = all).

  c.eval = ml_collections.ConfigDict(dict(
      every_steps=100,                # Evaluate every N steps (0 = only at the end).
      split="validation",             # Split evaluated during training.
      final_split="test",             # Split evaluated at the end and by --mode=eval.
      limit=200,                      # Examples per periodic evaluation (0 = all).
      final_limit=0,                  # Examples of the final / --mode=eval score (0 = all).
      batch_size=16,                  # Prompts per greedy-decoding call.
      metric="",                      # Best-checkpoint metric; "" = the task's first.
      num_samples=8,                  # Completions written to samples/step_N.jsonl.
      agreement_batches=1,            # Validation batches for teacher-student top-1 agreement.
      # Evaluators run at each evaluation, in order (skd_jax.train.evaluators.EVALUATORS).
      evaluators="task_metrics,top1_agreement,samples",
  ))

  c.checkpoint = ml_collections.ConfigDict(dict(
      every_steps=100,                # Periodic (asynchronous) save interval.
      max_to_keep=3,                  # Latest checkpoints kept (plus the best one).
      keep_best=True,                 # Also keep the best by eval.metric.
      restore_from="",                # Initialise the student from this checkpoint dir.
  ))

  c.log_every_steps = 10              # metrics.jsonl / TensorBoard interval.
  c.export = True                     # Write the student as HF to WORKDIR/export at the end.
  c.num_sample_prompts = 4            # --mode=sample: prompts to print.
  return c


def make_tiny(c: ml_collections.ConfigDict, task: str, family: str = "gemma"):
  """Shrinks `c` to an offline run of about a minute on CPU.

  Tiny random models (vocabulary = the tiny tokenizer's), the tiny chat
  tokenizer of `skd_jax.data.testing`, the offline task `task`, a few steps.
  """
  preset = "tiny-gemma" if family == "gemma" else "tiny-qwen2"
  shape = dict(hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1,
               head_dim=16)
  c.student = _model(preset)
  c.student.overrides = ml_collections.ConfigDict(dict(num_layers=1, **shape))
  c.teacher = _model(preset, rules="teacher")
  c.teacher.init_seed = 1
  c.teacher.overrides = ml_collections.ConfigDict(dict(num_layers=2, **shape))
  c.tokenizer = f"testing:{family}"
  c.task.name = task
  c.task.train_size = 64
  c.task.max_prompt_tokens = 64
  c.task.max_new_tokens = 8
  c.eval.metric = ""  # The offline task's first metric.
  c.sampler.shared_vocab_size = 0
  c.sampler.gamma = 2
  c.sampler.prompt_buckets = (64,)
  c.batch_size = 4
  c.num_epochs = 1
  c.max_steps = 6
  c.num_devices = 1                   # One device: fastest for tiny models.
  c.optimizer.learning_rate = 1e-3
  c.eval.every_steps = 3
  c.eval.limit = 8
  c.eval.final_limit = 8
  c.eval.batch_size = 8
  c.eval.num_samples = 4
  c.checkpoint.every_steps = 2
  c.checkpoint.max_to_keep = 2
  c.log_every_steps = 1
  return c

