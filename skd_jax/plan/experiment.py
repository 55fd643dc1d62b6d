"""Plans from experiment configs: loading a config file, its models' configs (no
weights), `plan_experiment` (shared with `skd_jax.compile`)."""
from __future__ import annotations

import json
import os
from typing import Sequence

from skd_jax.models.config import ModelConfig, get_config
from skd_jax.plan.planner import plan
from skd_jax.plan.report import Report


class PlanError(ValueError):
  """A config that cannot be planned; the message alone is shown."""


def load_config(spec: str, overrides: Sequence[str] = ()):
  """The ConfigDict of `FILE[:arg]` (as `--config` of the driver) with
  `KEY=VALUE` overrides (the driver's `--config.KEY=VALUE`, without the prefix)."""
  import ast  # pylint: disable=import-outside-toplevel
  import importlib.util  # pylint: disable=import-outside-toplevel
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise PlanError(f"--config={spec!r}: no such config file {path!r}.")
  module_spec = importlib.util.spec_from_file_location(
      "skd_plan_config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    raise PlanError(f"--config={spec!r}: {e}") from None
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep:
      raise PlanError(f"--config.{item}: expected --config.KEY=VALUE.")
    *parents, leaf = key.split(".")
    node = config
    try:
      for name in parents:
        node = node[name]
      current = node[leaf]
    except (KeyError, AttributeError):
      raise PlanError(f"--config.{key}: no such key in {spec}.") from None
    if isinstance(current, str):
      value = text
    elif isinstance(current, bool):
      value = text.strip().lower() in ("1", "true", "yes")
    else:
      try:
        value = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        value = text
      if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    try:
      node[leaf] = value
    except TypeError as e:
      raise PlanError(f"--config.{key}={text!r}: {e}") from None
  return config


def _offline_tokenizer(config):
  """The run's tokenizer when it loads without the network (tiny testing
  tokenizers, local directories), else None."""
  spec = config.tokenizer or config.student.path
  if spec.startswith("testing:") or (os.path.isdir(os.path.expanduser(spec))):
    from skd_jax.train import loading  # pylint: disable=import-outside-toplevel
    return loading.load_tokenizer(config)
  return None


def model_config_of(spec, role: str, tokenizer=None) -> ModelConfig:
  """A model's config without its weights, as the driver would build it.

  `spec.path` may be a preset (shaped by `spec.overrides`; vocabulary and
  special ids from the run's tokenizer when it loads offline, as the driver
  does), a local directory with config.json, or a hub id (its preset shapes
  from `models.config.HUB_PRESETS`, else its config.json from the hub).
  """
  from skd_jax.models import config as mconfig  # pylint: disable=import-outside-toplevel
  dtype, param_dtype = spec.dtype, spec.param_dtype or spec.dtype
  path = spec.path
  overrides = dict(spec.overrides.to_dict()) if spec.get("overrides") else {}
  if path in mconfig.PRESETS:
    if tokenizer is not None:
      from skd_jax.train import loading  # pylint: disable=import-outside-toplevel
      return loading.preset_config(spec, tokenizer)
    return get_config(path, dtype=dtype, param_dtype=param_dtype, **overrides)
  local = os.path.expanduser(path)
  if os.path.isdir(local) and os.path.exists(os.path.join(local, "config.json")):
    with open(os.path.join(local, "config.json"), encoding="utf-8") as f:
      return mconfig.from_hf_config(json.load(f), dtype=dtype, param_dtype=param_dtype)
  preset = mconfig.preset_for_hub_id(path)
  if preset is not None:
    return get_config(preset, dtype=dtype, param_dtype=param_dtype, **overrides).replace(
        name=path)
  if os.path.exists(local):
    raise PlanError(f"{role}.path={path!r}: only a directory with config.json, a preset or a "
                    "known hub id can be planned without loading it.")
  try:
    import huggingface_hub  # pylint: disable=import-outside-toplevel
    with open(huggingface_hub.hf_hub_download(path, "config.json"), encoding="utf-8") as f:
      return mconfig.from_hf_config(json.load(f), dtype=dtype, param_dtype=param_dtype)
  except Exception as e:  # pylint: disable=broad-except
    raise PlanError(f"{role}.path={path!r}: not a preset, a local directory or a hub id of "
                    f"models.config.HUB_PRESETS, and its config.json could not be fetched "
                    f"({type(e).__name__}); pass a local checkpoint directory.") from None


def model_configs(config) -> tuple[ModelConfig, ModelConfig]:
  """(student, teacher) ModelConfigs of an experiment config, no weights loaded."""
  tokenizer = _offline_tokenizer(config)
  return (model_config_of(config.student, "student", tokenizer),
          model_config_of(config.teacher, "teacher", tokenizer))


def plan_experiment(config, mesh: str | None = None, num_devices: int | None = None,
                    batch: int | None = None) -> Report:
  """`plan` with everything the experiment config says (models, rules, batch,
  prompt + new tokens, gamma, loss chunking, remat, micro-batches)."""
  student, teacher = model_configs(config)
  count = num_devices or int(config.get("num_devices", 0) or 0) or None
  mesh = mesh or config.mesh
  if count is None and "-1" in str(mesh):
    raise PlanError(f"mesh={mesh!r} has a -1 axis; give --num_devices (or a mesh without -1).")
  prompt, new = int(config.task.max_prompt_tokens), int(config.task.max_new_tokens)
  return plan(student, teacher, mesh, batch or int(config.batch_size), prompt + new,
              num_devices=count, student_rules=config.student.rules,
              teacher_rules=config.teacher.rules, chunk_size=int(config.loss.chunk_size),
              remat=bool(config.loss.remat),
              num_microbatches=int(config.loss.get("num_microbatches", 1) or 1),
              cache_length=prompt + new + int(config.sampler.gamma),
              eval_batch=int(config.eval.batch_size),
              objective=_objective(config.method), driver_copy=True, prompt_len=prompt)


def _objective(method: str) -> str:
  from skd_jax.train import methods  # pylint: disable=import-outside-toplevel
  if method not in methods.METHODS:
    raise PlanError(f"unknown method {method!r}; use one of {sorted(methods.METHODS)}.")
  return methods.METHODS[method].objective
