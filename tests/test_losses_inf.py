"""Divergences where logits are -inf: exact against float64 numpy (0 log 0 = 0).

jsd (0 < beta < 1), skl (0 < alpha < 1) and tvd are finite and exact; fkl / rkl
are exact where finite and +inf where the true KL is infinite (mass where the
other model has none); gradients are finite everywhere.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skd_jax import losses

INF = np.inf
# (name, kwargs) covering every divergence and both jsd endpoints.
CASES = [("fkl", {}), ("rkl", {}), ("jsd", dict(beta=0.5)), ("jsd", dict(beta=0.3)),
         ("jsd", dict(beta=0.0)), ("jsd", dict(beta=1.0)), ("skl", dict(alpha=0.1)),
         ("skl", dict(alpha=0.6)), ("tvd", {})]
IDS = [f"{n}-{'-'.join(f'{k}{v}' for k, v in kw.items())}" for n, kw in CASES]


def _np_probs(logits, temperature=1.0):
  x = np.asarray(logits, np.float64) / temperature
  e = np.exp(x - x.max(-1, keepdims=True))  # exp(-inf) = 0 exactly.
  return e / e.sum(-1, keepdims=True)


def _np_kl(a, b):
  """sum a (log a - log b) with 0 log 0 = 0 and a > 0 = b giving +inf."""
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(a > 0, a * (np.log(np.where(a > 0, a, 1.0)) - np.log(b)), 0.0)
  return terms.sum(-1)


def np_divergence(name, t_logits, s_logits, temperature=1.0, beta=0.5, alpha=0.1):
  """The exact float64 reference."""
  p, q = _np_probs(t_logits, temperature), _np_probs(s_logits, temperature)
  if name == "fkl" or (name == "jsd" and beta == 0.0):
    return _np_kl(p, q)
  if name == "rkl" or (name == "jsd" and beta == 1.0):
    return _np_kl(q, p)
  if name == "jsd":
    m = beta * p + (1 - beta) * q
    return beta * _np_kl(p, m) + (1 - beta) * _np_kl(q, m)
  if name == "skl":
    return _np_kl(p, alpha * p + (1 - alpha) * q)
  if name == "tvd":
    return 0.5 * np.abs(p - q).sum(-1)
  raise ValueError(name)


def _token(name, t, s, **kw):
  return np.asarray(losses.token_divergence(
      name, jnp.asarray(t, jnp.float32), jnp.asarray(s, jnp.float32), **kw))


def _assert_exact(got, want, rtol=1e-5, atol=1e-6):
  """Equal where the reference is finite; +inf exactly where it is +inf."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
  assert not np.any(np.isnan(got))
  assert np.all(got >= -1e-6), got  # Never a negative divergence.
  finite = np.isfinite(want)
  np.testing.assert_allclose(got[finite], want[finite], rtol=rtol, atol=atol)


def test_two_point_examples():
  # p = [.5, .5], q = [1, 0]: the old "inf mask" gave fkl = -0.347 (log .5 / 2).
  half, one = [[[0.0, 0.0]]], [[[0.0, -INF]]]
  assert np.isposinf(_token("fkl", half, one)[0, 0])
  assert np.isposinf(_token("jsd", half, one, beta=0.0)[0, 0])
  np.testing.assert_allclose(_token("rkl", half, one)[0, 0], np.log(2), rtol=1e-6)
  # jsd(0.5): m = [.75, .25]; 0.5 * (KL(p||m) + KL(q||m)) = 0.2158 (old: 0.0425).
  want_jsd = 0.5 * (0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25) + np.log(1 / 0.75))
  np.testing.assert_allclose(_token("jsd", half, one, beta=0.5)[0, 0], want_jsd, rtol=1e-6)
  np.testing.assert_allclose(want_jsd, 0.21576155, rtol=1e-6)
  # skl(0.1): KL(p || [.95, .05]) = 0.8304 (old: -0.3209, the dropped id's term lost).
  want_skl = 0.5 * np.log(0.5 / 0.95) + 0.5 * np.log(0.5 / 0.05)
  np.testing.assert_allclose(_token("skl", half, one, alpha=0.1)[0, 0], want_skl, rtol=1e-6)
  np.testing.assert_allclose(_token("tvd", half, one)[0, 0], 0.5, rtol=1e-6)
  # Reversed roles: fkl finite, rkl infinite.
  np.testing.assert_allclose(_token("fkl", one, half)[0, 0], np.log(2), rtol=1e-6)
  assert np.isposinf(_token("rkl", one, half)[0, 0])
  assert np.isposinf(_token("jsd", one, half, beta=1.0)[0, 0])
  # jsd is symmetric at 0.5 also with zeros.
  np.testing.assert_allclose(_token("jsd", one, half)[0, 0], want_jsd, rtol=1e-6)


def _forbidden_logits(seed, shape=(3, 7, 11), p_forbid=0.3, scale=3.0):
  """Random logits with -inf on a random subset of ids (per position, per model).

  Id 0 is forbidden in both models everywhere, the last id allowed in both.
  """
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(2):
    x = rng.normal(size=shape) * scale
    x[rng.random(shape) < p_forbid] = -INF
    x[..., 0] = -INF
    x[..., -1] = rng.normal(size=shape[:-1])
    out.append(x)
  return out


