"""Tests of skd_jax.losses against direct numpy formulas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skd_jax import losses

NAMES = losses.DIVERGENCES
B, L, V = 3, 7, 11


def _logits(seed, shape=(B, L, V), scale=3.0):
  return np.random.default_rng(seed).normal(size=shape) * scale


def _ragged_mask():
  mask = np.zeros((B, L), bool)
  mask[0, 2:6] = True  # middle
  mask[1, :] = True  # full
  mask[2, 6] = True  # single last position
  return mask


def _np_log_softmax(x, temperature=1.0):
  x = np.asarray(x, np.float64) / temperature
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_kl(p, q):
  return np.sum(p * (np.log(p) - np.log(q)), -1)


def _np_divergence(name, t_logits, s_logits, temperature=1.0, beta=0.5,
                   alpha=0.1):
  p = np.exp(_np_log_softmax(t_logits, temperature))
  q = np.exp(_np_log_softmax(s_logits, temperature))
  if name == "fkl":
    return _np_kl(p, q)
  if name == "rkl":
    return _np_kl(q, p)
  if name == "jsd":
    m = beta * p + (1 - beta) * q
    return beta * _np_kl(p, m) + (1 - beta) * _np_kl(q, m)
  if name == "tvd":
    return 0.5 * np.abs(p - q).sum(-1)
  if name == "skl":
    return _np_kl(p, alpha * p + (1 - alpha) * q)
  raise ValueError(name)


def _np_sequence_mean(values, mask):
  means = [values[b][mask[b]].mean() for b in range(len(mask)) if mask[b].any()]
  return np.mean(means)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("name", NAMES)
def test_matches_numpy_formula(name, temperature):
  t, s, mask = _logits(0), _logits(1), _ragged_mask()
  kw = dict(temperature=temperature, beta=0.3, alpha=0.2)
  want = _np_divergence(name, t, s, **kw)
  got = losses.token_divergence(name, jnp.asarray(t, jnp.float32),
                                jnp.asarray(s, jnp.float32), **kw)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  token_mean = losses.divergence(name, t, s, mask, **kw)
  np.testing.assert_allclose(token_mean, want[mask].mean(), rtol=1e-5)
  seq_mean = losses.divergence(name, t, s, mask, reduction="sequence", **kw)
  np.testing.assert_allclose(seq_mean, _np_sequence_mean(want, mask), rtol=1e-5)
  total, count = losses.divergence(name, t, s, mask, reduction="sum", **kw)
  np.testing.assert_allclose(total, want[mask].sum(), rtol=1e-5)
  assert count == mask.sum()


def test_sequence_reduction_differs_from_token_and_skips_empty_rows():
  t, s = _logits(2), _logits(3)
  mask = _ragged_mask()
  mask[0] = False  # An empty sequence must not count in the sequence mean.
  values = _np_divergence("fkl", t, s)
  seq = losses.divergence("fkl", t, s, mask, reduction="sequence")
  tok = losses.divergence("fkl", t, s, mask, reduction="token")
  np.testing.assert_allclose(
      seq, (values[1].mean() + values[2, 6]) / 2, rtol=1e-5)
  assert abs(float(seq) - float(tok)) > 1e-3
  total, count = losses.divergence("fkl", t, s, mask,
                                   reduction="sequence_sum")
  assert count == 2
  np.testing.assert_allclose(total / count, seq, rtol=1e-6)


def test_sum_pairs_aggregate_exactly_across_microbatches():
  t, s, mask = _logits(4), _logits(5), _ragged_mask()
  for reduction, mean_reduction in (("sum", "token"),
                                    ("sequence_sum", "sequence")):
    pairs = [
        losses.divergence("jsd", t[i:i + 1], s[i:i + 1], mask[i:i + 1],
                          reduction=reduction) for i in range(B)
    ]
    total = sum(p[0] for p in pairs) / sum(p[1] for p in pairs)
    whole = losses.divergence("jsd", t, s, mask, reduction=mean_reduction)
    np.testing.assert_allclose(total, whole, rtol=1e-6)


def test_jsd_endpoints_are_exactly_fkl_and_rkl():
  t, s, mask = _logits(6), _logits(7), _ragged_mask()
  fkl = losses.divergence("fkl", t, s, mask)
  rkl = losses.divergence("rkl", t, s, mask)
  assert abs(float(fkl) - float(rkl)) > 1e-2  # The test can tell them apart.
  assert losses.divergence("jsd", t, s, mask, beta=0.0) == fkl
  assert losses.divergence("jsd", t, s, mask, beta=1.0) == rkl


def test_jsd_mixture_weights_follow_trl():
  # TRL: m = beta * p_teacher + (1 - beta) * p_student, weights beta on KL(p||m).
  t, s, mask = _logits(8), _logits(9), _ragged_mask()
  got = losses.divergence("jsd", t, s, mask, beta=0.9)
  want = _np_divergence("jsd", t, s, beta=0.9)[mask].mean()
  swapped = _np_divergence("jsd", t, s, beta=0.1)[mask].mean()
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert abs(want - swapped) > 1e-3


def test_jsd_symmetric_at_half():
  t, s, mask = _logits(10), _logits(11), _ragged_mask()
  np.testing.assert_allclose(
      losses.divergence("jsd", t, s, mask, beta=0.5),
      losses.divergence("jsd", s, t, mask, beta=0.5), rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_zero_for_identical_inputs_and_nonnegative(name):
  t, s = _logits(12), _logits(13)
  same = losses.token_divergence(name, t, t, beta=0.4, temperature=0.7)
  np.testing.assert_allclose(same, 0.0, atol=1e-6)
  diff = losses.token_divergence(name, t, s, beta=0.4, temperature=0.7)
  assert np.all(np.asarray(diff) >= 0.0)
  assert np.all(np.asarray(diff) > 1e-4)


def _loss_and_grads(name, t, s, mask, **kw):
  return jax.value_and_grad(
      lambda t, s: losses.divergence(name, t, s, mask, **kw),
      argnums=(0, 1))(jnp.asarray(t, jnp.float32), jnp.asarray(s, jnp.float32))


@pytest.mark.parametrize("name", NAMES)
def test_masked_positions_contribute_nothing(name):
  t, s, mask = _logits(14), _logits(15), _ragged_mask()
  loss, (gt, gs) = _loss_and_grads(name, t, s, mask, beta=0.3)
  t2, s2 = t.copy(), s.copy()
  t2[~mask] = _logits(16)[~mask] * 5
  s2[~mask] = _logits(17)[~mask] * 5
  loss2, (gt2, gs2) = _loss_and_grads(name, t2, s2, mask, beta=0.3)
  assert loss == loss2
  np.testing.assert_array_equal(gs, gs2)
  np.testing.assert_array_equal(gt, gt2)
  assert np.all(np.asarray(gs)[~mask] == 0)
  assert np.any(np.asarray(gs)[mask] != 0)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_fkl_gradient_is_q_minus_p_over_temperature(temperature):
  t, s, mask = _logits(18), _logits(19), _ragged_mask()
  _, (_, gs) = _loss_and_grads("fkl", t, s, mask, temperature=temperature)
  p = np.exp(_np_log_softmax(t, temperature))
  q = np.exp(_np_log_softmax(s, temperature))
  want = (q - p) / temperature / mask.sum() * mask[..., None]
  np.testing.assert_allclose(gs, want, atol=1e-7)


@pytest.mark.parametrize("reduction", losses.REDUCTIONS)
def test_all_zero_mask_gives_zero_and_finite_grads(reduction):
  t, s = _logits(20), _logits(21)
  mask = np.zeros((B, L), bool)
  out = losses.divergence("fkl", t, s, mask, reduction=reduction)
  out = out[0] if isinstance(out, tuple) else out
  assert out == 0.0
  _, (gt, gs) = _loss_and_grads("jsd", t, s, mask, reduction="token")
  assert np.all(np.asarray(gs) == 0) and np.all(np.asarray(gt) == 0)


@pytest.mark.parametrize("name", NAMES)
def test_neg_inf_logits_give_no_nan(name):
  # Exactness against float64 references is pinned in tests/test_losses_inf.py.
  t, s, mask = _logits(22), _logits(23), _ragged_mask()
  t[..., :3] = -np.inf  # Forbidden in both models (e.g. padded vocab ids).
  s[..., :3] = -np.inf
  t[..., 4] = -np.inf  # Forbidden by the teacher only: q > 0 = p, rkl infinite.
  s[0, :, 5] = -np.inf  # Forbidden by the student only: p > 0 = q, fkl infinite.
  loss, (gt, gs) = _loss_and_grads(name, t, s, mask, beta=0.3)
  assert not np.isnan(loss)
  assert np.isposinf(loss) == (name in ("fkl", "rkl"))
  assert np.all(np.isfinite(gs)) and np.all(np.isfinite(gt))
  # Ids forbidden in both models drop out exactly: same as the reduced vocab.
  t2, s2 = _logits(22)[..., 3:], _logits(23)[..., 3:]
  t2[..., 1] = -np.inf
  s2[0, :, 2] = -np.inf
  ref = losses.divergence(name, t2, s2, mask, beta=0.3)
  np.testing.assert_allclose(loss, ref, rtol=1e-6)
  if name == "fkl":  # Teacher-only -inf: KL over the rest, p = 0 there.
    tt, ss = _logits(22)[1:, :, 3:], _logits(23)[1:, :, 3:]
    tt[..., 1] = -np.inf
    p = np.exp(_np_log_softmax(tt))
    lq = _np_log_softmax(ss)
    keep = np.isfinite(tt)
    vals = np.where(keep, p * (np.where(keep, np.log(np.where(keep, p, 1)), 0)
                               - lq), 0).sum(-1)
    got = losses.token_divergence(name, t[1:], s[1:])
    np.testing.assert_allclose(got, vals, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_top_k_sparse_teacher_matches_numpy(name):
  k = 4
  t, s = _logits(24), _logits(25)
  ids = np.argsort(-t, axis=-1)[..., :k]
  t_k = np.take_along_axis(t, ids, -1)
  s_k = np.take_along_axis(s, ids, -1)
  want = _np_divergence(name, t_k, s_k, temperature=1.5, beta=0.3)
  got = losses.token_divergence(name, t, s, top_k=k, temperature=1.5, beta=0.3)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  full = losses.token_divergence(name, t, s, temperature=1.5, beta=0.3)
  assert np.max(np.abs(np.asarray(full) - want)) > 1e-3


def test_inputs_are_computed_in_float32():
  t = jnp.asarray(_logits(26), jnp.bfloat16)
  s = jnp.asarray(_logits(27), jnp.bfloat16)
  got = losses.token_divergence("fkl", t, s)
  assert got.dtype == jnp.float32
  want = _np_divergence("fkl", np.asarray(t, np.float64),
                        np.asarray(s, np.float64))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# Chunked path: linear heads with different hidden sizes per model.
D_T, D_S, L_LONG = 8, 6, 13


def _head(params, hidden):
  return jnp.einsum("bcd,dv->bcv", hidden, params["w"]) + params["b"]


def _chunk_inputs(seed):
  rng = np.random.default_rng(seed)
  f32 = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  t_params = {"w": f32(D_T, V), "b": f32(V)}
  s_params = {"w": f32(D_S, V), "b": f32(V)}
  mask = rng.random((B, L_LONG)) < 0.6
  mask[0] = False
  return t_params, s_params, f32(B, L_LONG, D_T), f32(B, L_LONG, D_S), mask


@pytest.mark.parametrize("name,reduction,top_k", [
    ("fkl", "token", None), ("jsd", "sequence", None), ("rkl", "token", 5),
    ("skl", "sequence", None), ("tvd", "token", None)])
def test_chunked_equals_unchunked_in_value_and_grads(name, reduction, top_k):
  t_params, s_params, t_hidden, s_hidden, mask = _chunk_inputs(28)
  kw = dict(temperature=1.3, beta=0.3, top_k=top_k)

  def unchunked(s_params, s_hidden, t_hidden):
    return losses.divergence(
        name, _head(t_params, t_hidden), _head(s_params, s_hidden), mask,
        reduction=reduction + "_sum" if reduction == "sequence" else "sum",
        **kw)

  def chunked(s_params, s_hidden, t_hidden):
    return losses.chunked_divergence(
        name, t_hidden, s_hidden, _head, _head, mask, teacher_params=t_params,
        student_params=s_params, chunk_size=4, reduction=reduction, **kw)

  def mean(fn):
    return lambda *a: losses.safe_mean(*fn(*a))

  args = (s_params, s_hidden, t_hidden)
  want, want_grads = jax.value_and_grad(mean(unchunked), argnums=(0, 1))(*args)
  got, got_grads = jax.value_and_grad(mean(chunked), argnums=(0, 1, 2))(*args)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, w in zip(jax.tree.leaves(got_grads[:2]), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
  assert np.any(np.asarray(got_grads[0]["w"]) != 0)
  # The teacher side is under stop_gradient.
  assert np.all(np.asarray(got_grads[2]) == 0)
  np.testing.assert_array_equal(chunked(*args)[1], unchunked(*args)[1])


def test_chunked_all_zero_mask_is_zero_without_nan():
  t_params, s_params, t_hidden, s_hidden, mask = _chunk_inputs(29)
  mask[:] = False
  fn = lambda p: losses.safe_mean(*losses.chunked_divergence(
      "jsd", t_hidden, s_hidden, _head, _head, mask, teacher_params=t_params,
      student_params=p, chunk_size=5))
  loss, grads = jax.value_and_grad(fn)(s_params)
  assert loss == 0.0
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))


def test_chunked_loss_memory_does_not_grow_with_length():
  # Backward temp memory of the chunked loss is bounded by the chunk, while the
  # naive path stores [B, L, V] logits: compare XLA's own temp-size estimates.
  vocab, d = 4096, 16
  head = lambda p, h: h @ p

  def temp_bytes(length, chunked):
    t_h = jnp.zeros((2, length, d))
    s_h = jnp.zeros((2, length, d))
    mask = jnp.ones((2, length), bool)
    w = jnp.zeros((d, vocab))

    def loss(w):
      if chunked:
        pair = losses.chunked_divergence("fkl", t_h, s_h, head, head, mask,
                                         teacher_params=w, student_params=w,
                                         chunk_size=32)
      else:
        pair = losses.divergence("fkl", head(w, t_h), head(w, s_h), mask,
                                 reduction="sum")
      return losses.safe_mean(*pair)

    compiled = jax.jit(jax.grad(loss)).lower(w).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  logits_bytes = 2 * 512 * vocab * 4
  naive, chunked = temp_bytes(512, False), temp_bytes(512, True)
  assert naive > logits_bytes
  assert chunked < naive / 10
  assert chunked <= 1.1 * temp_bytes(128, True)  # Flat in the length.


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_chunked_cross_entropy_matches_numpy(reduction):
  t_params, s_params, _, s_hidden, mask = _chunk_inputs(30)
  targets = np.random.default_rng(31).integers(0, V, (B, L_LONG))
  logp = _np_log_softmax(_head(s_params, s_hidden))
  nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  want = (nll[mask].mean() if reduction == "token"
          else _np_sequence_mean(nll, mask))
  total, count = losses.chunked_cross_entropy(
      s_hidden, _head, s_params, jnp.asarray(targets), mask, chunk_size=4,
      reduction=reduction)
  np.testing.assert_allclose(total / count, want, rtol=1e-5)
  assert count == (mask.sum() if reduction == "token" else mask.any(-1).sum())
