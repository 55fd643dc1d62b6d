"""Experiment-config validation: every check in one place, before anything compiles.

Each failed check raises `ConfigError` with one message that names the bad value
and how to fix it; `skd_jax.main` prints it as ``error: ...`` and exits with
status 2, without a traceback.

Two entry points, both called by the driver before any JAX compilation:

* `validate_config(config, num_devices)`: the config alone (methods, K, beta,
  lambda, divergence, batch vs data-parallel size, checkpoint paths).
* `validate_models(config, student_cfg, teacher_cfg)`: once the model configs
  are known (vocabularies, prompt + new tokens vs cache / positions).

A setting whose type owns its checks is checked there, once: the sampling knobs
by `SamplerConfig.__post_init__`, the loss section by `step.loss_config` (the
divergence registry), the mix knobs by their `methods.Knob`; this module builds
those objects from the config and reports a failure under the config key.
"""
from __future__ import annotations

import os
from typing import Any

import jax

from skd_jax import sharding
from skd_jax.models.config import ModelConfig
from skd_jax.train import acceptance_control
from skd_jax.train import methods
from skd_jax.train import step as step_lib


class ConfigError(ValueError):
  """A bad experiment config; the message alone is shown to the user."""


def data_parallel_size(config: Any, num_devices: int) -> int:
  """Devices the batch is split over: data x fsdp of ``config.mesh``.

  Raises ConfigError for a mesh that does not fit the devices.
  """
  count = int(config.get("num_devices", 0) or 0) or num_devices
  if count > num_devices:
    raise ConfigError(f"num_devices={count} but only {num_devices} devices are visible.")
  try:
    sizes = sharding.resolve_mesh_shape(config.mesh, count)
  except ValueError as e:
    raise ConfigError(f"mesh={config.mesh!r}: {e}") from None
  return sizes["data"] * sizes["fsdp"]


def _check_unit_interval(name: str, value: float) -> None:
  if not 0.0 <= float(value) <= 1.0:
    raise ConfigError(f"{name}={value} must be in [0, 1].")


def _check_loss(section: Any) -> None:
  """The loss section as the driver reads it (divergence, its hyperparameters, keys)."""
  try:
    step_lib.loss_config(section)
  except (TypeError, ValueError) as e:  # Messages start with the key: "beta=1.5 ...".
    raise ConfigError(f"loss.{e}") from None


def _sampler_keys(source: int, prefix: str) -> dict[str, str]:
  """SamplerConfig field -> the config key it is read from (`methods.sampler_config`)."""
  keys = {"max_new_tokens": "task.max_new_tokens"}
  if source == methods.STUDENT:
    keys.update(student_temperature=f"sampler.{prefix}_temperature",
                top_p=f"sampler.{prefix}_top_p",
                sampling_top_k=f"sampler.{prefix}_sampling_top_k")
  else:
    keys.update(student_temperature="sampler.temperature",
                teacher_temperature="sampler.temperature")
  return keys


def _check_sampling(config: Any) -> None:
  """The method's SamplerConfigs, built as the driver builds them: the SKD / teacher
  one and, for a method that samples the student alone, its student one.

  The checks themselves are SamplerConfig's (`__post_init__`); their messages
  start with the field ("top_k=-1: ..."), reported here under the config key
  ("sampler.top_k=-1: ...", "sampler.imitkd_top_p=0.0 ...").
  """
  prefix = methods.METHODS[config.method].student_sampling
  sources = [methods.SKD] + ([methods.STUDENT] if prefix else [])
  for source in sources:
    try:
      methods.sampler_config(source, config.sampler, stop_ids=(),
                             max_new_tokens=int(config.task.max_new_tokens),
                             method=config.method)
    except ValueError as e:
      message = str(e)
      field = message.split("=", 1)[0]
      key = _sampler_keys(source, prefix).get(field, f"sampler.{field}")
      raise ConfigError(key + message[len(field):] if field.isidentifier()
                        else f"sampler: {message}") from None
  try:   # The acceptance-targeting K's settings (their messages name the keys).
    acceptance_control.from_config(config.sampler, 1 << 30, int(config.sampler.top_k))
  except ValueError as e:
    raise ConfigError(str(e)) from None


