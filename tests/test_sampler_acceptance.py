"""Acceptance variants of the official code (issue 15): the top-p test, the decaying K, the
warped test's filler ids. Laws by chi^2 (fixed seeds; a true law fails p < 1e-3 one time in
1000), schedules against a transcription of the official loop, equivalences exactly.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import skd_jax
from skd_jax.sampling import SamplerConfig, distributions
from skd_jax.sampling.config import acceptance_settings, decayed_top_k
# The pair / small_vocab_pair fixtures come from tests/conftest.py.
from tests.tiny_sampling import N_LAW, PROMPTS as _PROMPTS, VOCAB
from tests.tiny_sampling import chi2_pvalue as _chi2_pvalue, probs as _probs
from tests.tiny_sampling import run as _run

PROMPT = [2, 5, 7]



def _law(q: np.ndarray, p: np.ndarray, accepted: np.ndarray) -> np.ndarray:
  """P(y) = q(y) 1[y in A] + (sum_{y' not in A} q(y')) p(y), A the accepted set."""
  return q * accepted + q[~accepted].sum() * p


def _nucleus_set(probs: np.ndarray, top_p: float) -> np.ndarray:
  """Reference top-p set: sort by (-prob, id); keep while the mass before < top_p, prob > 0."""
  order = np.lexsort((np.arange(len(probs)), -probs))
  before = np.cumsum(probs[order]) - probs[order]
  keep = np.zeros(len(probs), bool)
  keep[order[(before < top_p) & (probs[order] > 0)]] = True
  keep[order[0]] = True
  return keep


def _top_k_set(logits: np.ndarray, k: int) -> np.ndarray:
  keep = np.zeros(len(logits), bool)
  keep[np.lexsort((np.arange(len(logits)), -logits))[:k]] = True
  return keep


def _logits(model, prefix):
  return np.asarray(skd_jax.logits(model, [prefix]))[0, -1].astype(np.float64)


# ----------------------------------------------------------------------------- unit level
def test_in_nucleus_matches_reference_with_ties_and_zero_probabilities():
  rng = np.random.default_rng(0)
  logits = np.round(rng.normal(0, 1.5, (64, 10)), 1)          # rounding makes ties
  logits[::3, 7:] = -np.inf                                   # probability-0 ids
  tokens = rng.integers(0, 10, 64)
  for top_p in (1e-4, 0.3, 0.5, 0.9, 1.0):
    got = np.asarray(distributions.in_nucleus(jnp.asarray(logits, jnp.float32),
                                              jnp.asarray(tokens), jnp.float32(top_p)))
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    want = np.array([_nucleus_set(p, top_p)[t] for p, t in zip(probs, tokens)])
    np.testing.assert_array_equal(got, want, err_msg=f"top_p={top_p}")


def test_warped_top_k_filler_is_the_lowest_ids_outside_the_nucleus():
  """K = 4 on a warped distribution whose nucleus is {9}: filler = ids 0, 1, 2 (EOS is 1)."""
  logits = jnp.asarray([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 5.0]])
  warped = distributions.warp(logits, jnp.float32(0.2), jnp.float32(0.5))
  accepted = [bool(distributions.in_top_k(warped, jnp.asarray([t]), 4)[0]) for t in range(10)]
  assert accepted == [True, True, True, False, False, False, False, False, False, True]
  # On the raw distribution the same K accepts the 4 most likely ids instead.
  raw = [bool(distributions.in_top_k(logits, jnp.asarray([t]), 4)[0]) for t in range(10)]
  assert raw == [False] * 6 + [True] * 4
  # The top-p test on the warped distribution is its support: the nucleus alone.
  nucleus = [bool(distributions.in_nucleus(warped, jnp.asarray([t]), 1.0)[0]) for t in range(10)]
  assert nucleus == [False] * 9 + [True]


def _official_schedule(k: int, expected_len: int, rounds: int) -> list[int]:
  """The K each verify round tests with, as the official loop updates it (gamma = 1)."""
  n_decay = max(int(expected_len / k), 1)
  per_decay = max(math.ceil(k / expected_len), 1)
  out, index = [], 0
  for _ in range(rounds):
    out.append(k)
    if index % n_decay == 0:
      k = max(k - per_decay, 1)
    index += 1
  return out


@pytest.mark.parametrize("k,length", [(25, 24), (25, 128), (25, 1000), (5, 7), (3, 2), (1, 10),
                                      (600, 24)])
def test_decayed_top_k_is_the_official_schedule(k, length):
  got = decayed_top_k(jnp.int32(k), jnp.int32(length), jnp.arange(300))
  assert np.asarray(got).tolist() == _official_schedule(k, length, 300)


def test_decay_off_and_k_zero_keep_k():
  idx = jnp.arange(50)
  assert np.asarray(decayed_top_k(jnp.int32(25), jnp.int32(0), idx)).tolist() == [25] * 50
  assert np.asarray(decayed_top_k(jnp.int32(0), jnp.int32(8), idx)).tolist() == [0] * 50


@pytest.mark.parametrize("kw,message", [
    ({"acceptance": "nucleus"}, r"acceptance='nucleus'"),
    ({"acceptance_top_p": 1.5}, r"acceptance_top_p=1.5 must be in \[0, 1\]"),
    ({"top_k_decay_length": -2}, r"top_k_decay_length=-2 must be >= 0"),
    ({"top_k_decay_length": 8, "acceptance_top_p": 0.5}, r"set one of them to 0"),
])
def test_bad_acceptance_settings(kw, message):
  with pytest.raises(ValueError, match=message):
    SamplerConfig(**kw)


def test_acceptance_settings_from_a_config_block():
  import ml_collections
  old = ml_collections.ConfigDict(dict(acceptance="warped"))
  assert acceptance_settings(old) == dict(acceptance="warped", acceptance_top_p=0.0,
                                          top_k_decay_length=0)
  new = ml_collections.ConfigDict(dict(acceptance="raw", acceptance_top_p=0.5,
                                       top_k_decay_length=0))
  assert SamplerConfig(**acceptance_settings(new)).acceptance_top_p == 0.5


# ----------------------------------------------------------------------------- equivalences
def test_top_p_limits_equal_k_one_and_k_vocab(pair):
  """Raw top-p 1 accepts every draft (= K = V); a tiny top-p only the teacher's argmax (= K = 1)."""
  student, teacher = pair
  v = student.config.vocab_size
  kw = dict(gamma=3, student_temperature=1.0, teacher_temperature=1.0)
  assert _run(student, teacher, acceptance_top_p=1.0, **kw).completions == \
      _run(student, teacher, top_k=v, **kw).completions
  tiny, k1 = _run(student, teacher, acceptance_top_p=1e-6, **kw), _run(student, teacher, top_k=1, **kw)
  assert tiny.completions == k1.completions and tiny.from_teacher == k1.from_teacher
  assert 0 < np.mean(k1.replacement_rate) < 1


