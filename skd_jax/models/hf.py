"""Hugging Face checkpoints: import (safetensors directories, `.gguf` files) and export.

One name table (`_layer_names`) maps our parameter names to transformers' tensor
names; one transform per kind of tensor (transpose + reshape) maps the layouts.
Import streams: each of our parameters is assembled from its HF tensors (one layer
at a time for stacked weights), converted, placed on its target sharding, and only
then is the next one read, so host memory never holds a second full copy.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterator

import jax
import ml_dtypes
import numpy as np

from skd_jax.models import config as mconfig
from skd_jax.models import gguf
from skd_jax.models import transformer
from skd_jax.models.model import Model


class CheckpointError(ValueError):
  """A checkpoint that cannot be loaded; the message names the file and the problem."""


# Per-layer tensor names: our name -> (HF name, transform kind).
def _layer_names(cfg: mconfig.ModelConfig) -> dict[str, tuple[str, str]]:
  names = {
      "attn_norm": ("input_layernorm.weight", "copy"),
      "q": ("self_attn.q_proj.weight", "in_heads"),
      "k": ("self_attn.k_proj.weight", "in_heads"),
      "v": ("self_attn.v_proj.weight", "in_heads"),
      "o": ("self_attn.o_proj.weight", "out_heads"),
      "gate": ("mlp.gate_proj.weight", "transpose"),
      "up": ("mlp.up_proj.weight", "transpose"),
      "down": ("mlp.down_proj.weight", "transpose"),
  }
  if cfg.has_post_norms:  # Gemma 2/3: post_attention_layernorm normalises the attention output
    names.update({
        "attn_post_norm": ("post_attention_layernorm.weight", "copy"),
        "mlp_norm": ("pre_feedforward_layernorm.weight", "copy"),
        "mlp_post_norm": ("post_feedforward_layernorm.weight", "copy"),
    })
  else:   # Gemma 1 / Qwen2: post_attention_layernorm is the pre-MLP norm
    names["mlp_norm"] = ("post_attention_layernorm.weight", "copy")
  if cfg.qkv_bias:
    names.update({"q_bias": ("self_attn.q_proj.bias", "bias_heads"),
                  "k_bias": ("self_attn.k_proj.bias", "bias_heads"),
                  "v_bias": ("self_attn.v_proj.bias", "bias_heads")})
  if cfg.has_qk_norm:
    names.update({"q_norm": ("self_attn.q_norm.weight", "copy"),
                  "k_norm": ("self_attn.k_norm.weight", "copy")})
  return names


_TOP_NAMES = {"embed": ("model.embed_tokens.weight", "copy"),
              "final_norm": ("model.norm.weight", "copy"),
              "lm_head": ("lm_head.weight", "transpose")}


def _to_ours(kind: str, hf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """An HF tensor in our layout; `shape` is our (per-layer) shape."""
  if kind in ("copy", "bias_heads"):
    return hf.reshape(shape)
  if kind in ("transpose", "in_heads"):   # torch Linear [out, in] -> [in, out...]
    return hf.T.reshape(shape)
  if kind == "out_heads":                 # [D, H*Dh] -> [H, Dh, D]
    return hf.T.reshape(shape)
  raise ValueError(kind)


def _to_hf(kind: str, ours: np.ndarray) -> np.ndarray:
  if kind == "copy":
    return ours
  if kind == "bias_heads":
    return ours.reshape(-1)
  if kind == "in_heads":
    return ours.reshape(ours.shape[0], -1).T
  if kind == "out_heads":
    return ours.reshape(-1, ours.shape[-1]).T
  if kind == "transpose":
    return ours.T
  raise ValueError(kind)


def _hf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The HF tensor shape that maps to our per-layer `shape`."""
  return _to_hf(kind, np.empty(shape, np.int8)).shape


