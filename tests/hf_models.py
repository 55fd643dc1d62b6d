"""Tiny random transformers models (PyTorch, float32) of every family, for parity tests."""
import os

import numpy as np
import torch
import transformers

from skd_jax.models import config as mconfig

FAMILIES = ("gemma", "gemma2", "gemma3", "qwen2")


def save_tiny_hf_model(family: str, directory: str, seed: int = 0, **overrides):
  """Saves a random tiny HF model of `family` to `directory`; returns (torch model, config).

  Norm weights and biases are randomised too (HF initialises them to constants),
  and the init scale is large enough that logits span several nats.
  """
  cfg = mconfig.get_config(f"tiny-{family}", **overrides)
  hf = mconfig.to_hf_config(cfg)
  hf.pop("architectures")
  hf["initializer_range"] = 0.1
  hf_cfg = transformers.AutoConfig.for_model(**hf)
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(hf_cfg).float().eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name or "bias" in name:
        p.normal_(0.0, 0.3)
        if "norm" in name and not cfg.is_gemma:   # Qwen2 scales by w, Gemma by (1 + w)
          p.add_(1.0)
  os.makedirs(directory, exist_ok=True)
  model.save_pretrained(directory)
  return model, cfg


def torch_logits(model, tokens: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
  with torch.no_grad():
    kw = {} if attention_mask is None else {"attention_mask": torch.tensor(attention_mask)}
    return model(torch.tensor(np.asarray(tokens)), **kw).logits.float().numpy()
