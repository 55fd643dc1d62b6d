"""Text in, text out (issue 14): tokenizers with chat templates, strings through `sample`,
stop ids with the end-of-turn token, the GGUF conversion cache, shrinking a config."""
import dataclasses
import json
import os

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

import skd_jax
from skd_jax.data import templates, testing
from skd_jax.models import config as mconfig
from skd_jax.models import gguf, hf
from skd_jax.sampling import api


@pytest.fixture(scope="module")
def tokenizer():
  return testing.make_chat_tokenizer("gemma")


def tiny_model(tokenizer, num_layers=4, eos_ids=(1,)):
  cfg = skd_jax.get_config("tiny-gemma3", vocab_size=len(tokenizer), num_layers=num_layers,
                           eos_ids=eos_ids)
  return skd_jax.Model.random(cfg, seed=0)


@pytest.fixture(scope="module")
def checkpoint(tokenizer, tmp_path_factory):
  """A tiny Gemma 3 directory whose config.json lists only <eos>, with a chat tokenizer."""
  out = str(tmp_path_factory.mktemp("ckpt"))
  skd_jax.export_hf(tiny_model(tokenizer), out, tokenizer=tokenizer)
  return out


def test_load_tokenizer_is_public_and_keeps_the_chat_template(checkpoint, tokenizer):
  loaded = skd_jax.load_tokenizer(checkpoint)
  assert templates.has_chat_template(loaded)
  assert loaded.encode("three hundred") == tokenizer.encode("three hundred")
  with pytest.raises(skd_jax.CheckpointError, match="no such file"):
    skd_jax.load_tokenizer(checkpoint + "-missing")


def test_loaded_model_stops_at_end_of_turn_by_default(checkpoint, tokenizer):
  end = templates.completion_end_id(tokenizer)
  assert end is not None and end != tokenizer.eos_token_id
  with open(os.path.join(checkpoint, "config.json")) as f:
    assert json.load(f)["eos_token_id"] == 1          # config.json alone lacks <end_of_turn>
  model = skd_jax.load_model(checkpoint)
  assert set(model.config.eos_ids) == {1, end}
  assert set(api.stop_ids_of(model, model, skd_jax.SamplerConfig())) == {1, end}
  assert skd_jax.text.stop_ids(tokenizer) == tuple(sorted({tokenizer.eos_token_id, end}))


def test_generation_config_eos_ids_are_stop_ids(tokenizer, tmp_path):
  skd_jax.export_hf(tiny_model(tokenizer), str(tmp_path))     # no tokenizer, no template
  with open(tmp_path / "generation_config.json", "w") as f:
    json.dump({"eos_token_id": [1, 7]}, f)
  assert skd_jax.load_model(str(tmp_path)).config.eos_ids == (1, 7)


def test_encode_and_decode(tokenizer):
  prompts = skd_jax.text.encode_prompts(tokenizer, ["forty-five", "seven"])
  assert prompts[0] == templates.encode_prompt(tokenizer, "forty-five")[1]
  assert tokenizer.decode(prompts[1]).endswith("<start_of_turn>model\n")
  raw = skd_jax.text.encode_prompts(tokenizer, ["seven"], chat=False)[0]
  assert raw != prompts[1] and "<start_of_turn>" not in tokenizer.decode(raw)
  with pytest.raises(TypeError, match="list of strings"):
    skd_jax.text.encode_prompts(tokenizer, "seven")
  end = templates.completion_end_id(tokenizer)
  words = tokenizer.encode("quarante", add_special_tokens=False)
  texts = skd_jax.text.decode_completions(tokenizer, [words + [end] + words, words])
  assert texts == ["quarante", "quarante"]
  assert skd_jax.text.cut_at_stop([4, 5, 6], stop=[6, 5]) == [4]


