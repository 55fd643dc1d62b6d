"""GGUF files: dequantised once into a cached HF directory, and their tokenizers.

transformers' GGUF reader dequantises every tensor on each load (over a minute
for Gemma 3 270M on 2 cores) and rebuilds the tokenizer from the GGUF vocabulary
(~25 s for 262K entries). Both are converted once per machine and cached:

* checkpoints: `$SKD_CHECKPOINT_CACHE` (default `~/.cache/skd_jax/checkpoints`),
  one HF directory per GGUF file (config.json, generation_config.json with the
  stop ids, float32 model.safetensors — the dequantised values exactly — and
  the tokenizer), loaded like any checkpoint
  directory afterwards. `SKD_CHECKPOINT_CACHE=off` disables it.
* tokenizers: `$SKD_TOKENIZER_CACHE` (default `~/.cache/skd_jax/tokenizers`).

A cache entry is keyed by the file's name, size and modification time (and
`_FORMAT` for the checkpoint layout), so a changed file is converted again.
Clearing a cache is deleting its directory (`rm -rf ~/.cache/skd_jax`).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np

from skd_jax.data import templates
from skd_jax.models import config as mconfig

_FORMAT = "v1"   # Bump when the cached layout changes: old entries are then ignored.
_OFF = ("off", "0", "none", "false")


def _key(path: str) -> str:
  stat = os.stat(path)
  return f"{os.path.basename(path)}-{stat.st_size}-{int(stat.st_mtime)}"


def checkpoint_cache_dir() -> str | None:
  """Root of the converted-checkpoint cache; None when `SKD_CHECKPOINT_CACHE=off`."""
  value = os.environ.get("SKD_CHECKPOINT_CACHE")
  if value is not None and value.strip().lower() in _OFF:
    return None
  return value or os.path.join(os.path.expanduser("~"), ".cache", "skd_jax", "checkpoints")


def tokenizer_cache_dir() -> str:
  return os.environ.get("SKD_TOKENIZER_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache", "skd_jax", "tokenizers"))


def cached_checkpoint(path: str) -> str | None:
  """The converted HF directory of GGUF `path` if the cache holds it, else None."""
  root = checkpoint_cache_dir()
  if root is None:
    return None
  entry = os.path.join(root, f"{_key(path)}-{_FORMAT}")
  done = all(os.path.exists(os.path.join(entry, f)) for f in ("config.json", "model.safetensors"))
  return entry if done else None


def read(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """(HF config dict, {HF tensor name: float32 torch tensor}) of a `.gguf` file.

  Dequantised by transformers' GGUF reader; raises ValueError (CheckpointError's
  base) naming the file when it cannot be read.
  """
  try:
    import torch
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
  except ImportError as e:
    raise ImportError(f"{path}: reading GGUF needs torch and gguf ({e}); "
                      "`pip install torch==2.13.0 gguf`.") from None
  directory, filename = os.path.split(os.path.abspath(path))
  try:
    hf_cfg = transformers.AutoConfig.from_pretrained(directory, gguf_file=filename)
  except Exception as e:  # transformers raises many types for a bad file
    raise ValueError(f"{path}: transformers cannot read this GGUF file ({e}).") from None
  hf_dict = hf_cfg.to_dict()
  mconfig.from_hf_config(hf_dict)   # fail on unsupported architectures before dequantising
  with torch.device("meta"):
    skeleton = transformers.AutoModelForCausalLM.from_config(hf_cfg)
  loaded = load_gguf_checkpoint(path, return_tensors=True, model_to_load=skeleton)
  return hf_dict, loaded["tensors"]


def with_turn_end(hf_dict: dict[str, Any], tokenizer) -> dict[str, Any]:
  """`hf_dict` whose eos_token_id also holds the chat template's end-of-turn id.

  An instruction-tuned model ends a reply with it (Gemma `<end_of_turn>`, ChatML
  `<|im_end|>`), so default stop ids (`SamplerConfig.stop_ids=None`) stop there.
  """
  end = templates.completion_end_id(tokenizer) if tokenizer is not None else None
  eos = hf_dict.get("eos_token_id")
  ids = list(eos) if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos])
  if end is not None and int(end) not in ids:
    ids.append(int(end))
  return {**hf_dict, "eos_token_id": ids[0] if len(ids) == 1 else ids}


def write_checkpoint(path: str, hf_dict: dict[str, Any], tensors: dict[str, Any], tokenizer) -> str | None:
  """Saves a GGUF's dequantised tensors as a cached HF directory; returns it (None if no cache).

  Written to a temporary directory and renamed, so a crash or a concurrent
  writer never leaves a half entry; an unwritable cache only costs later loads
  the conversion.
  """
  from safetensors.numpy import save_file
  root = checkpoint_cache_dir()
  if root is None:
    return None
  entry = os.path.join(root, f"{_key(path)}-{_FORMAT}")
  tmp = f"{entry}.tmp-{os.getpid()}"
  try:
    os.makedirs(tmp, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v.float().numpy() if hasattr(v, "numpy") else np.asarray(v),
                                      dtype=np.float32) for k, v in tensors.items()}
    save_file(arrays, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    del arrays
    hf_dict = with_turn_end(hf_dict, tokenizer)
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(hf_dict, f, indent=2, default=str)
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:  # stop ids, no tokenizer load
      json.dump({"eos_token_id": hf_dict["eos_token_id"]}, f)
    if tokenizer is not None:
      tokenizer.save_pretrained(tmp)
    os.replace(tmp, entry)
    return entry
  except OSError:
    shutil.rmtree(tmp, ignore_errors=True)
    return cached_checkpoint(path)   # another process may have written it meanwhile


def tokenizer(path: str):
  """A GGUF file's tokenizer, converted once and cached as a tokenizer directory.

  A Gemma GGUF without a chat template gets Gemma 3's
  (templates.GEMMA3_CHAT_TEMPLATE), so prompts are rendered as the model was
  instruction-tuned; `<start_of_turn>` / `<end_of_turn>` are made special tokens
  (the end of turn stops sampling, `skip_special_tokens` drops them).
  """
  import transformers
  cached = os.path.join(tokenizer_cache_dir(), _key(path))
  if os.path.exists(os.path.join(cached, "tokenizer_config.json")):
    return transformers.AutoTokenizer.from_pretrained(cached)
  directory, filename = os.path.split(os.path.abspath(path))
  tok = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=filename)
  vocab = tok.get_vocab()
  if not getattr(tok, "chat_template", None) and "<start_of_turn>" in vocab:
    tok.chat_template = templates.GEMMA3_CHAT_TEMPLATE
  turn_tokens = [t for t in ("<start_of_turn>", "<end_of_turn>") if t in vocab]
  if turn_tokens:  # Control tokens in the GGUF; special here (end-of-turn stops sampling).
    tok.add_special_tokens({"additional_special_tokens": turn_tokens},
                           replace_extra_special_tokens=False)
  tmp = f"{cached}.tmp-{os.getpid()}"
  try:
    tok.save_pretrained(tmp)
    os.replace(tmp, cached)
  except OSError:  # A read-only cache only costs the next load its 25 s.
    shutil.rmtree(tmp, ignore_errors=True)
  return tok