# ----------------------------------------------------------------------------
# Tensor sources
# ----------------------------------------------------------------------------
class _SafetensorsSource:
  """Lazily reads tensors by name from one or many `.safetensors` files."""

  def __init__(self, directory: str):
    from safetensors import safe_open
    self._safe_open = safe_open
    index_path = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index_path):
      with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
      files = sorted(set(weight_map.values()))
    else:
      files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
      if not files:
        raise CheckpointError(f"{directory}: no *.safetensors files (found: {sorted(os.listdir(directory))}). "
                              "Save the model with `save_pretrained(..., safe_serialization=True)`.")
      weight_map = None
    self._handles = {}
    self._where = {}
    for name in files:
      path = os.path.join(directory, name)
      if not os.path.exists(path):
        raise CheckpointError(f"{path}: listed in model.safetensors.index.json but missing.")
      try:
        handle = safe_open(path, framework="numpy")
        keys = list(handle.keys())
      except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}). "
                              "The file may be truncated or corrupt; download it again.") from None
      self._handles[path] = handle
      self._check_size(path, handle)
      for key in keys:
        self._where[key] = path
    if weight_map is not None:
      missing = [k for k in weight_map if k not in self._where]
      if missing:
        raise CheckpointError(f"{directory}: tensors {missing[:3]} listed in the index are in no shard.")

  @staticmethod
  def _check_size(path: str, handle) -> None:
    """Catches truncation that the header alone does not reveal."""
    with open(path, "rb") as f:
      header_len = int.from_bytes(f.read(8), "little")
      header = json.loads(f.read(header_len))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    size = os.path.getsize(path)
    if size < 8 + header_len + end:
      raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, its header needs "
                            f"{8 + header_len + end}). Download or save it again.")

  def names(self) -> set[str]:
    return set(self._where)

  def get(self, name: str) -> np.ndarray:
    path = self._where[name]
    try:
      return self._handles[path].get_tensor(name)
    except Exception as e:
      raise CheckpointError(f"{path}: cannot read tensor {name!r} ({e}).") from None

  def origin(self, name: str) -> str:
    return self._where.get(name, "<checkpoint>")


class _DictSource:
  """Tensors already in memory (GGUF, dequantised by transformers); consumed on read."""

  def __init__(self, tensors: dict[str, Any], origin: str):
    self._tensors = tensors
    self._origin = origin

  def names(self) -> set[str]:
    return set(self._tensors)

  def get(self, name: str) -> np.ndarray:
    t = self._tensors.pop(name)   # drop our reference as soon as it is converted
    return t.float().numpy() if hasattr(t, "numpy") else np.asarray(t)

  def origin(self, name: str) -> str:
    return self._origin


# ----------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------
def _read_hf_config(path: str) -> dict[str, Any]:
  cfg_path = os.path.join(path, "config.json")
  if not os.path.exists(cfg_path):
    raise CheckpointError(f"{path}: no config.json. Point at a directory saved with "
                          "transformers' `save_pretrained`, or at a `.gguf` file.")
  try:
    with open(cfg_path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{cfg_path}: not valid JSON ({e}).") from None


def _quiet_tokenizer(path: str):
  """The checkpoint's tokenizer, or None where it has none that transformers reads."""
  try:
    return load_tokenizer(path)
  except Exception:  # pylint: disable=broad-except  # Weights without a tokenizer are fine.
    return None


def _gguf_source(path: str) -> tuple[dict[str, Any], Any]:
  """(HF config dict, tensor source) of a `.gguf`: its cached HF conversion (made on first use).

  See models/gguf.py: dequantising takes minutes, reading the cached float32
  copy seconds; with the cache off (or unwritable) the tensors come from memory.
  """
  converted = gguf.cached_checkpoint(path)
  if converted is None:
    try:
      hf_dict, tensors = gguf.read(path)
    except (ImportError, ValueError) as e:
      raise CheckpointError(str(e)) from None
    tokenizer = _quiet_tokenizer(path)
    converted = gguf.write_checkpoint(path, hf_dict, tensors, tokenizer)
    if converted is None:
      return gguf.with_turn_end(hf_dict, tokenizer), _DictSource(tensors, path)
    del tensors
  return _read_hf_config(converted), _SafetensorsSource(converted)


def _with_dir_stop_ids(path: str, hf_cfg: dict[str, Any]) -> dict[str, Any]:
  """`hf_cfg` whose eos_token_id also holds generation_config.json's ids, else the chat end-of-turn.

  Instruction-tuned checkpoints list `<end_of_turn>` / `<|im_end|>` in
  generation_config.json rather than config.json (the models' EOS ids are
  `sample`'s default stop ids). Without one, a tokenizer with a chat template is
  loaded to find its end-of-turn token.
  """
  eos = hf_cfg.get("eos_token_id")
  ids = list(eos) if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos])
  gen = _read_json_or_empty(os.path.join(path, "generation_config.json")).get("eos_token_id")
  gen = [i for i in (gen if isinstance(gen, list) else [gen]) if i is not None]
  hf_cfg = {**hf_cfg, "eos_token_id": ids + [i for i in gen if i not in ids]}
  if gen:
    return hf_cfg
  has_template = os.path.exists(os.path.join(path, "chat_template.jinja")) or (
      "chat_template" in _read_json_or_empty(os.path.join(path, "tokenizer_config.json")))
  return gguf.with_turn_end(hf_cfg, _quiet_tokenizer(path)) if has_template else hf_cfg