def test_sample_takes_strings_with_a_tokenizer(tokenizer):
  model = tiny_model(tokenizer)
  config = skd_jax.SamplerConfig(method="skd", top_k=3, max_new_tokens=6,
                                 student_temperature=1.0, teacher_temperature=1.0)
  questions = ["forty-five", "three hundred and twelve"]
  out = skd_jax.sample(model, model, questions, config=config, rng=jax.random.PRNGKey(0),
                       tokenizer=tokenizer)
  ids = skd_jax.sample(model, model, skd_jax.text.encode_prompts(tokenizer, questions),
                       config=config, rng=jax.random.PRNGKey(0))
  assert out.completions == ids.completions and ids.texts is None
  stops = api.stop_ids_of(model, model, config)
  assert out.texts == skd_jax.text.decode_completions(tokenizer, ids.completions, stop=stops)
  with pytest.raises(TypeError, match="pass tokenizer="):
    skd_jax.sample(model, model, questions, config=config, rng=jax.random.PRNGKey(0))


def test_shrinking_a_config_keeps_layer_types():
  cfg = skd_jax.get_config("tiny-gemma3", num_layers=6)
  assert cfg.layer_types[5] == mconfig.FULL and cfg.layer_types[0] == mconfig.SLIDING
  two = cfg.keep_layers([0, 5])
  assert two.num_layers == 2 and two.layer_types == (mconfig.SLIDING, mconfig.FULL)
  assert cfg.keep_layers(range(2)).layer_types == cfg.layer_types[:2]
  with pytest.raises(ValueError, match=r"cfg.keep_layers\(range\(2\)\)"):
    dataclasses.replace(cfg, num_layers=2)
  with pytest.raises(ValueError, match=r"keep_layers=\[6\]"):
    cfg.keep_layers([6])
  model = skd_jax.Model.random(cfg)
  assert model.keep_layers([0, 5]).config == two


def _fake_gguf(tokenizer, tmp_path, monkeypatch):
  """A `.gguf` path whose 'dequantisation' (gguf.read) returns a tiny model's HF tensors."""
  model = tiny_model(tokenizer, num_layers=2)
  export = str(tmp_path / "export")
  skd_jax.export_hf(model, export)
  tensors = load_file(os.path.join(export, "model.safetensors"))
  path = tmp_path / "tiny.gguf"
  path.write_bytes(b"GGUF not really")
  reads = []

  def read(p):
    reads.append(p)
    return mconfig.to_hf_config(model.config), dict(tensors)

  monkeypatch.setattr(gguf, "read", read)
  monkeypatch.setattr(gguf, "tokenizer", lambda p: tokenizer)
  return str(path), model, reads


def test_gguf_is_converted_once_and_cached(tokenizer, tmp_path, monkeypatch):
  monkeypatch.setenv("SKD_CHECKPOINT_CACHE", str(tmp_path / "cache"))
  path, model, reads = _fake_gguf(tokenizer, tmp_path, monkeypatch)
  first = skd_jax.load_model(path)
  second = skd_jax.load_model(path, dtype="bfloat16")
  assert len(reads) == 1, "the second load dequantised the GGUF again"
  entries = os.listdir(tmp_path / "cache")
  assert len(entries) == 1 and entries[0].startswith("tiny.gguf-")
  with open(tmp_path / "cache" / entries[0] / "generation_config.json") as f:
    assert templates.completion_end_id(tokenizer) in json.load(f)["eos_token_id"]
  for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(second.params)):
    np.testing.assert_allclose(np.asarray(b, np.float32), np.asarray(a), rtol=1e-2, atol=1e-2)
  for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(first.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert second.config.param_dtype == "bfloat16"
  assert templates.completion_end_id(tokenizer) in first.config.eos_ids
  assert not [e for e in os.listdir(tmp_path / "cache") if ".tmp-" in e]


def test_gguf_cache_can_be_turned_off(tokenizer, tmp_path, monkeypatch):
  monkeypatch.setenv("SKD_CHECKPOINT_CACHE", "off")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  path, model, reads = _fake_gguf(tokenizer, tmp_path, monkeypatch)
  for _ in range(2):
    loaded = skd_jax.load_model(path)
  assert len(reads) == 2 and not (tmp_path / "home").exists()
  assert templates.completion_end_id(tokenizer) in loaded.config.eos_ids
  np.testing.assert_array_equal(np.asarray(loaded.params["embed"]), np.asarray(model.params["embed"]))
  assert gguf.checkpoint_cache_dir() is None and hf.tokenizer_cache_dir()
