"""Where two models' logits meet with vocabularies that differ by padding rows.

Qwen2-7B has 152,064 vocabulary rows and Qwen2-0.5B 151,936 (one tokenizer):
the loss (plain and chunked) and top-1 agreement compare the first N ids.
The driver's train-step version is in tests/test_train_step.py.
"""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skd_jax import losses
from skd_jax.evaluation import task_eval

B, L, D_T, D_S, SHARED, WIDE = 2, 9, 8, 6, 128, 136


def _logits(seed, vocab):
  return np.random.default_rng(seed).normal(size=(B, L, vocab)) * 3


@pytest.mark.parametrize("name", losses.DIVERGENCES)
@pytest.mark.parametrize("t_vocab,s_vocab", [(WIDE, SHARED), (SHARED, WIDE)])
def test_divergence_compares_the_first_ids(name, t_vocab, s_vocab):
  t, s = _logits(0, t_vocab), _logits(1, s_vocab)
  mask = np.random.default_rng(2).random((B, L)) < 0.7
  kw = dict(temperature=1.3, beta=0.3)
  got = losses.divergence(name, t, s, mask, vocab_size=SHARED, **kw)
  want = losses.divergence(name, t[..., :SHARED], s[..., :SHARED], mask, **kw)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  top_k = losses.divergence(name, t, s, mask, vocab_size=SHARED, top_k=5, **kw)
  np.testing.assert_allclose(top_k, losses.divergence(
      name, t[..., :SHARED], s[..., :SHARED], mask, top_k=5, **kw), rtol=1e-6)
  with pytest.raises(ValueError, match=rf"teacher vocabulary {t_vocab} != student "
                     rf"vocabulary {s_vocab}.*--config.sampler.shared_vocab_size={SHARED}"):
    losses.divergence(name, t, s, mask)
  with pytest.raises(ValueError, match=r"must be in \[1, 128\]"):
    losses.divergence(name, t, s, mask, vocab_size=WIDE)


def _head(params, hidden):
  return jnp.einsum("bcd,dv->bcv", hidden, params["w"])


def test_chunked_divergence_compares_the_first_ids():
  rng = np.random.default_rng(3)
  f32 = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  t_params, s_params = {"w": f32(D_T, SHARED)}, {"w": f32(D_S, WIDE)}
  t_hidden, s_hidden = f32(B, L, D_T), f32(B, L, D_S)
  mask = rng.random((B, L)) < 0.7

  def chunked(s_params):
    return losses.safe_mean(*losses.chunked_divergence(
        "fkl", t_hidden, s_hidden, _head, _head, mask, teacher_params=t_params,
        student_params=s_params, chunk_size=4, vocab_size=SHARED))

  def by_hand(s_params):
    return losses.divergence("fkl", _head(t_params, t_hidden),
                             _head(s_params, s_hidden)[..., :SHARED], mask)

  got, got_grads = jax.value_and_grad(chunked)(s_params)
  want, want_grads = jax.value_and_grad(by_hand)(s_params)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_grads["w"], want_grads["w"], rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(got_grads["w"])[:, SHARED:] == 0)


def test_top1_agreement_compares_the_first_ids():
  batch = types.SimpleNamespace(prompt_ids=[[3, 4], [5]], target_ids=[[6, 7, 8], [9, 10]])
  student_logits = np.random.default_rng(4).normal(size=(2, 5, SHARED)).astype(np.float32)

  def student(tokens):
    assert tokens.shape == (2, 5)
    return student_logits

  def teacher(tokens):  # The student's argmax over the shared ids; a padding row on top.
    wide = np.full((2, 5, WIDE), -9.0, np.float32)
    wide[..., :SHARED] = student_logits
    wide[..., WIDE - 1] = 100.0
    return wide

  assert task_eval.top1_agreement(teacher, student, batch, vocab_size=SHARED) == (1.0, 5)
  with pytest.raises(ValueError, match=rf"teacher vocabulary {WIDE} != student "
                     rf"vocabulary {SHARED}.*shared_vocab_size={SHARED}"):
    task_eval.top1_agreement(teacher, student, batch)
