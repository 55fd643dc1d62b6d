"""The experiment driver: config -> models, data, training, evaluation, export.

    run(config, workdir, mode="train")   # also "eval" and "sample"

One training step (host side, no per-token round trip):

1. `methods.row_sources` flips the step's coins (JAX key from the run key and
   the step) and says where each row comes from;
2. one jitted `sampling.rollout` per sampled source present in the batch (the
   student, the teacher or SKD), rows keyed by `sample_key(run_key, step, source)`;
3. `methods.assemble_batch` lays reference and sampled rows out as
   prompt + completion, right-padded to a length bucket;
4. the jitted `train_step` (divergence) or `sft_step` (cross-entropy).

Everything that depends on randomness is a function of (seed, step), and the
data iterator position is checkpointed with the state, so a run resumed from
its checkpoint at step k ends exactly as the uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from skd_jax import sharding

from skd_jax.data import get_task
from skd_jax.data import pipeline
from skd_jax.evaluation import task_eval
from skd_jax.models import config as model_config
from skd_jax.models import hf
from skd_jax.models.model import Model, logits as model_logits, pruned_config
from skd_jax.sampling import api as sampling_api
from skd_jax.sampling import sampler
from skd_jax.sampling.config import SamplerConfig
from skd_jax.train import methods
from skd_jax.train import optim
from skd_jax.train import step as step_lib
from skd_jax.train.checkpointing import Checkpointer
from skd_jax.train.logger import RunLogger
from skd_jax.train.state import TrainState
from skd_jax.train.validate import ConfigError, validate_config, validate_models

_LOG = logging.getLogger(__name__)
MODES = ("train", "eval", "sample")


# ----------------------------------------------------------------------------
# Models and tokenizer.
# ----------------------------------------------------------------------------


def _offline() -> bool:
  return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or \
      os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0")


def resolve_path(path: str, role: str) -> str:
  """A local path for `path`: itself if it exists, else a hub snapshot.

  Hub ids are downloaded with `huggingface_hub.snapshot_download` only when
  online; offline (HF_HUB_OFFLINE=1 or no network) a ConfigError says how to
  point at a local copy.
  """
  expanded = os.path.expanduser(path)
  if os.path.exists(expanded):
    return expanded
  how = (f"download it elsewhere with `hf download {path} --local-dir DIR` and "
         f"pass --config.{role}.path=DIR")
  if _offline():
    raise ConfigError(f"{role}.path={path!r} is neither a local path nor a preset, and the hub "
                      f"is offline (HF_HUB_OFFLINE=1); {how}.")
  try:
    import huggingface_hub  # pylint: disable=g-import-not-at-top
    return huggingface_hub.snapshot_download(
        path, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"{role}.path={path!r}: could not download it from the hub "
                      f"({type(e).__name__}: {e}); {how}.") from None


def load_tokenizer(config) -> Any:
  """The tokenizer: "testing:<style>" (tiny offline BPE), "" (student's) or a path."""
  spec = config.tokenizer or config.student.path
  if spec.startswith("testing:"):
    from skd_jax.data import testing  # pylint: disable=g-import-not-at-top
    return testing.make_chat_tokenizer(spec.split(":", 1)[1])
  if spec in model_config.PRESETS:
    raise ConfigError(f"student.path={spec!r} is a preset without a tokenizer; set "
                      "--config.tokenizer (e.g. testing:gemma or a checkpoint directory).")
  return hf.load_tokenizer(resolve_path(spec, "tokenizer" if config.tokenizer else "student"))


def _special_ids(tokenizer) -> dict[str, Any]:
  from skd_jax.data import templates  # pylint: disable=g-import-not-at-top
  eos = {tokenizer.eos_token_id, templates.completion_end_id(tokenizer)} - {None}
  pad = tokenizer.pad_token_id
  return dict(bos_id=tokenizer.bos_token_id, eos_ids=tuple(sorted(int(i) for i in eos)),
              pad_id=int(pad if pad is not None else min(eos)))


def preset_config(spec, tokenizer) -> model_config.ModelConfig:
  """A preset's ModelConfig with the spec's overrides; vocab/specials from the tokenizer."""
  overrides = dict(spec.overrides.to_dict()) if spec.overrides else {}
  overrides.setdefault("vocab_size", len(tokenizer))
  for key, value in _special_ids(tokenizer).items():
    overrides.setdefault(key, value)
  overrides.setdefault("dtype", spec.dtype)
  overrides.setdefault("param_dtype", spec.param_dtype or spec.dtype)
  return model_config.get_config(spec.path, **overrides)


def model_config_of(spec, tokenizer, role: str) -> tuple[model_config.ModelConfig | None, str]:
  """(ModelConfig if knowable without loading weights, resolved path or preset)."""
  if spec.path in model_config.PRESETS:
    return preset_config(spec, tokenizer), spec.path
  path = resolve_path(spec.path, role)
  config_json = os.path.join(path, "config.json")
  if os.path.isdir(path) and os.path.exists(config_json):
    with open(config_json, encoding="utf-8") as f:
      try:
        cfg = model_config.from_hf_config(json.load(f), dtype=spec.dtype,
                                          param_dtype=spec.param_dtype or None)
      except (ValueError, KeyError, NotImplementedError) as e:
        raise ConfigError(f"{role}.path={path!r}: unsupported config.json ({e}).") from None
    if _kept_layers(spec):
      try:
        cfg = pruned_config(cfg, _kept_layers(spec))
      except ValueError as e:
        raise ConfigError(f"{role}.{e}") from None
    return cfg, path
  return None, path  # A .gguf file: known once loaded.


def _kept_layers(spec) -> tuple[int, ...]:
  return tuple(int(i) for i in (spec.get("keep_layers") or ()))


def _pruned(model: Model, spec, role: str) -> Model:
  """`model` with only `spec.keep_layers` (all when empty)."""
  keep = _kept_layers(spec)
  if not keep:
    return model
  try:
    return model.keep_layers(keep)
  except ValueError as e:
    raise ConfigError(f"{role}.{e}") from None


def load_weights(spec, cfg, path: str, role: str, loaded: dict | None = None) -> Model:
  """Random init for presets, else the checkpoint at `path`, pruned to
  `spec.keep_layers`. `loaded` memoises checkpoints by (path, dtypes), so a
  student pruned from the teacher's checkpoint reads it once."""
  if spec.path in model_config.PRESETS:
    return _pruned(Model.random(cfg, seed=int(spec.init_seed)), spec, role)
  key = (path, spec.dtype, spec.param_dtype or spec.dtype)
  loaded = {} if loaded is None else loaded
  if key not in loaded:
    try:
      loaded[key] = hf.load_model(path, dtype=spec.dtype, param_dtype=spec.param_dtype or None)
    except hf.CheckpointError as e:
      raise ConfigError(f"{role}.path: {e}") from None
  return _pruned(loaded[key], spec, role)


# ----------------------------------------------------------------------------
# Setup.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Env:
  """Everything a run builds once from its config."""
  config: Any
  workdir: str
  tokenizer: Any
  task: Any
  student: Model
  teacher: Model
  mesh: Mesh
  stop_ids: tuple[int, ...]
  stop_sequences: tuple[tuple[int, ...], ...]
  pad_id: int
  loss_cfg: step_lib.LossConfig
  eval_metric: str


def default_workdir(config) -> str:
  return config.workdir or os.path.join("/tmp/skd_jax", config.name)


def make_mesh(config) -> Mesh:
  """The ("data", "fsdp", "tensor") mesh of `config.mesh` over `config.num_devices`."""
  devices = jax.devices()
  count = int(config.num_devices) or len(devices)
  return sharding.make_mesh(config.mesh, devices[:count])


def _batch_sharding(env: "Env", batch_size: int) -> NamedSharding:
  return sharding.batch_sharding(env.mesh, batch_size)


def setup(config, workdir: str | None = None) -> Env:
  """Validates the config, then builds tokenizer, task and models (nothing compiled).

  Raises:
    ConfigError: with one message per problem found, before any compilation.
  """
  validate_config(config, len(jax.devices()))
  tokenizer = load_tokenizer(config)
  specs = {role: config[role] for role in ("student", "teacher")}
  resolved = {role: model_config_of(spec, tokenizer, role) for role, spec in specs.items()}
  if all(cfg is not None for cfg, _ in resolved.values()):
    validate_models(config, resolved["student"][0], resolved["teacher"][0])
  loaded = {}
  models = {role: load_weights(specs[role], cfg, path, role, loaded)
            for role, (cfg, path) in resolved.items()}
  del loaded
  validate_models(config, models["student"].config, models["teacher"].config)
  task_kw = dict(max_prompt_tokens=int(config.task.max_prompt_tokens),
                 max_new_tokens=int(config.task.max_new_tokens))
  if config.task.train_size:
    task_kw["train_size"] = int(config.task.train_size)
  if config.task.raw_dir:
    task_kw["raw_dir"] = config.task.raw_dir
  try:
    task = get_task(config.task.name, **task_kw)
  except ValueError as e:
    raise ConfigError(f"task.name={config.task.name!r}: {e}") from None
  encoded_pad = tokenizer.pad_token_id
  pad_id = int(encoded_pad if encoded_pad is not None else models["student"].config.pad_id)
  metric = config.eval.metric or task.metrics[0]
  if metric not in task.metrics:
    raise ConfigError(f"eval.metric={metric!r} is not a metric of task {task.name!r} "
                      f"({list(task.metrics)}).")
  try:
    loss_cfg = step_lib.loss_config(
        config.loss, shared_vocab_size=int(config.sampler.shared_vocab_size) or None)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"loss: {e}") from None
  mesh = make_mesh(config)
  for role in ("student", "teacher"):  # Params straight onto their rule table's shardings.
    model = models[role]
    shardings = sharding.param_shardings(model.config, mesh, config[role].rules)
    models[role] = Model(model.config, sharding.shard_params(model.params, shardings))
  return Env(config=config, workdir=os.path.abspath(workdir or default_workdir(config)),
             tokenizer=tokenizer, task=task, student=models["student"],
             teacher=models["teacher"], mesh=mesh,
             stop_ids=tuple(task.stop_ids(tokenizer)),
             stop_sequences=tuple(task.stop_sequences(tokenizer)), pad_id=pad_id, loss_cfg=loss_cfg,
             eval_metric=metric)


