"""The typed run setup: everything a run builds once from its config.

    run = setup(config, workdir)      # validated; models placed on the mesh; nothing compiled

`RunSetup` holds what the rest of the driver reads: the tokenizer, the task,
both models (params on their rule tables' shardings), the mesh, the stop ids
and stop sequences, the padding id, the loss config and the best-checkpoint
metric. `config` is kept for the knobs only one room reads (the loop's
intervals, the evaluators' settings).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
from jax.sharding import Mesh

from skd_jax import distributed
from skd_jax import sharding
from skd_jax.data import get_task
from skd_jax.data import templates
from skd_jax.models import partitioning
from skd_jax.models.model import Model
from skd_jax.train import loading
from skd_jax.train import step as step_lib
from skd_jax.train.validate import ConfigError, validate_config, validate_models


@dataclasses.dataclass(frozen=True)
class RunSetup:
  """What a run builds once from its config (see the module docstring)."""
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
  """`config.workdir`, else /tmp/skd_jax/<config.name>."""
  return config.workdir or os.path.join("/tmp/skd_jax", config.name)


def mesh_devices(config) -> list[jax.Device]:
  """The devices `config.mesh` covers: the first `config.num_devices` (0 = all)."""
  devices = jax.devices()
  return devices[:int(config.num_devices) or len(devices)]


def _load_models(config, tokenizer) -> dict[str, Model]:
  """Both models, validated against the config before and after loading."""
  specs = {role: config[role] for role in ("student", "teacher")}
  resolved = {role: loading.model_config_of(spec, tokenizer, role)
              for role, spec in specs.items()}
  if all(cfg is not None for cfg, _ in resolved.values()):  # Before reading any weights.
    validate_models(config, resolved["student"][0], resolved["teacher"][0])
  loaded = {}
  models = {role: loading.load_weights(specs[role], cfg, path, role, loaded)
            for role, (cfg, path) in resolved.items()}
  del loaded
  validate_models(config, models["student"].config, models["teacher"].config)
  return models


def _load_task(config):
  kwargs = dict(max_prompt_tokens=int(config.task.max_prompt_tokens),
                max_new_tokens=int(config.task.max_new_tokens))
  if config.task.train_size:
    kwargs["train_size"] = int(config.task.train_size)
  if config.task.raw_dir:
    kwargs["raw_dir"] = config.task.raw_dir
  try:
    return get_task(config.task.name, **kwargs)
  except ValueError as e:
    raise ConfigError(f"task.name={config.task.name!r}: {e}") from None


def _eval_metric(config, task) -> str:
  metric = config.eval.metric or task.metrics[0]
  if metric not in task.metrics:
    raise ConfigError(f"eval.metric={metric!r} is not a metric of task {task.name!r} "
                      f"({list(task.metrics)}).")
  return metric


def _loss_config(config) -> step_lib.LossConfig:
  try:
    return step_lib.loss_config(
        config.loss, shared_vocab_size=int(config.sampler.shared_vocab_size) or None)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"loss: {e}") from None


def setup(config, workdir: str | None = None) -> RunSetup:
  """Validates the config, then builds tokenizer, task and models (nothing compiled).

  Raises:
    ConfigError: with one message per problem found, before any compilation.
  """
  validate_config(config, len(jax.devices()))
  tokenizer = loading.load_tokenizer(config)
  models = _load_models(config, tokenizer)
  task = _load_task(config)
  metric = _eval_metric(config, task)
  loss_cfg = _loss_config(config)
  mesh = sharding.make_mesh(config.mesh, mesh_devices(config))
  for role in ("student", "teacher"):  # Params straight onto their rule table's shardings.
    model = models[role]
    shardings = partitioning.param_shardings(model.config, mesh, config[role].rules)
    models[role] = Model(model.config, distributed.shard_params(model.params, shardings))
  return RunSetup(config=config, workdir=os.path.abspath(workdir or default_workdir(config)),
                  tokenizer=tokenizer, task=task, student=models["student"],
                  teacher=models["teacher"], mesh=mesh,
                  stop_ids=tuple(task.stop_ids(tokenizer)),
                  stop_sequences=tuple(task.stop_sequences(tokenizer)),
                  pad_id=templates.pad_id(tokenizer), loss_cfg=loss_cfg, eval_metric=metric)
