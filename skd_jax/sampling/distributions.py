"""Sampling distributions and the SKD acceptance test, on logits [..., V].

`warp` applies transformers' order of warpers: temperature, then top-k, then
top-p. Filtered ids get -inf. Temperature 0 means greedy (argmax of the raw
logits). Temperatures and top-p are traced values, so changing them does not
recompile; the sampling top-k is static (it fixes a shape).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def _nucleus_size(sorted_logits: jax.Array, top_p: jax.Array) -> jax.Array:
  """[..., 1] int: how many of the descending `sorted_logits` the nucleus keeps (>= 1)."""
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  return jnp.maximum(jnp.sum(mass_before < top_p, axis=-1, keepdims=True), 1)


def _candidates(scaled: jax.Array, top_p: jax.Array, top_k: int):
  """The sampling candidates of scaled logits [..., V], as (values, ids), each [..., C].

  With a top-k filter (0 < k < V) the candidates are the k best ids, already sorted
  by `lax.top_k`, so the nucleus needs no sort of the vocabulary (C = k). Without
  one, C = V and the nucleus sorts only when top_p < 1. Excluded ids get -inf.
  """
  v = scaled.shape[-1]
  if 0 < top_k < v:
    values, ids = jax.lax.top_k(scaled, top_k)
    keep = jnp.arange(top_k) < _nucleus_size(values, top_p)
    return jnp.where(keep, values, NEG_INF), ids

  def nucleus(x, p):
    sorted_x = -jnp.sort(-x, axis=-1)
    threshold = jnp.take_along_axis(sorted_x, _nucleus_size(sorted_x, p) - 1, axis=-1)
    return jnp.where(x >= threshold, x, NEG_INF)

  values = jax.lax.cond(top_p < 1.0, nucleus, lambda x, _: x, scaled, top_p)
  return values, None


def warp(logits: jax.Array, temperature: jax.Array, top_p: jax.Array, top_k: int = 0) -> jax.Array:
  """Log-weights of the sampling distribution over the vocabulary (float32, -inf = excluded).

  With temperature 0 the result is the raw logits (sampling is then argmax).
  """
  logits = logits.astype(jnp.float32)
  scaled = logits / jnp.where(temperature > 0, temperature, 1.0)
  values, ids = _candidates(scaled, top_p, top_k)
  if ids is not None:   # scatter the k candidates back: keep ids at or above the cut-off
    cutoff = jnp.min(jnp.where(jnp.isfinite(values), values, jnp.inf), axis=-1, keepdims=True)
    values = jnp.where(scaled >= cutoff, scaled, NEG_INF)
  return jnp.where(temperature > 0, values, logits)


def sample(key: jax.Array, logits: jax.Array, temperature: jax.Array, top_p: jax.Array,
           top_k: int = 0) -> jax.Array:
  """One id per row of logits [B, V] (keys [B]), int32 [B].

  With a sampling top-k the draw is among the k candidates only (k Gumbels, not V).
  """
  logits = logits.astype(jnp.float32)
  scaled = logits / jnp.where(temperature > 0, temperature, 1.0)
  values, ids = _candidates(scaled, top_p, top_k)
  drawn = jax.vmap(jax.random.categorical)(key, values)
  if ids is not None:
    drawn = jnp.take_along_axis(ids, drawn[:, None], axis=-1)[:, 0]
  return jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


def _above(logits: jax.Array, token: jax.Array) -> jax.Array:
  """[..., V] bool: the ids ranked above `token` [...] (higher logit, ties by lower id)."""
  chosen = jnp.take_along_axis(logits, token[..., None], axis=-1)
  ids = jnp.arange(logits.shape[-1])
  return (logits > chosen) | ((logits == chosen) & (ids < token[..., None]))


def rank_of(logits: jax.Array, token: jax.Array) -> jax.Array:
  """Rank of `token` [...] under `logits` [..., V]: ids strictly above it, ties by lower id.

  `rank < K` is exactly membership in `jax.lax.top_k(logits, K)`, for a traced K.
  """
  return jnp.sum(_above(logits, token), axis=-1)


def in_top_k(logits: jax.Array, token: jax.Array, k: jax.Array) -> jax.Array:
  """Whether `token` is among the k highest `logits` (bool [...]); k = 0 rejects all.

  `k` is a scalar or broadcasts against `token` (a K per position).
  """
  return rank_of(logits, token) < k


def in_nucleus(logits: jax.Array, token: jax.Array, top_p: jax.Array) -> jax.Array:
  """Whether `token` [...] is inside the top-p nucleus of softmax(`logits` [..., V]).

  The nucleus is the fewest highest-probability ids (ties to the lower id) whose
  mass reaches `top_p`, as nucleus sampling keeps (`warp`): an id is in it when
  the mass ranked above it is < top_p. The top id always is; an id of
  probability 0 never is (so top_p = 1 on a warped distribution is its support).
  No sort: the mass above one token is a masked sum over the vocabulary.
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  above = _above(logits, token)
  mass_above = jnp.sum(jnp.where(above, probs, 0.0), axis=-1)
  chosen = jnp.take_along_axis(probs, token[..., None], axis=-1)[..., 0]
  first = ~jnp.any(above, axis=-1)
  return first | ((mass_above < top_p) & (chosen > 0))