def train_dataset(env: Env):
  """(grain IterDataset of this host's batches, steps per epoch)."""
  config = env.config
  encoded = pipeline.encode_split(env.task, env.tokenizer, "train",
                                  overlong=config.task.overlong)
  local_batch = config.batch_size // jax.process_count()
  # Global batches: host i reads rows i * local_batch ... of each (see batch_dataset).
  steps_per_epoch = len(encoded.examples) // config.batch_size
  if steps_per_epoch < 1:
    raise ConfigError(f"batch_size={config.batch_size} exceeds the {len(encoded.examples)} "
                      "training examples; lower batch_size.")
  dataset = pipeline.batch_dataset(encoded, batch_size=local_batch, seed=int(config.seed),
                                   num_epochs=None, drop_remainder=True,
                                   prompt_buckets=tuple(config.sampler.prompt_buckets) or None)
  return dataset, steps_per_epoch


def total_steps_of(config, steps_per_epoch: int) -> int:
  total = int(config.num_epochs) * steps_per_epoch
  return min(total, int(config.max_steps)) if config.max_steps else total


def create_state(env: Env, total_steps: int) -> TrainState:
  """A fresh TrainState (fp32 master copy) placed by the student rule table."""
  opt_cfg = optim.optimizer_config(env.config.optimizer, total_steps=total_steps)
  state = TrainState.create(env.student.params, jax.random.PRNGKey(int(env.config.seed)),
                            opt_cfg)
  params_shardings = sharding.param_shardings(env.student.config, env.mesh,
                                              env.config.student.rules)
  return jax.device_put(state, sharding.train_state_shardings(state, params_shardings,
                                                              env.mesh))


