"""What a run loads before anything compiles: paths, the tokenizer, model configs, weights.

    path = resolve_path(spec.path, "teacher")      # local, else a hub snapshot (online only)
    tokenizer = load_tokenizer(config)
    cfg, path = model_config_of(config.student, tokenizer, "student")
    model = load_weights(config.student, cfg, path, "student")

A model spec (`config.student` / `config.teacher`) names a preset (random
init, shaped by `overrides`, vocabulary and special ids from the tokenizer), a
local HF directory, a `.gguf` file or a hub id. Whether the hub may be
contacted is `skd_jax.hub.offline()`; the padding id is
`data.templates.pad_id`. Every failure is a ConfigError naming the key to fix.
"""
from __future__ import annotations

import json
import os
from typing import Any

from skd_jax import hub
from skd_jax.data import templates
from skd_jax.models import config as model_config
from skd_jax.models import hf
from skd_jax.models.model import Model, pruned_config
from skd_jax.train.validate import ConfigError

# What a hub snapshot downloads: configs, weights, tokenizer files and templates.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]


def resolve_path(path: str, role: str) -> str:
  """A local path for `path`: itself if it exists, else a hub snapshot.

  Hub ids are downloaded with `huggingface_hub.snapshot_download` only when
  online; offline (`hub.offline()`) or when the download fails, a ConfigError
  says how to point `--config.<role>.path` at a local copy.
  """
  expanded = os.path.expanduser(path)
  if os.path.exists(expanded):
    return expanded
  how = (f"download it elsewhere with `hf download {path} --local-dir DIR` and "
         f"pass --config.{role}.path=DIR")
  if hub.offline():
    raise ConfigError(f"{role}.path={path!r} is neither a local path nor a preset, and the hub "
                      f"is offline (HF_HUB_OFFLINE=1); {how}.")
  try:
    import huggingface_hub  # pylint: disable=g-import-not-at-top
    return huggingface_hub.snapshot_download(path, allow_patterns=_HUB_PATTERNS)
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


def special_ids(tokenizer) -> dict[str, Any]:
  """bos_id, eos_ids (EOS and the completion end id) and pad_id of a tokenizer."""
  eos = {tokenizer.eos_token_id, templates.completion_end_id(tokenizer)} - {None}
  return dict(bos_id=tokenizer.bos_token_id, eos_ids=tuple(sorted(int(i) for i in eos)),
              pad_id=templates.pad_id(tokenizer))


def preset_config(spec, tokenizer) -> model_config.ModelConfig:
  """A preset's ModelConfig with the spec's overrides; vocab/specials from the tokenizer."""
  overrides = dict(spec.overrides.to_dict()) if spec.overrides else {}
  overrides.setdefault("vocab_size", len(tokenizer))
  for key, value in special_ids(tokenizer).items():
    overrides.setdefault(key, value)
  overrides.setdefault("dtype", spec.dtype)
  overrides.setdefault("param_dtype", spec.param_dtype or spec.dtype)
  return model_config.get_config(spec.path, **overrides)


def kept_layers(spec) -> tuple[int, ...]:
  """`spec.keep_layers` as a tuple of ints (empty: every layer)."""
  return tuple(int(i) for i in (spec.get("keep_layers") or ()))


def model_config_of(spec, tokenizer, role: str) -> tuple[model_config.ModelConfig | None, str]:
  """(ModelConfig if knowable without loading weights, resolved path or preset).

  The config is None for a `.gguf` file (known once loaded).
  """
  if spec.path in model_config.PRESETS:
    return preset_config(spec, tokenizer), spec.path
  path = resolve_path(spec.path, role)
  config_json = os.path.join(path, "config.json")
  if not (os.path.isdir(path) and os.path.exists(config_json)):
    return None, path
  with open(config_json, encoding="utf-8") as f:
    try:
      cfg = model_config.from_hf_config(json.load(f), dtype=spec.dtype,
                                        param_dtype=spec.param_dtype or None)
    except (ValueError, KeyError, NotImplementedError) as e:
      raise ConfigError(f"{role}.path={path!r}: unsupported config.json ({e}).") from None
  if kept_layers(spec):
    try:
      cfg = pruned_config(cfg, kept_layers(spec))
    except ValueError as e:
      raise ConfigError(f"{role}.{e}") from None
  return cfg, path


def _pruned(model: Model, spec, role: str) -> Model:
  """`model` with only `spec.keep_layers` (all when empty)."""
  keep = kept_layers(spec)
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