def validate_config(config: Any, num_devices: int) -> None:
  """Checks what the config alone decides. Raises ConfigError."""
  if config.method not in methods.METHODS:
    raise ConfigError(f"unknown method {config.method!r}; use one of "
                      f"{sorted(methods.METHODS)}.")
  _check_sampling(config)
  _check_loss(config.loss)
  for knob in methods.mix_knobs():  # Every method's, as the config holds them all.
    if knob.probability:
      _check_unit_interval(f"mix.{knob.name}", config.mix[knob.name])
  if float(config.loss.temperature) <= 0:
    raise ConfigError(f"loss.temperature={config.loss.temperature} must be > 0.")
  if int(config.batch_size) < 1:
    raise ConfigError(f"batch_size={config.batch_size} must be >= 1.")
  processes = jax.process_count()
  if processes > 1 and int(config.num_devices) not in (0, num_devices):
    raise ConfigError(f"num_devices={config.num_devices} in a {processes}-process run: the "
                      f"mesh must span every process's devices; use 0 (all {num_devices}).")
  if config.batch_size % processes:
    raise ConfigError(f"batch_size={config.batch_size} is not divisible by the {processes} "
                      f"processes (each loads batch_size / processes rows); use a multiple "
                      f"of {processes}.")
  dp = data_parallel_size(config, num_devices)
  if config.batch_size % dp:
    raise ConfigError(f"batch_size={config.batch_size} is not divisible by the data-parallel "
                      f"size {dp} (devices in the data x fsdp mesh axes); use a multiple of "
                      f"{dp}, or change --config.mesh / --config.num_devices.")
  micro = int(config.loss.num_microbatches)
  if micro < 1 or (config.batch_size // dp) % micro:
    raise ConfigError(f"loss.num_microbatches={micro} must divide the per-device batch "
                      f"{config.batch_size // dp}.")
  restore = config.checkpoint.get("restore_from", "")
  if restore and not os.path.exists(restore):
    raise ConfigError(f"checkpoint.restore_from={restore!r}: no such checkpoint directory.")
  for role in ("student", "teacher"):
    try:
      sharding.get_rules(config[role].rules)
    except ValueError as e:
      raise ConfigError(f"{role}.rules: {e}") from None
    path = config[role].path
    if not path:
      raise ConfigError(f"{role}.path is empty; give a local HF directory, a .gguf file, a "
                        "preset name or a hub id.")
    looks_local = path.startswith(("/", ".", "~")) or path.endswith(".gguf")
    if looks_local and not os.path.exists(os.path.expanduser(path)):
      raise ConfigError(f"{role}.path={path!r}: no such file or directory (a checkpoint "
                        "path must exist).")


def validate_models(config: Any, student_cfg: ModelConfig, teacher_cfg: ModelConfig,
                    tokenizer_vocab: int | None = None) -> None:
  """Checks that need the model configs. Raises ConfigError."""
  shared = int(config.sampler.get("shared_vocab_size", 0) or 0)
  if student_cfg.vocab_size != teacher_cfg.vocab_size and not shared:
    raise ConfigError(
        f"student/teacher vocabulary mismatch: student {student_cfg.vocab_size}, teacher "
        f"{teacher_cfg.vocab_size}. Distillation needs one tokenizer; if the larger "
        "vocabulary is only padding (Qwen2-7B vs 0.5B), set "
        f"--config.sampler.shared_vocab_size={min(student_cfg.vocab_size, teacher_cfg.vocab_size)}.")
  if shared > min(student_cfg.vocab_size, teacher_cfg.vocab_size):
    raise ConfigError(f"sampler.shared_vocab_size={shared} exceeds a model vocabulary "
                      f"({student_cfg.vocab_size}, {teacher_cfg.vocab_size}).")
  vocab = shared or min(student_cfg.vocab_size, teacher_cfg.vocab_size)
  if tokenizer_vocab is not None and tokenizer_vocab > max(student_cfg.vocab_size,
                                                          teacher_cfg.vocab_size):
    raise ConfigError(f"the tokenizer has {tokenizer_vocab} tokens but the models only "
                      f"{vocab}; use the models' own tokenizer.")
  prompt, new = int(config.task.max_prompt_tokens), int(config.task.max_new_tokens)
  need = prompt + new + int(config.sampler.gamma)
  cache = int(config.sampler.get("cache_length", 0) or 0)
  if cache and need > cache:
    raise ConfigError(f"task.max_prompt_tokens {prompt} + task.max_new_tokens {new} + gamma "
                      f"needs {need} cache slots but sampler.cache_length={cache}; shorten "
                      "the prompt or max_new_tokens, or raise cache_length.")
  for role, cfg in (("student", student_cfg), ("teacher", teacher_cfg)):
    if need > cfg.max_position_embeddings:
      raise ConfigError(f"task.max_prompt_tokens {prompt} + task.max_new_tokens {new} + gamma "
                        f"needs {need} positions but the {role} ({cfg.name}) supports "
                        f"{cfg.max_position_embeddings}; shorten the prompt or max_new_tokens.")