def restore_params_from(env: Env, state: TrainState, directory: str) -> TrainState:
  """Student params of the latest checkpoint in `directory` (optimizer reset)."""
  ckpt = Checkpointer(directory)
  step = ckpt.latest_step()
  if step is None:
    raise ConfigError(f"checkpoint.restore_from={directory!r} holds no checkpoint.")
  restored, _ = ckpt.restore(step, state)
  ckpt.close()
  return state.replace(params=restored.params, opt_state=state.tx.init(restored.params))


# ----------------------------------------------------------------------------
# One training step.
# ----------------------------------------------------------------------------


def _length_buckets(config) -> tuple[int, ...]:
  return pipeline.power_of_two_buckets(int(config.task.max_prompt_tokens)
                                       + int(config.task.max_new_tokens))


def _pad_columns(x: np.ndarray, width: int, value=0) -> np.ndarray:
  """[B, W] -> [B, width] right-padded with `value`."""
  return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=value)


def _global_rows(env: Env, local: dict[str, np.ndarray], replicated: bool) -> dict:
  """Global batch arrays from host arrays.

  replicated=False: each process holds its own rows (process i's are global rows
  i * local .. (i+1) * local - 1). replicated=True: every process holds the
  same full batch (evaluation, `--mode=sample`).
  """
  rows = len(next(iter(local.values())))
  global_rows = rows if replicated else rows * jax.process_count()
  shard = _batch_sharding(env, global_rows)
  if replicated:
    return sharding.shard_params(local, shard)
  return sharding.global_batch_from_local(local, env.mesh, shard)