@pytest.mark.parametrize("temperature", [0.7, 2.0])
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_matches_float64_reference(name, kw, temperature):
  t, s = _forbidden_logits(0)
  want = np_divergence(name, t, s, temperature, **kw)
  if name in ("fkl", "rkl") or kw.get("beta") in (0.0, 1.0):
    assert np.any(np.isinf(want)) and np.any(np.isfinite(want))  # The draw has both.
  else:
    assert np.all(np.isfinite(want))
  _assert_exact(_token(name, t, s, temperature=temperature, **kw), want)
  # bfloat16 inputs: the same -inf pattern, values cast to float32 first.
  t16, s16 = (np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64) for x in (t, s))
  got16 = losses.token_divergence(name, jnp.asarray(t, jnp.bfloat16),
                                  jnp.asarray(s, jnp.bfloat16), temperature=temperature,
                                  **kw)
  _assert_exact(got16, np_divergence(name, t16, s16, temperature, **kw))


def _numeric_grad(fn, x, eps=1e-6):
  """Central differences of a float64 function over the finite entries of x."""
  grad = np.zeros_like(x)
  for idx in zip(*np.nonzero(np.isfinite(x))):
    up, down = x.copy(), x.copy()
    up[idx] += eps
    down[idx] -= eps
    grad[idx] = (fn(up) - fn(down)) / (2 * eps)
  return grad


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_gradients_finite_and_exact(name, kw):
  t, s = _forbidden_logits(3, shape=(2, 4, 7), p_forbid=0.15)
  temperature = 1.5
  values = np_divergence(name, t, s, temperature, **kw)
  mask = np.isfinite(values)
  mask[0, 0] = False
  assert mask.sum() >= 2

  def loss(t, s, mask):
    return losses.divergence(name, t, s, mask, temperature=temperature, **kw)

  value, (gt, gs) = jax.value_and_grad(loss, argnums=(0, 1))(
      jnp.asarray(t, jnp.float32), jnp.asarray(s, jnp.float32), mask)
  np.testing.assert_allclose(value, values[mask].mean(), rtol=1e-5)
  ref = lambda t, s: np_divergence(name, t, s, temperature, **kw)[mask].mean()
  for got, x, want in ((gt, t, _numeric_grad(lambda x: ref(x, s), t)),
                       (gs, s, _numeric_grad(lambda x: ref(t, x), s))):
    got = np.asarray(got)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-5)
    assert np.all(got[np.isinf(x)] == 0)
  # Positions whose value is +inf in the mean: the loss is +inf, gradients stay finite.
  _, grads = jax.value_and_grad(loss, argnums=(0, 1))(
      jnp.asarray(t, jnp.float32), jnp.asarray(s, jnp.float32), np.ones_like(mask))
  assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_top_k_sparse_path(name, kw):
  # Three finite teacher ids per position and k = 5: the sparse teacher keeps
  # two zero-probability ids (lax.top_k breaks ties by the lower id).
  k, temperature = 5, 0.8
  rng = np.random.default_rng(2)
  t = np.full((3, 7, 11), -INF)
  for idx in np.ndindex(3, 7):
    t[idx][rng.choice(11, 3, replace=False)] = rng.normal(size=3) * 3
  s = rng.normal(size=t.shape) * 3
  s[rng.random(s.shape) < 0.3] = -INF
  s[..., -1] = 0.0
  ids = np.argsort(-t, axis=-1, kind="stable")[..., :k]
  t_k, s_k = np.take_along_axis(t, ids, -1), np.take_along_axis(s, ids, -1)
  s_k[np.all(np.isinf(s_k), -1)] = 0.0  # Keep every student row normalisable.
  np.put_along_axis(s, ids, s_k, -1)
  want = np_divergence(name, t_k, s_k, temperature, **kw)
  _assert_exact(_token(name, t, s, top_k=k, temperature=temperature, **kw), want)


# Chunked path: linear heads whose biases forbid ids.
B, L, V, D_T, D_S = 3, 13, 11, 8, 6


def _head(params, hidden):
  return jnp.einsum("bcd,dv->bcv", hidden, params["w"]) + params["b"]


@pytest.mark.parametrize("student_forbidden", [(1,), (1, 2)])
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_chunked_path(name, kw, student_forbidden):
  # Teacher forbids ids 0, 1; student 1 (and 2): id 0 has q > 0 = p, id 2 p > 0 = q.
  rng = np.random.default_rng(3)
  f32 = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  t_b, s_b = rng.normal(size=V), rng.normal(size=V)
  t_b[[0, 1]] = -INF
  s_b[list(student_forbidden)] = -INF
  t_params = {"w": f32(D_T, V), "b": jnp.asarray(t_b)}
  s_params = {"w": f32(D_S, V), "b": jnp.asarray(s_b)}
  t_hidden, s_hidden = f32(B, L, D_T), f32(B, L, D_S)
  mask = rng.random((B, L)) < 0.6
  cfg = dict(temperature=1.3, **kw)

  def unchunked(s_params, s_hidden):
    return losses.safe_mean(*losses.divergence(
        name, _head(t_params, t_hidden), _head(s_params, s_hidden), mask,
        reduction="sum", **cfg))

  def chunked(s_params, s_hidden):
    return losses.safe_mean(*losses.chunked_divergence(
        name, t_hidden, s_hidden, _head, _head, mask, teacher_params=t_params,
        student_params=s_params, chunk_size=4, **cfg))

  values = np_divergence(name, np.asarray(_head(t_params, t_hidden)),
                         np.asarray(_head(s_params, s_hidden)), 1.3, **kw)
  want = values[mask].mean()
  want_value, want_grads = jax.value_and_grad(unchunked, argnums=(0, 1))(s_params, s_hidden)
  got_value, got_grads = jax.value_and_grad(chunked, argnums=(0, 1))(s_params, s_hidden)
  _assert_exact(np.asarray([got_value, want_value]), np.asarray([want, want]), rtol=2e-5)
  for g, w in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads)):
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
  if np.isfinite(want):
    assert np.any(np.asarray(got_grads[0]["w"]) != 0)