def _read_json_or_empty(path: str) -> dict[str, Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return {}


def _iter_params(cfg: mconfig.ModelConfig, source) -> Iterator[tuple[tuple[str, ...], Callable[[], np.ndarray]]]:
  """(our param path, loader) pairs; each loader returns our array in param dtype."""
  specs = transformer.param_specs(cfg)
  np_dtype = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16,
              "float16": np.float16}[cfg.param_dtype]
  available = source.names()

  def fetch(hf_name: str, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    if hf_name not in available:
      raise CheckpointError(f"{source.origin(hf_name)}: missing tensor {hf_name!r} "
                            f"needed by a {cfg.family} model.")
    hf = source.get(hf_name)
    want = _hf_shape(kind, shape)
    if tuple(hf.shape) != want:
      raise CheckpointError(f"{source.origin(hf_name)}: tensor {hf_name!r} has shape {tuple(hf.shape)}, "
                            f"but config.json implies {want}. The weights do not match the config.")
    return _to_ours(kind, hf, shape).astype(np_dtype)

  for name, spec in specs.items():
    if name == "layers":
      continue
    hf_name, kind = _TOP_NAMES[name]
    yield (name,), lambda hf_name=hf_name, kind=kind, spec=spec: fetch(hf_name, kind, spec.shape)

  for name, (hf_suffix, kind) in _layer_names(cfg).items():
    spec = specs["layers"][name]

    def load_stacked(hf_suffix=hf_suffix, kind=kind, spec=spec):
      out = np.empty(spec.shape, np_dtype)
      for i in range(cfg.num_layers):
        out[i] = fetch(f"model.layers.{i}.{hf_suffix}", kind, spec.shape[1:])
      return out

    yield ("layers", name), load_stacked


def _sharding_for(shardings, path: tuple[str, ...]):
  if shardings is None or isinstance(shardings, jax.sharding.Sharding):
    return shardings
  node = shardings
  for key in path:
    node = node[key]
  return node


def load_model(path: str, dtype: str = "float32", *, param_dtype: str | None = None,
               shardings=None, progress: bool = False) -> Model:
  """Loads a transformers checkpoint into a `Model`.

  Args:
    path: a local HF directory (config.json + one or many safetensors shards) or a
      `.gguf` file (dequantised to float32 by transformers' GGUF reader, needs
      torch; converted once per machine and cached, see models/gguf.py). The
      model's eos_ids also hold generation_config.json's and the chat template's
      end-of-turn id, so `sample`'s default stop ids end a chat reply.
    dtype: compute dtype of the returned model ("float32" or "bfloat16").
    param_dtype: storage dtype of the parameters (default: `dtype`).
    shardings: None (default device), one `jax.sharding.Sharding` for every
      parameter, or a pytree of shardings with the params' structure. Each tensor
      is placed on its sharding as soon as it is read.
    progress: show a tqdm bar over tensors.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise CheckpointError(f"{path}: no such file or directory. Give a local HF directory or a "
                          "`.gguf` file (download hub checkpoints first, e.g. with "
                          "`hf download <repo> --local-dir <dir>`).")
  if os.path.isfile(path):
    if not path.endswith(".gguf"):
      raise CheckpointError(f"{path}: a file that is not `.gguf`; pass the checkpoint's directory instead.")
    hf_cfg, source = _gguf_source(path)
  else:
    hf_cfg = _read_hf_config(path)
    try:
      mconfig.from_hf_config(hf_cfg)
    except (ValueError, KeyError, NotImplementedError) as e:
      raise CheckpointError(f"{os.path.join(path, 'config.json')}: {e}") from None
    source = _SafetensorsSource(path)
    hf_cfg = _with_dir_stop_ids(path, hf_cfg)
  cfg = mconfig.from_hf_config(hf_cfg, dtype=dtype, param_dtype=param_dtype)

  items = list(_iter_params(cfg, source))
  if progress:
    from tqdm.auto import tqdm
    items = tqdm(items, desc=f"loading {os.path.basename(path)}", unit="param")
  params: dict[str, Any] = {"layers": {}}
  for param_path, load in items:
    array = jax.device_put(load(), _sharding_for(shardings, param_path))
    node = params
    for key in param_path[:-1]:
      node = node[key]
    node[param_path[-1]] = array
  return Model(config=cfg, params=params)


tokenizer_cache_dir = gguf.tokenizer_cache_dir


def load_tokenizer(path: str):
  """The checkpoint's tokenizer (`transformers.AutoTokenizer`), with its chat template.

  `path`: an HF directory or a `.gguf` file. A GGUF's tokenizer is converted once
  and cached (models/gguf.py; `$SKD_TOKENIZER_CACHE`, default
  ~/.cache/skd_jax/tokenizers); a Gemma GGUF without a chat template gets Gemma 3's.
  `skd_jax.text` turns strings into prompts through it and completions back.
  """
  import transformers
  path = os.fspath(path)
  if os.path.isfile(path) and path.endswith(".gguf"):
    return gguf.tokenizer(path)
  if not os.path.exists(path):
    raise CheckpointError(f"{path}: no such file or directory (give the checkpoint's directory "
                          "or its `.gguf` file).")
  return transformers.AutoTokenizer.from_pretrained(path)


# ----------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------
def export_hf(model: Model, out_dir: str, *, tokenizer=None, dtype: str | None = None) -> str:
  """Writes `model` as a transformers checkpoint (config.json + model.safetensors).

  `AutoModelForCausalLM.from_pretrained(out_dir)` then gives the same logits.
  dtype: storage dtype of the exported weights (default: the params' dtype).
  """
  from safetensors.numpy import save_file
  import transformers
  cfg = model.config
  os.makedirs(out_dir, exist_ok=True)
  np_dtype = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}[
      dtype or cfg.param_dtype]
  tensors = {}
  for name, (hf_name, kind) in _TOP_NAMES.items():
    if name in model.params:
      tensors[hf_name] = _to_hf(kind, np.asarray(model.params[name])).astype(np_dtype)
  for name, (suffix, kind) in _layer_names(cfg).items():
    stacked = np.asarray(model.params["layers"][name])
    for i in range(cfg.num_layers):
      tensors[f"model.layers.{i}.{suffix}"] = np.ascontiguousarray(_to_hf(kind, stacked[i]).astype(np_dtype))
  tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
  save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
  hf_cfg = mconfig.to_hf_config(cfg)
  hf_cfg["dtype"] = dtype or cfg.param_dtype
  hf_cfg["transformers_version"] = transformers.__version__
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(hf_cfg, f, indent=2)
  if tokenizer is not None:
    tokenizer.save_pretrained(out_dir)
  return out_dir