def _local_rows(tree, rows: int, offset: int):
  """Rows offset .. offset + rows of every batch-major leaf (scalars kept)."""
  return jax.tree.map(lambda x: x[offset:offset + rows] if np.ndim(x) else x, tree)


def sample_rows(env: Env, params, source: int, prompt_ids, key: jax.Array,
                row_offset: int = 0, *, replicated: bool = False):
  """Host Rollout (numpy) of `source` for this process's prompts.

  Row i is keyed by row_offset + i. In a multi-process run every process calls
  this together: with replicated=False each passes its own rows (row_offset =
  its first global row) and the prompts are padded to the widest bucket any
  process needs; with replicated=True all pass the same prompts.
  """
  return _rollout(env, params, rollout_sampler_config(env, source), prompt_ids, key,
                  row_offset, replicated)


def rollout_sampler_config(env: Env, source: int) -> SamplerConfig:
  """The SamplerConfig of a training rollout of `source` (methods.STUDENT, ...)."""
  scfg = methods.sampler_config(source, env.config.sampler,
                                max_new_tokens=int(env.config.task.max_new_tokens),
                                stop_ids=env.stop_ids, method=env.config.method)
  return _with_run_settings(env, scfg)


def eval_sampler_config(env: Env) -> SamplerConfig:
  """The student's greedy decoding of evaluations."""
  config = env.config
  scfg = SamplerConfig(method="student", student_temperature=0.0,
                       max_new_tokens=int(config.task.max_new_tokens), stop_ids=env.stop_ids,
                       prompt_buckets=tuple(config.sampler.prompt_buckets) or None,
                       shared_vocab_size=int(config.sampler.shared_vocab_size) or None)
  return _with_run_settings(env, scfg)


def _with_run_settings(env: Env, scfg: SamplerConfig) -> SamplerConfig:
  """The run's stop strings (as id sequences) and each model's rule table."""
  return scfg.replace(stop_sequences=env.stop_sequences,
                      student_rules=env.config.student.rules,
                      teacher_rules=env.config.teacher.rules)