@pytest.mark.parametrize("kw", [dict(top_k=8, top_k_decay_length=6),
                                dict(acceptance="warped", acceptance_top_p=1.0, top_p=0.9)])
def test_variants_keep_gamma_a_speed_knob(pair, kw):
  student, teacher = pair
  outs = {g: _run(student, teacher, gamma=g, **kw) for g in (1, 3)}
  assert outs[3].completions == outs[1].completions
  assert outs[3].from_teacher == outs[1].from_teacher
  np.testing.assert_array_equal(np.asarray(outs[3].rollout.accepted),
                                np.asarray(outs[1].rollout.accepted))
  assert 0 < np.mean(outs[1].replacement_rate) < 1


def _teacher_ranks(teacher, prompt, completion):
  """Rank under the teacher's raw logits (ties to the lower id) of each completion token."""
  logits = np.asarray(skd_jax.logits(teacher, [prompt + completion]))[0]
  ranks = []
  for j, token in enumerate(completion):
    row = logits[len(prompt) - 1 + j]
    ranks.append(int(np.sum((row > row[token]) | ((row == row[token]) & (np.arange(len(row)) < token)))))
  return ranks


def test_decayed_k_bounds_every_accepted_draft(pair):
  """Each kept student token at completion index j ranks below K_j under the teacher; the
  constant-K run keeps some that K_j would have rejected (so the decay is felt)."""
  student, teacher = pair
  k, length = 20, 4
  ks = np.asarray(decayed_top_k(jnp.int32(k), jnp.int32(length), jnp.arange(24))).tolist()
  assert ks[0] == 20 and ks[-1] == 1
  decay = _run(student, teacher, top_k=k, gamma=2, top_k_decay_length=length)
  const = _run(student, teacher, top_k=k, gamma=2)
  too_far = 0
  for prompt, d_c, d_f, c_c, c_f in zip(_PROMPTS, decay.completions, decay.from_teacher,
                                        const.completions, const.from_teacher):
    ranks = _teacher_ranks(teacher, prompt, d_c)
    assert all(r < ks[j] for j, (r, f) in enumerate(zip(ranks, d_f)) if not f)
    ranks = _teacher_ranks(teacher, prompt, c_c)
    assert all(r < k for r, f in zip(ranks, c_f) if not f)
    too_far += sum(r >= ks[j] for j, (r, f) in enumerate(zip(ranks, c_f)) if not f)
  assert too_far > 0
  assert [c[0] for c in decay.completions] == [c[0] for c in const.completions]


