"""The chunked loss skips chunks with no loss position (skd_jax/chunked.py).

A distillation row's prompt (and the padding after a short completion) is masked
out; the chunks made only of such positions contribute exact zeros, so the engine
does not compute them. These tests pin that the result is unchanged and that the
skipped chunks are really not computed.
"""
import jax
import jax.numpy as jnp
import numpy as np

from skd_jax import losses

B, L, D, V, CHUNK = 3, 20, 6, 11, 4


def _head(params, hidden):
  return jnp.einsum("bcd,dv->bcv", hidden, params["w"])


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  f32 = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  mask = np.zeros((B, L), bool)
  mask[:, 9:15] = rng.random((B, 6)) < 0.7      # chunks 0, 1 and 4 are empty; 2 partly
  mask[:, 9] = True
  return {"w": f32(D, V)}, {"w": f32(D, V)}, f32(B, L, D), f32(B, L, D), mask


def _loss(name, t_params, t_hidden, mask, chunk_size):
  def fn(s_params, s_hidden):
    return losses.safe_mean(*losses.chunked_divergence(
        name, t_hidden, s_hidden, _head, _head, mask, teacher_params=t_params,
        student_params=s_params, chunk_size=chunk_size))
  return jax.value_and_grad(fn, argnums=(0, 1))


def test_skipping_empty_chunks_leaves_value_and_gradients_unchanged():
  t_params, s_params, t_hidden, s_hidden, mask = _inputs()
  for name in ("fkl", "jsd"):
    got, got_grads = _loss(name, t_params, t_hidden, mask, CHUNK)(s_params, s_hidden)
    # One chunk over all positions: never empty, so never skipped.
    want, want_grads = _loss(name, t_params, t_hidden, mask, L)(s_params, s_hidden)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for g, w in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads)):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(got_grads[1])[~mask] == 0)


def test_empty_chunks_are_not_computed():
  # NaN hidden states inside the empty chunks: computed, the masked value would be
  # hidden by the mask but its gradient (0 * NaN) would not; skipped, nothing is NaN.
  t_params, s_params, t_hidden, s_hidden, mask = _inputs(1)
  empty = np.zeros((B, L), bool)
  empty[:, :8] = empty[:, 16:] = True          # chunks 0, 1 and 4: no loss position
  assert not mask[empty].any()
  s_nan = jnp.where(jnp.asarray(empty)[..., None], jnp.nan, s_hidden)
  value, (g_params, g_hidden) = _loss("fkl", t_params, t_hidden, mask, CHUNK)(s_params, s_nan)
  assert np.isfinite(value) and np.isfinite(np.asarray(g_params["w"])).all()
  assert np.isfinite(np.asarray(g_hidden)).all()
  # The same NaN in a chunk that holds a loss position (chunk 2: positions 8-11) is
  # computed: its gradient is NaN, which is what the skip avoids doing.
  partly = np.zeros((B, L), bool)
  partly[:, 8] = True
  assert not mask[:, 8].any() and mask[:, 9].all()
  s_nan2 = jnp.where(jnp.asarray(partly)[..., None], jnp.nan, s_hidden)
  _, (g_params2, _) = _loss("fkl", t_params, t_hidden, mask, CHUNK)(s_params, s_nan2)
  assert np.isnan(np.asarray(g_params2["w"])).any()