def _rollout(env: Env, params, scfg: SamplerConfig, prompt_ids, key: jax.Array,
             row_offset: int, replicated: bool):
  """`sample_rows` for any SamplerConfig."""
  # Only the models the method runs (a student-only rollout never checks the
  # teacher's vocabulary, which may be padded: Qwen2-7B vs 0.5B).
  student = Model(env.student.config, params) if scfg.method != "teacher" else None
  teacher = env.teacher if scfg.method != "student" else None
  static, dyn, tokens, lengths = sampling_api.prepare(student, teacher, prompt_ids, scfg)
  if not replicated:  # One compiled shape on every process.
    tokens = _pad_columns(tokens, int(sharding.across_processes(tokens.shape[1])))
  keys = np.asarray(jax.device_get(sampler.row_keys_for(key, len(prompt_ids), row_offset)))
  inputs = _global_rows(env, {"tokens": tokens, "lengths": lengths, "keys": keys}, replicated)
  with jax.set_mesh(env.mesh):
    out = sampling_api.run_rollout(student, teacher, inputs["tokens"], inputs["lengths"],
                                   inputs["keys"], dyn, static)
  host = sharding.to_host(out)
  if replicated:
    return host
  return _local_rows(host, len(prompt_ids), jax.process_index() * len(prompt_ids))


