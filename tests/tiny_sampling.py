"""Random tiny model pairs, prompts and numpy references shared by the sampler tests.

    from tests.tiny_sampling import PROMPTS, chi2_pvalue, model, probs, run
    # fixtures (tests/conftest.py): pair, small_vocab_pair

`pair()` is two tiny Gemmas (the teacher one layer deeper, std 0.1 so that their
distributions differ); `small_vocab_pair()` two Qwen2-style models with VOCAB = 12 ids,
small enough to tabulate a law exactly. Both are cached: a sampler never changes them.
"""
import functools

import jax
import numpy as np
from scipy import stats

import skd_jax
from skd_jax.models import transformer
from skd_jax.sampling import SamplerConfig, sample

PROMPTS = [[2, 5, 6, 7], [2, 9], [2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 40, 41]]
N_LAW = 20_000   # Samples behind every chi^2 law test.
VOCAB = 12       # small_vocab_pair's vocabulary.


def model(name, seed, std=0.02, **kw) -> skd_jax.Model:
  """Preset `name` (with ModelConfig overrides `kw`) with random weights of scale `std`."""
  cfg = skd_jax.get_config(name, **kw)
  return skd_jax.Model(config=cfg, params=transformer.init_params(cfg, jax.random.PRNGKey(seed), std))


@functools.lru_cache(maxsize=None)
def pair():
  """(student, teacher): tiny Gemmas of 2 and 3 layers, vocabulary 128."""
  return model("tiny-gemma", 1, std=0.1), model("tiny-gemma", 2, std=0.1, num_layers=3)


@functools.lru_cache(maxsize=None)
def small_vocab_pair():
  # Qwen2-style (untied head) at this scale gives spread-out, distinct distributions.
  student = model("tiny-qwen2", 11, std=0.1, vocab_size=VOCAB)
  teacher = model("tiny-qwen2", 12, std=0.1, vocab_size=VOCAB, num_layers=3)
  return student, teacher


def run(student, teacher, prompts=PROMPTS, seed=0, **kw):
  """`skd_jax.sample` with 24 new tokens, no stop ids and the SamplerConfig fields `kw`."""
  cfg = SamplerConfig(**{"max_new_tokens": 24, "stop_ids": (), **kw})
  return sample(student, teacher, prompts, config=cfg, rng=jax.random.PRNGKey(seed))


def probs(logits, temperature, top_p, top_k=0):
  """Reference sampling distribution: temperature, then top-k, then top-p (numpy)."""
  z = np.asarray(logits, np.float64) / temperature
  keep = np.ones(len(z), bool)
  if 0 < top_k < len(z):
    keep &= z >= np.sort(z)[-top_k]
  p = np.where(keep, np.exp(z - z.max()), 0.0)
  p /= p.sum()
  order = np.argsort(-p, kind="stable")
  before = np.cumsum(p[order]) - p[order]
  nucleus = np.zeros(len(z), bool)
  nucleus[order[before < top_p]] = True
  nucleus[order[0]] = True
  p = np.where(nucleus, p, 0.0)
  return p / p.sum()


def chi2_pvalue(counts: np.ndarray, expected_probs: np.ndarray) -> float:
  """Pearson chi^2 over cells with expected count >= 5 (the rest pooled)."""
  n = counts.sum()
  exp = expected_probs * n
  big = exp >= 5
  obs = np.append(counts[big], counts[~big].sum())
  exp = np.append(exp[big], exp[~big].sum())
  if exp[-1] < 5:
    obs, exp = obs[:-1], exp[:-1]
    assert counts[~big].sum() <= 10, "samples where the law puts (almost) no mass"
  assert len(obs) >= 3, "degenerate law: the test would have no power"
  return stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue
