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


def _top_k_filter(logits: jax.Array, k: int) -> jax.Array:
  if k <= 0 or k >= logits.shape[-1]:
    return logits
  kth = jax.lax.top_k(logits, k)[0][..., -1:]
  return jnp.where(logits < kth, NEG_INF, logits)


def _top_p_filter(logits: jax.Array, top_p: jax.Array) -> jax.Array:
  """Keeps the smallest set of most likely ids whose mass reaches top_p (at least one)."""
  sorted_logits = -jnp.sort(-logits, axis=-1)
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  num_kept = jnp.maximum(jnp.sum(mass_before < top_p, axis=-1, keepdims=True), 1)
  threshold = jnp.take_along_axis(sorted_logits, num_kept - 1, axis=-1)
  return jnp.where(logits >= threshold, logits, NEG_INF)


def warp(logits: jax.Array, temperature: jax.Array, top_p: jax.Array, top_k: int = 0) -> jax.Array:
  """Log-weights of the sampling distribution (float32, -inf = excluded).

  With temperature 0 the result is the raw logits (sampling is then argmax).
  """
  logits = logits.astype(jnp.float32)
  safe_t = jnp.where(temperature > 0, temperature, 1.0)
  warped = _top_k_filter(logits / safe_t, top_k)
  # The sort of a full vocabulary only runs when a nucleus is asked for.
  warped = jax.lax.cond(top_p < 1.0, _top_p_filter, lambda l, _: l, warped, top_p)
  return jnp.where(temperature > 0, warped, logits)


def sample(key: jax.Array, logits: jax.Array, temperature: jax.Array, top_p: jax.Array,
           top_k: int = 0) -> jax.Array:
  """One id per row of logits [B, V] (keys [B]), int32 [B]."""
  warped = warp(logits, temperature, top_p, top_k)
  drawn = jax.vmap(jax.random.categorical)(key, warped)
  return jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


def rank_of(logits: jax.Array, token: jax.Array) -> jax.Array:
  """Rank of `token` [...] under `logits` [..., V]: ids strictly above it, ties by lower id.

  `rank < K` is exactly membership in `jax.lax.top_k(logits, K)`, for a traced K.
  """
  chosen = jnp.take_along_axis(logits, token[..., None], axis=-1)
  ids = jnp.arange(logits.shape[-1])
  above = (logits > chosen) | ((logits == chosen) & (ids < token[..., None]))
  return jnp.sum(above, axis=-1)


def in_top_k(logits: jax.Array, token: jax.Array, k: jax.Array) -> jax.Array:
  """Whether `token` is among the k highest `logits` (bool [...]); k = 0 rejects all."""
  return rank_of(logits, token) < k
