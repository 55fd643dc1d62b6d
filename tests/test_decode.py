"""Invariant 1: cached decoding equals the teacher-forced forward, for every family.

Prompts are ragged (right-padded prefill), and sequences grow past the sliding
window (8 in the tiny configs) so local layers really slide.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skd_jax.models import config as mconfig
from skd_jax.models import layouts
from skd_jax.models import transformer

FAMILIES = ("gemma", "gemma2", "gemma3", "qwen2")
PROMPT_LENGTHS = np.array([5, 9, 3])
CACHE_LEN = 40


def _setup(family):
  cfg = mconfig.get_config(f"tiny-{family}")
  params = transformer.init_params(cfg, jax.random.PRNGKey(1), std=0.2)
  rng = np.random.default_rng(0)
  prompts = rng.integers(3, cfg.vocab_size, (len(PROMPT_LENGTHS), PROMPT_LENGTHS.max()))
  prompts = np.where(np.arange(prompts.shape[1]) < PROMPT_LENGTHS[:, None], prompts, 0)
  return cfg, params, prompts


@functools.partial(jax.jit, static_argnames=("cfg",))
def _step(params, tokens, cache, lengths, cfg):
  return transformer.forward(params, tokens, cfg, cache=cache, lengths=lengths)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _full_padded(params, tokens, cfg):
  return transformer.forward(params, tokens, cfg)[0]


def _full(params, seq, cfg):
  """Teacher-forced logits of one sequence [n, V] (right-padded to one shape: causal, so exact)."""
  padded = np.zeros((1, CACHE_LEN), np.int32)
  padded[0, :len(seq)] = seq
  return np.asarray(_full_padded(params, jnp.asarray(padded), cfg))[0, :len(seq)]


def _prefill(cfg, params, prompts):
  cache = transformer.init_cache(cfg, len(prompts), CACHE_LEN)
  logits, cache = _step(params, jnp.asarray(prompts), cache, jnp.asarray(PROMPT_LENGTHS), cfg)
  last = np.asarray(logits)[np.arange(len(prompts)), PROMPT_LENGTHS - 1]
  return last, cache


def _greedy_cached(cfg, params, prompts, steps):
  """Greedy decoding one token per call; returns sequences and per-step logits."""
  last, cache = _prefill(cfg, params, prompts)
  seqs = [list(p[:n]) for p, n in zip(prompts, PROMPT_LENGTHS)]
  step_logits = []
  for _ in range(steps):
    nxt = last.argmax(-1)
    for s, t in zip(seqs, nxt):
      s.append(int(t))
    logits, cache = _step(params, jnp.asarray(nxt[:, None]), cache, None, cfg)
    last = np.asarray(logits)[:, 0]
    step_logits.append(last)
  return seqs, np.stack(step_logits, 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_cached_decoding_equals_argmax_of_full_forward(family):
  cfg, params, prompts = _setup(family)
  seqs, step_logits = _greedy_cached(cfg, params, prompts, steps=22)
  for row, seq in enumerate(seqs):
    n = PROMPT_LENGTHS[row]
    full = _full(params, seq, cfg)
    # Every generated token is the argmax of the teacher-forced forward ...
    np.testing.assert_array_equal(full[n - 1:-1].argmax(-1), seq[n:])
    # ... and the cached logits after feeding token i equal the full forward's at i.
    np.testing.assert_allclose(step_logits[row], full[n:], atol=2e-5, rtol=0)
  assert max(len(s) for s in seqs) > 3 * 8  # 3x the tiny sliding window


@pytest.mark.parametrize("family", FAMILIES)
def test_block_decoding_with_ragged_advance(family):
  """Blocks of 4 tokens per call; rows keep different prefixes of each block.

  This is the sampler's verify pattern: after a block, row b keeps `keep[b]`
  tokens (end_index advances by that), and the rejected slots are overwritten by
  the next block. Logits must equal the full forward on the kept sequences.
  """
  cfg, params, prompts = _setup(family)
  rng = np.random.default_rng(1)
  _, cache = _prefill(cfg, params, prompts)
  seqs = [list(p[:n]) for p, n in zip(prompts, PROMPT_LENGTHS)]
  for _ in range(7):
    block = rng.integers(3, cfg.vocab_size, (len(seqs), 4))
    keep = rng.integers(1, 5, len(seqs))
    logits, cache = _step(params, jnp.asarray(block), cache, jnp.asarray(keep), cfg)
    logits = np.asarray(logits)
    for row, seq in enumerate(seqs):
      start = len(seq)
      seq.extend(int(t) for t in block[row])
      full = _full(params, seq, cfg)
      np.testing.assert_allclose(logits[row], full[start:start + 4], atol=2e-5, rtol=0)
      del seq[start + keep[row]:]
  np.testing.assert_array_equal(np.asarray(cache.end_index), [len(s) for s in seqs])
  assert max(len(s) for s in seqs) > 2 * 8


@pytest.mark.parametrize("name", ["tiny-gemma", "tiny-gemma3", "tiny-qwen2"])
def test_decode_layout_gives_the_same_logits(name):
  """`decode_layout` (per-layer weights, transposed tied embedding) changes no number."""
  cfg = mconfig.get_config(name)
  params = transformer.init_params(cfg, jax.random.PRNGKey(3), std=0.2)
  fast = layouts.decode_layout(params, cfg)
  assert isinstance(fast["layers"], tuple) and len(fast["layers"]) == cfg.num_layers
  assert ("embed_t" in fast) == cfg.tie_embeddings
  tokens = jnp.asarray(np.random.default_rng(1).integers(3, cfg.vocab_size, (2, 7)), jnp.int32)
  cache = transformer.init_cache(cfg, 2, CACHE_LEN)
  want, want_cache = _step(params, tokens, cache, jnp.asarray([7, 5]), cfg)
  got, got_cache = _step(fast, tokens, cache, jnp.asarray([7, 5]), cfg)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(got_cache.k, want_cache.k, atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(got_cache.end_index, want_cache.end_index)