def make_train_batch(env: Env, state: TrainState, data_batch, step: int,
                     total_steps: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  """The step's training batch (numpy) and its data statistics."""
  config = env.config
  run_key = state.rng
  local = len(data_batch)
  offset = jax.process_index() * local
  sources = methods.row_sources(config.method, config.mix, methods.source_key(run_key, step),
                                config.batch_size, step, total_steps)[offset:offset + local]
  rollouts, tested, accepted = {}, 0, 0
  for source in sorted(set(sources.tolist()) - {methods.GROUND_TRUTH}):
    out = sample_rows(env, state.params, source, data_batch.prompt_ids,
                      methods.sample_key(run_key, step, source), offset)
    rollouts[source] = out
    rows = sources == source
    tested += int(np.sum(out.tested[rows]))
    accepted += int(np.sum(out.accepted[rows]))
  batch = methods.assemble_batch(data_batch.prompt_ids, data_batch.target_ids, sources,
                                 rollouts, pad_id=env.pad_id, buckets=_length_buckets(config))
  # Totals over every process's rows (logged by process 0).
  sampled, sampled_tokens, from_teacher, completion_tokens, tested, accepted = (
      sharding.across_processes(np.asarray([
          np.sum(batch["sampled"]), np.sum(batch["loss_mask"][batch["sampled"]]),
          np.sum(batch["from_teacher"]), np.sum(batch["loss_mask"]), tested, accepted],
          np.int64), reduce=np.sum).tolist())
  stats = {
      "sampled_fraction": sampled / config.batch_size,
      "replacement_rate": from_teacher / sampled_tokens if sampled_tokens else float("nan"),
      "acceptance_rate": accepted / tested if tested else float("nan"),
      "completion_tokens": int(completion_tokens),
  }
  # Every process must hand the step the same shape.
  width = int(sharding.across_processes(batch["tokens"].shape[1]))
  return {"tokens": _pad_columns(batch["tokens"], width, env.pad_id),
          "loss_mask": _pad_columns(batch["loss_mask"], width, False)}, stats


def _step_call(env: Env, state: TrainState, batch: dict[str, np.ndarray]):
  """(jitted step function, args, static kwargs) of the method's objective."""
  device_batch = _global_rows(env, batch, replicated=False)
  if methods.METHODS[env.config.method].objective == "sft":
    return step_lib.sft_step, (state, device_batch), dict(
        student_cfg=env.student.config, loss_cfg=env.loss_cfg)
  return step_lib.train_step, (state, env.teacher.params, device_batch), dict(
      student_cfg=env.student.config, teacher_cfg=env.teacher.config, loss_cfg=env.loss_cfg)


def apply_step(env: Env, state: TrainState, batch: dict[str, np.ndarray]):
  """The jitted update of the method's objective on a device batch.

  Runs (and compiles) under the run's mesh: the model's logical constraints
  keep activations batch-sharded only when a mesh is set.
  """
  fn, args, kwargs = _step_call(env, state, batch)
  with jax.set_mesh(env.mesh):
    return fn(*args, **kwargs)


def lower_step(env: Env, state: TrainState, batch: dict[str, np.ndarray]):
  """`apply_step`'s program, lowered exactly as the driver runs it (for
  `memory_analysis()` / HLO checks)."""
  fn, args, kwargs = _step_call(env, state, batch)
  with jax.set_mesh(env.mesh):
    return fn.lower(*args, **kwargs)


def _mean(pair) -> float:
  total, count = (float(x) for x in sharding.to_host(pair))
  return total / count if count else float("nan")


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


def greedy_generate_fn(env: Env, params):
  """prompt id lists -> greedy student completions (the student's own sampler)."""
  scfg = eval_sampler_config(env)

  def generate(prompt_ids):
    # Every process generates the same prompts (replicated): metrics need them all.
    out = _rollout(env, params, scfg, prompt_ids, jax.random.PRNGKey(0), 0, replicated=True)
    return [out.tokens[i, out.prompt_length[i]:out.length[i]].tolist()
            for i in range(len(prompt_ids))]
  return generate


def agreement(env: Env, params, split: str) -> float:
  """Teacher-student top-1 agreement on reference completions of `split`."""
  n = int(env.config.eval.agreement_batches)
  if n <= 0:
    return float("nan")
  encoded = pipeline.encode_split(env.task, env.tokenizer, split,
                                  limit=n * int(env.config.eval.batch_size))
  dataset = pipeline.batch_dataset(encoded, batch_size=int(env.config.eval.batch_size),
                                   shuffle=False, num_epochs=1, shard_index=0, shard_count=1)
  student = Model(env.student.config, params)

  def logits_fn(model):  # Same tokens on every process; logits gathered to each.
    def fn(tokens):
      with jax.set_mesh(env.mesh):
        return sharding.to_host(model_logits(
            model, sharding.shard_params(np.asarray(tokens), sharding.replicated(env.mesh))))
    return fn
  agree, count = 0.0, 0
  for batch in dataset:
    value, tokens = task_eval.top1_agreement(logits_fn(env.teacher), logits_fn(student),
                                             batch, pad_id=env.pad_id,
                                             vocab_size=env.loss_cfg.shared_vocab_size)
    if tokens:
      agree, count = agree + value * tokens, count + tokens
  return agree / count if count else float("nan")


def evaluate(env: Env, params, step: int, split: str, limit: int | None = None) -> dict:
  """Task metrics of the greedy student plus top-1 agreement; writes samples.

  limit: examples scored; None = `eval.limit`, 0 = the whole split.
  """
  config = env.config
  out_dir = os.path.join(env.workdir, "eval", f"{split}_step_{step}")
  limit = (int(config.eval.limit) if limit is None else limit) or None  # 0 = all.
  main = jax.process_index() == 0
  scores = task_eval.evaluate_task(env.task, greedy_generate_fn(env, params), env.tokenizer,
                                   split, out_dir if main else None,
                                   batch_size=int(config.eval.batch_size), limit=limit)
  scores["top1_agreement"] = agreement(env, params, split)
  if main:
    _write_samples(os.path.join(out_dir, "predictions.jsonl"),
                   os.path.join(env.workdir, "samples", f"step_{step}.jsonl"),
                   int(config.eval.num_samples))
  return scores


def _write_samples(predictions: str, out_path: str, n: int) -> None:
  if not os.path.exists(predictions):
    return
  os.makedirs(os.path.dirname(out_path), exist_ok=True)
  with open(predictions, encoding="utf-8") as src, open(out_path, "w", encoding="utf-8") as dst:
    for i, line in enumerate(src):
      if i >= n:
        break
      row = json.loads(line)
      dst.write(json.dumps({k: row[k] for k in ("id", "prompt", "prediction", "reference")},
                           ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------
# Modes.
# ----------------------------------------------------------------------------


def _log_devices() -> None:
  # Launch runbooks grep for this line (one per host).
  print(f"jax.process_count()={jax.process_count()} devices={jax.device_count()} "
        f"local_devices={jax.local_device_count()} process_index={jax.process_index()}",
        flush=True)


def train(env: Env) -> dict:
  """Trains, evaluates, checkpoints, exports; returns the final eval metrics."""
  config = env.config
  main = jax.process_index() == 0
  dataset, steps_per_epoch = train_dataset(env)
  total_steps = total_steps_of(config, steps_per_epoch)
  state = create_state(env, total_steps)
  ckpt = Checkpointer(os.path.join(env.workdir, "checkpoints"),
                      max_to_keep=int(config.checkpoint.max_to_keep),
                      best_metric=env.eval_metric if config.checkpoint.keep_best else None)
  iterator = iter(dataset)
  latest = ckpt.latest_step()
  if latest is not None:
    state, data_state = ckpt.restore(latest, state)
    iterator.set_state(data_state)
  elif config.checkpoint.restore_from:
    state = restore_params_from(env, state, config.checkpoint.restore_from)
  start = int(sharding.to_host(state.step))
  logger = RunLogger(env.workdir, total_steps=total_steps, initial_step=start, enabled=main)
  if latest is not None:
    logger.message(f"resumed from step {latest} ({ckpt.directory})")
  log_every, eval_every = int(config.log_every_steps), int(config.eval.every_steps)
  save_every = int(config.checkpoint.every_steps)
  window: dict[str, list[float]] = {}
  last_eval = None
  for step in range(start, total_steps):
    tic = time.perf_counter()
    batch, stats = make_train_batch(env, state, next(iterator), step, total_steps)
    state, metrics = apply_step(env, state, batch)
    values = {name: _mean(pair) for name, pair in metrics.items()}
    values.update(stats)
    values["step_seconds"] = time.perf_counter() - tic
    values["tokens_per_sec"] = stats["completion_tokens"] / values["step_seconds"]
    for name, value in values.items():
      window.setdefault(name, []).append(value)
    done = step + 1
    logger.advance(1, {"loss": values["loss"], "tok/s": values["tokens_per_sec"],
                       "repl": values["replacement_rate"]})
    if done % log_every == 0 or done == total_steps:
      logger.train(done, {k: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan")
                          for k, v in window.items()})
      window = {}
    eval_metrics = None
    if eval_every and done % eval_every == 0 and done != total_steps:
      eval_metrics = evaluate(env, state.params, done, config.eval.split)
      logger.eval(done, config.eval.split, eval_metrics)
      last_eval = eval_metrics
    if done == total_steps:
      eval_metrics = evaluate(env, state.params, done, config.eval.split)
      logger.eval(done, config.eval.split, eval_metrics)
      last_eval = eval_metrics
    if done % save_every == 0 or eval_metrics is not None:
      ckpt.save(done, state, iterator.get_state(),
                _ranked(eval_metrics, env.eval_metric))
  ckpt.wait()
  ckpt.close()
  final, final_step = {}, int(sharding.to_host(state.step))
  if config.eval.final_split:
    final = evaluate(env, state.params, final_step, config.eval.final_split,
                     limit=final_limit(config))
    logger.eval(final_step, config.eval.final_split, final)
    write_result(env, final, final_step)
  if config.export:
    host_params = sharding.to_host(state.params)   # A collective: every process gathers.
    if main:
      export_dir = os.path.join(env.workdir, "export")
      hf.export_hf(Model(env.student.config, host_params), export_dir, tokenizer=env.tokenizer)
      logger.message(f"exported the student to {export_dir}")
  logger.close()
  return {"final": final, "last_eval": last_eval, "step": final_step}


def _ranked(metrics: dict | None, name: str) -> dict | None:
  """Metrics for the best-checkpoint ranking (None when the metric is missing)."""
  if not metrics or not np.isfinite(metrics.get(name, float("nan"))):
    return None
  return metrics


def _trained_params(env: Env):
  """Params of the latest checkpoint in WORKDIR, else of `checkpoint.restore_from`
  (the run's starting point, e.g. an SFT-initialised student), else the initial
  student."""
  directory = os.path.join(env.workdir, "checkpoints")
  if os.path.isdir(directory):
    ckpt = Checkpointer(directory)
    step = ckpt.latest_step()
    if step is not None:
      state, _ = ckpt.restore(step, create_state(env, 1))
      ckpt.close()
      return state.params, step
    ckpt.close()
  if env.config.checkpoint.restore_from:
    return restore_params_from(env, create_state(env, 1),
                               env.config.checkpoint.restore_from).params, 0
  return env.student.params, 0


def final_limit(config) -> int:
  """Examples of the final evaluation: `eval.final_limit`, 0 = the whole split
  (the paper scores whole test sets; `eval.limit` bounds periodic evaluations)."""
  return int(config.eval.get("final_limit", 0))


def write_result(env: Env, final: dict, step: int) -> None:
  """WORKDIR/result.json: {"final": {metric: value, ..., "num_examples": N}, "step": S}."""
  if jax.process_index() != 0:
    return
  with open(os.path.join(env.workdir, "result.json"), "w", encoding="utf-8") as f:
    json.dump({"final": {k: float(v) if k != "num_examples" else int(v)
                         for k, v in final.items()},
               "split": env.config.eval.final_split, "step": int(step)}, f, indent=2)


def evaluate_mode(env: Env) -> dict:
  params, step = _trained_params(env)
  scores = evaluate(env, params, step, env.config.eval.final_split,
                    limit=final_limit(env.config))
  write_result(env, scores, step)
  print(json.dumps({"step": step, "split": env.config.eval.final_split, **scores},
                   default=float, indent=2), flush=True)
  return scores


def sample_mode(env: Env) -> list[dict]:
  """Prints a few completions of validation prompts with the method's sampler."""
  params, step = _trained_params(env)
  used = [s for s in methods.METHODS[env.config.method].sources if s != methods.GROUND_TRUTH]
  source = used[0] if used else methods.STUDENT
  records = pipeline.encode_split(env.task, env.tokenizer, env.config.eval.split,
                                  limit=int(env.config.num_sample_prompts)).examples
  prompts = [list(e.prompt_ids) for e in records]
  out = sample_rows(env, params, source, prompts,
                    methods.sample_key(jax.random.PRNGKey(int(env.config.seed)), step, source))
  rows = []
  for i, example in enumerate(records):
    start, end = int(out.prompt_length[i]), int(out.length[i])
    completion = out.tokens[i, start:end].tolist()
    row = {"prompt": example.prompt_text, "sampler": methods.SOURCE_NAMES[source],
           "completion": env.tokenizer.decode(completion),
           "teacher_tokens": int(np.sum(out.from_teacher[i, start:end])),
           "tokens": len(completion)}
    rows.append(row)
    print(json.dumps(row, ensure_ascii=False), flush=True)
  return rows


def run(config, workdir: str | None = None, mode: str = "train") -> Any:
  """Runs `mode` ("train" | "eval" | "sample") of the experiment `config`.

  Raises:
    ConfigError: a bad config (validated before anything compiles).
  """
  if mode not in MODES:
    raise ConfigError(f"unknown mode {mode!r}; use one of {list(MODES)}.")
  _log_devices()
  env = setup(config, workdir)
  if jax.process_index() == 0:
    os.makedirs(env.workdir, exist_ok=True)
    with open(os.path.join(env.workdir, "config.json"), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=2))
  if mode == "train":
    return train(env)
  if mode == "eval":
    return evaluate_mode(env)
  return sample_mode(env)
