"""The driver's state as abstract, sharded inputs (no weights read or allocated)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from skd_jax import plan as plan_lib
from skd_jax import sharding
from skd_jax.compile.topology import CompileError
from skd_jax.models import partitioning
from skd_jax.models import transformer
from skd_jax.models.config import ModelConfig


def abstract(shapes: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `shapes` carrying `shardings` (a tree, or one for all)."""
  if isinstance(shardings, jax.sharding.Sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings),
                        shapes)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      shapes, shardings)


def shard_bytes(tree: Any) -> int:
  """Bytes one chip holds of a tree of sharded ShapeDtypeStructs (the largest shard)."""
  total = 0
  for x in jax.tree.leaves(tree):
    shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
    total += math.prod(shape) * jnp.dtype(x.dtype).itemsize
  return total


@dataclasses.dataclass
class Setup:
  """Everything a compile needs, derived from the experiment config like the driver does."""
  config: Any
  mesh: jax.sharding.Mesh
  student_cfg: ModelConfig
  teacher_cfg: ModelConfig
  student_rules: Any
  teacher_rules: Any
  batch_size: int
  eval_batch_size: int
  train_length: int
  stop_ids: tuple[int, ...]
  loss_cfg: Any
  state: Any               # TrainState of ShapeDtypeStructs (fp32 master weights).
  teacher_params: Any
  initial_student: Any     # The loaded student weights the driver keeps (env.student).

  @property
  def axis_sizes(self) -> dict[str, int]:
    return sharding.mesh_axis_sizes(self.mesh)


def _loss_config(config) -> Any:
  """The LossConfig as `train.run_setup.setup` builds it."""
  from skd_jax.train import step as step_lib  # pylint: disable=import-outside-toplevel
  return step_lib.loss_config(
      config.loss, shared_vocab_size=int(config.sampler.get("shared_vocab_size", 0) or 0) or None)


def build_setup(config, devices: Sequence[Any]) -> Setup:
  """Validates `config` for these devices and builds the abstract driver state.

  Raises:
    CompileError: a mesh that does not match the devices, a batch the
      data-parallel axes do not divide, or any other config error.
  """
  from skd_jax.train import optim  # pylint: disable=import-outside-toplevel
  from skd_jax.train.state import TrainState  # pylint: disable=import-outside-toplevel
  from skd_jax.train.validate import (ConfigError, validate_config,  # pylint: disable=import-outside-toplevel
                                      validate_models)
  count = int(config.get("num_devices", 0) or 0) or len(devices)
  try:
    sharding.resolve_mesh_shape(config.mesh, count)
  except ValueError as e:
    raise CompileError(f"--mesh={config.mesh!r} does not fit the topology's {len(devices)} "
                       f"devices: {e}") from None
  try:
    validate_config(config, len(devices))
    student_cfg, teacher_cfg = plan_lib.model_configs(config)
    validate_models(config, student_cfg, teacher_cfg)
    loss_cfg = _loss_config(config)
  except (ConfigError, ValueError) as e:
    raise CompileError(str(e)) from None
  mesh = sharding.make_mesh(config.mesh, list(devices)[:count])
  s_rules, t_rules = config.student.rules, config.teacher.rules

  s_shapes = transformer.param_shapes(student_cfg)
  s_shardings = partitioning.param_shardings(student_cfg, mesh, s_rules)
  opt_cfg = optim.optimizer_config(config.optimizer, total_steps=1000)
  state = jax.eval_shape(lambda p: TrainState.create(p, jax.random.PRNGKey(0), opt_cfg),
                         s_shapes)
  state = abstract(state, sharding.train_state_shardings(state, s_shardings, mesh))
  teacher = abstract(transformer.param_shapes(teacher_cfg),
                      partitioning.param_shardings(teacher_cfg, mesh, t_rules))
  return Setup(
      config=config, mesh=mesh, student_cfg=student_cfg, teacher_cfg=teacher_cfg,
      student_rules=s_rules, teacher_rules=t_rules, batch_size=int(config.batch_size),
      eval_batch_size=int(config.eval.batch_size),
      train_length=int(config.task.max_prompt_tokens) + int(config.task.max_new_tokens),
      stop_ids=tuple(student_cfg.eos_ids), loss_cfg=loss_cfg, state=state,
      teacher_params=teacher, initial_student=abstract(s_shapes, s_shardings))


def batch_inputs(setup: Setup, rows: int, shapes: Mapping[str, tuple[tuple[int, ...], Any]]):
  spec = sharding.batch_sharding(setup.mesh, rows)
  return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=spec)
          for k, (shape, dtype) in shapes.items()}