# ----------------------------------------------------------------------------- laws
def _sampled(student, teacher, n_new, seed, **kw):
  out = _run(student, teacher, prompts=[PROMPT] * N_LAW, max_new_tokens=n_new, seed=seed, **kw)
  return np.asarray(out.rollout.tokens)[:, len(PROMPT):len(PROMPT) + n_new]


def _check_conditionals(tokens, expected, depth):
  """chi^2 of token `depth` given each frequent prefix (>= 1000 samples) of length depth."""
  checked = 0
  prefixes = {tuple(r) for r in tokens[:, :depth].tolist()}
  for prefix in sorted(prefixes):
    rows = np.all(tokens[:, :depth] == prefix, axis=1)
    if rows.sum() < 1000:
      continue
    counts = np.bincount(tokens[rows, depth], minlength=VOCAB)
    assert _chi2_pvalue(counts, expected(PROMPT + list(prefix), depth)) > 1e-3, prefix
    checked += 1
  return checked


@pytest.mark.parametrize("settings", [
    dict(acceptance_top_p=0.6),
    dict(acceptance_top_p=0.3, student_temperature=0.8, teacher_temperature=1.3, top_p=0.95),
    dict(acceptance="warped", acceptance_top_p=1.0, teacher_temperature=0.7, top_p=0.8),
])
def test_top_p_acceptance_law(small_vocab_pair, settings):
  student, teacher = small_vocab_pair
  tokens = _sampled(student, teacher, 2, seed=7, gamma=2, **settings)
  s_t = settings.get("student_temperature", 1.0)
  t_t = settings.get("teacher_temperature", 1.0)
  top_p = settings.get("top_p", 1.0)
  warped = settings.get("acceptance") == "warped"

  def expected(prefix, _):
    q = _probs(_logits(student, prefix), s_t, top_p)
    p = _probs(_logits(teacher, prefix), t_t, top_p)
    raw = _logits(teacher, prefix)
    test = p if warped else np.exp(raw - raw.max()) / np.exp(raw - raw.max()).sum()
    return _law(q, p, _nucleus_set(test, settings["acceptance_top_p"]))

  assert _chi2_pvalue(np.bincount(tokens[:, 0], minlength=VOCAB), expected(PROMPT, 0)) > 1e-3
  assert _check_conditionals(tokens, expected, 1) >= 2


def test_decaying_k_law(small_vocab_pair):
  """K = 6, L = 3: K_0 = 6, K_1 = 4, K_2 = 2 (d = 2, every index); gamma 2 puts indices
  0 and 1 in one verify block, so each draft of a block has its own K."""
  student, teacher = small_vocab_pair
  k, length = 6, 3
  ks = np.asarray(decayed_top_k(jnp.int32(k), jnp.int32(length), jnp.arange(3))).tolist()
  assert ks == [6, 4, 2]
  tokens = _sampled(student, teacher, 3, seed=11, gamma=2, top_k=k, top_k_decay_length=length)

  def expected(prefix, depth):
    q, p = _probs(_logits(student, prefix), 1, 1), _probs(_logits(teacher, prefix), 1, 1)
    return _law(q, p, _top_k_set(_logits(teacher, prefix), ks[depth]))

  assert _chi2_pvalue(np.bincount(tokens[:, 0], minlength=VOCAB), expected(PROMPT, 0)) > 1e-3
  assert _check_conditionals(tokens, expected, 1) >= 2
  assert _check_conditionals(tokens, expected, 2) >= 1
  # Power: the second token's law under the constant K = 6 is rejected.
  first = np.bincount(tokens[:, 0], minlength=VOCAB)
  pvalues = []
  for y in np.flatnonzero(first >= 1000):
    prefix = PROMPT + [int(y)]
    q, p = _probs(_logits(student, prefix), 1, 1), _probs(_logits(teacher, prefix), 1, 1)
    wrong = _law(q, p, _top_k_set(_logits(teacher, prefix), k))
    pvalues.append(_chi2_pvalue(np.bincount(tokens[tokens[:, 0] == y, 1], minlength=VOCAB), wrong))
  assert min(pvalues) < 1e-6
