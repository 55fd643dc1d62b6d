"""The student's training state in the driver: data, state, checkpoints' params, the step.

    dataset, steps_per_epoch = train_dataset(run)
    state = create_state(run, total_steps_of(run.config, steps_per_epoch))
    state, metrics = apply_step(run, state, batch)     # batch from rollout.make_train_batch

The step is the method's objective (`methods.METHODS[method].objective`):
cross-entropy (`step.sft_step`) or the divergence to the teacher
(`step.train_step`), jitted and run under the run's mesh.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from skd_jax import distributed
from skd_jax import sharding
from skd_jax.data import pipeline
from skd_jax.models import partitioning
from skd_jax.train import methods
from skd_jax.train import optim
from skd_jax.train import step as step_lib
from skd_jax.train.checkpointing import Checkpointer
from skd_jax.train.state import TrainState
from skd_jax.train.validate import ConfigError


def train_dataset(run):
  """(grain IterDataset of this host's batches, steps per epoch)."""
  config = run.config
  encoded = pipeline.encode_split(run.task, run.tokenizer, "train",
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
  """Epochs x steps per epoch, capped by `max_steps` (0 = no cap)."""
  total = int(config.num_epochs) * steps_per_epoch
  return min(total, int(config.max_steps)) if config.max_steps else total


def _new_state(run, total_steps: int) -> TrainState:
  opt_cfg = optim.optimizer_config(run.config.optimizer, total_steps=total_steps)
  return TrainState.create(run.student.params, jax.random.PRNGKey(int(run.config.seed)),
                           opt_cfg)


def _state_shardings(run, state):
  params_shardings = partitioning.param_shardings(run.student.config, run.mesh,
                                                  run.config.student.rules)
  return sharding.train_state_shardings(state, params_shardings, run.mesh)


def create_state(run, total_steps: int) -> TrainState:
  """A fresh TrainState (fp32 master copy) placed by the student rule table."""
  state = _new_state(run, total_steps)
  return jax.device_put(state, _state_shardings(run, state))


def abstract_state(run, total_steps: int = 1) -> TrainState:
  """`create_state`'s structure as sharded `ShapeDtypeStruct`s (nothing allocated):
  the target a checkpoint is restored into when only its params are wanted."""
  shapes = jax.eval_shape(lambda: _new_state(run, total_steps))
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, _state_shardings(run, shapes))


def _latest(directory: str, target) -> tuple[TrainState, int] | None:
  """(state restored into `target`, step) of the latest checkpoint in `directory`."""
  ckpt = Checkpointer(directory)
  try:
    step = ckpt.latest_step()
    return None if step is None else (ckpt.restore(step, target)[0], step)
  finally:
    ckpt.close()


def restore_params_from(run, state: TrainState, directory: str) -> TrainState:
  """`state` with the student params of the latest checkpoint in `directory`
  (optimizer reset)."""
  latest = _latest(directory, abstract_state(run))
  if latest is None:
    raise ConfigError(f"checkpoint.restore_from={directory!r} holds no checkpoint.")
  params = latest[0].params
  return state.replace(params=params, opt_state=state.tx.init(params))


def trained_params(run):
  """(params, step): of the latest checkpoint in WORKDIR, else of
  `checkpoint.restore_from` (the run's starting point, e.g. an SFT-initialised
  student; step 0), else the initial student (step 0)."""
  directory = os.path.join(run.workdir, "checkpoints")
  if os.path.isdir(directory):
    latest = _latest(directory, abstract_state(run))
    if latest is not None:
      return latest[0].params, latest[1]
  if run.config.checkpoint.restore_from:
    latest = _latest(run.config.checkpoint.restore_from, abstract_state(run))
    if latest is None:
      raise ConfigError(f"checkpoint.restore_from={run.config.checkpoint.restore_from!r} "
                        "holds no checkpoint.")
    return latest[0].params, 0
  return run.student.params, 0


def step_call(run, state: TrainState, batch: dict[str, np.ndarray]):
  """(jitted step function, args, static kwargs) of the method's objective."""
  device_batch = distributed.global_rows(batch, run.mesh, replicated=False)
  if methods.METHODS[run.config.method].objective == "sft":
    return step_lib.sft_step, (state, device_batch), dict(
        student_cfg=run.student.config, loss_cfg=run.loss_cfg)
  return step_lib.train_step, (state, run.teacher.params, device_batch), dict(
      student_cfg=run.student.config, teacher_cfg=run.teacher.config, loss_cfg=run.loss_cfg)


def apply_step(run, state: TrainState, batch: dict[str, np.ndarray]):
  """The jitted update of the method's objective on a host batch (donates `state`).

  Runs (and compiles) under the run's mesh: the model's logical constraints
  keep activations batch-sharded only when a mesh is set.
  """
  fn, args, kwargs = step_call(run, state, batch)
  with jax.set_mesh(run.mesh):
    return fn(*args, **kwargs)


def lower_step(run, state: TrainState, batch: dict[str, np.ndarray]):
  """`apply_step`'s program, lowered exactly as the driver runs it (for
  `memory_analysis()` / HLO checks)."""
  fn, args, kwargs = step_call(run, state, batch)
  with jax.set_mesh(run.mesh):
    return fn.lower(*args, **kwargs)


def mean_of(pair) -> float:
  """total / count of a step metric's (sum, count) pair (nan when count is 0)."""
  total, count = (float(x) for x in distributed.to_host(pair))
  return total / count if count else float("nan")
