"""Invariant 2: our logits equal transformers' PyTorch logits; export round-trips."""
import numpy as np
import pytest
import transformers

import skd_jax
from skd_jax.models import transformer
from hf_models import FAMILIES, save_tiny_hf_model, torch_logits


@pytest.fixture(scope="module", params=FAMILIES)
def hf_pair(request, tmp_path_factory):
  directory = str(tmp_path_factory.mktemp(request.param))
  torch_model, cfg = save_tiny_hf_model(request.param, directory)
  return request.param, directory, torch_model, cfg


def _ragged_batch(vocab, lengths, seed=0):
  """Right-padded tokens [B, max(lengths)] and the attention mask."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, vocab, (len(lengths), max(lengths)))
  mask = np.arange(max(lengths))[None, :] < np.asarray(lengths)[:, None]
  return np.where(mask, tokens, 0), mask.astype(np.int64)


def test_logits_match_transformers_on_ragged_batch(hf_pair):
  family, directory, torch_model, cfg = hf_pair
  model = skd_jax.load_model(directory)
  assert model.config.family == family
  # 29 > sliding window 8, so local layers really slide.
  tokens, mask = _ragged_batch(cfg.vocab_size, [29, 17, 23])
  ref = torch_logits(torch_model, tokens, mask)
  ours = np.asarray(transformer.forward(model.params, tokens, model.config)[0])
  valid = mask.astype(bool)
  assert np.abs(ref[valid]).max() > 0.5  # logits are not trivially small
  np.testing.assert_allclose(ours[valid], ref[valid], atol=1e-4, rtol=0)
  # The public entry point on an unpadded row.
  np.testing.assert_allclose(np.asarray(skd_jax.logits(model, tokens[:1])), ref[:1], atol=1e-4, rtol=0)


def test_export_round_trip(hf_pair, tmp_path):
  _, directory, torch_model, cfg = hf_pair
  model = skd_jax.load_model(directory)
  out = skd_jax.export_hf(model, str(tmp_path / "export"))
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).float().eval()
  tokens, _ = _ragged_batch(cfg.vocab_size, [21, 21], seed=1)
  np.testing.assert_allclose(torch_logits(reloaded, tokens), np.asarray(skd_jax.logits(model, tokens)),
                             atol=1e-5, rtol=0)
  # And our loader reads the export back to identical params.
  again = skd_jax.load_model(out)
  for a, b in zip(jax_leaves(model.params), jax_leaves(again.params)):
    np.testing.assert_array_equal(a, b)


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_bfloat16_compute_tracks_float32(hf_pair):
  _, directory, _, cfg = hf_pair
  f32 = skd_jax.load_model(directory)
  bf16 = skd_jax.load_model(directory, dtype="bfloat16")
  assert bf16.params["embed"].dtype.name == "bfloat16"
  tokens, _ = _ragged_batch(cfg.vocab_size, [16, 16], seed=2)
  a = np.asarray(skd_jax.logits(f32, tokens))
  b = np.asarray(skd_jax.logits(bf16, tokens))
  assert b.dtype == np.float32
  # bf16 has ~3 significant digits: close, but not equal.
  assert 0 < np.abs(a - b).max() < 0.1 * np.abs(a).max()
  assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.9


def test_load_onto_a_sharding(hf_pair):
  """Each tensor goes straight to its target sharding; logits are unchanged."""
  import jax
  _, directory, torch_model, cfg = hf_pair
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  P = jax.sharding.PartitionSpec
  shardings = jax.tree.map(
      lambda axes: jax.sharding.NamedSharding(mesh, P(*["model" if a == "embed" else None
                                                          for a in axes])),
      transformer.param_axes(cfg), is_leaf=lambda x: isinstance(x, tuple))
  model = skd_jax.load_model(directory, shardings=shardings)
  assert model.params["layers"]["q"].sharding.spec == P(None, "model", None, None)
  assert len(model.params["embed"].sharding.device_set) == 8
  tokens, _ = _ragged_batch(cfg.vocab_size, [12, 12], seed=3)
  np.testing.assert_allclose(np.asarray(skd_jax.logits(model, tokens)), torch_logits(torch_model, tokens),
                             atol=1e-4, rtol=0)
