"""A memory-bounded masked ``(sum, count)`` engine with a fused backward pass.

``chunked_sum_and_count(token_fn, params, inputs, mask)`` equals
``losses.masked_sum_and_count(token_fn(params, ..., *inputs), mask)`` but cuts the
positions into chunks and scans them, so per-position intermediates of size
[B, L, V] (logits) never exist at once. Under differentiation each chunk's
gradient is taken in the same scan step as its value (a ``jax.custom_vjp``): the
loss is a scalar, so its gradient is known up to the incoming cotangent, as in
fused linear-cross-entropy kernels. A chunk with no masked-in position (the prompt
of a distillation row) is skipped under ``lax.cond``: its value and gradients are
exact zeros either way, so the result is the same and the LM-head work is not done.
``skd_jax.losses.chunked_divergence`` and ``chunked_cross_entropy`` are built on it.
"""
from collections.abc import Callable
import functools
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def _pad_to_multiple(x: Array, multiple: int, axis: int = 1) -> Array:
  pad = -x.shape[axis] % multiple
  if pad == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, pad)
  return jnp.pad(x, widths)


def _split_chunks(x: Array, chunk_size: int) -> Array:
  """[B, L, ...] -> [ceil(L / chunk_size), B, C, ...] (the tail zero-padded)."""
  x = _pad_to_multiple(x, chunk_size)
  b, l = x.shape[:2]
  x = x.reshape((b, l // chunk_size, chunk_size) + x.shape[2:])
  return jnp.moveaxis(x, 1, 0)


def _merge_chunks(x: Array, length: int) -> Array:
  """Inverse of ``_split_chunks``: [N, B, C, ...] -> [B, length, ...]."""
  x = jnp.moveaxis(x, 0, 1)
  x = x.reshape((x.shape[0], -1) + x.shape[3:])
  return x[:, :length]


def _chunk_weighted_sum(token_fn, params, consts, chunk_inputs,
                        chunk_const_inputs, chunk_mask, weights):
  """``sum_{b, c} weights[b] * token_fn(...)[b, c]`` over the chunk's mask."""
  values = token_fn(params, consts, *chunk_inputs, *chunk_const_inputs)
  return jnp.sum(jnp.where(chunk_mask, values, 0.0) * weights[:, None])


def _chunks(chunk_size, inputs, const_inputs, mask):
  split = lambda xs: tuple(_split_chunks(x, chunk_size) for x in xs)
  return split(inputs), split(const_inputs), _split_chunks(mask, chunk_size)


def _unless_empty(chunk_mask, compute, zeros):
  """``compute()`` when the chunk has a masked-in position, else ``zeros()``.

  A fully masked chunk contributes exact zeros to the value and the gradients, so
  skipping it changes no sum; it only saves the chunk's LM-head matmuls and
  vocabulary passes (a distillation row's prompt chunks). The predicate is one
  reduction of the chunk's mask, the same on every device under SPMD.
  """
  return jax.lax.cond(jnp.any(chunk_mask), compute, zeros)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_weighted_sum(token_fn, chunk_size, params, consts, inputs,
                        const_inputs, mask, weights):
  """Value of the chunked weighted sum (no gradient work when not differentiated)."""
  def body(total, chunk):
    xs, cs, m = chunk
    value = _unless_empty(
        m, lambda: _chunk_weighted_sum(token_fn, params, consts, xs, cs, m, weights),
        lambda: jnp.zeros((), jnp.float32))
    return total + value, None

  total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32),
                          _chunks(chunk_size, inputs, const_inputs, mask))
  return total


def _fused_weighted_sum_fwd(token_fn, chunk_size, params, consts, inputs,
                            const_inputs, mask, weights):
  """Value and gradients in one pass over the chunks.

  Each chunk's gradient is taken while its logits are live, so the backward pass
  needs no recomputation and nothing of size [B, L, V] is ever stored; the
  parameter gradient is accumulated in the parameters' dtype (float32 masters).
  """
  grad_fn = jax.value_and_grad(_chunk_weighted_sum, argnums=(1, 3))

  def body(carry, chunk):
    total, param_grads = carry
    xs, cs, m = chunk
    value, (g_params, g_inputs) = _unless_empty(
        m, lambda: grad_fn(token_fn, params, consts, xs, cs, m, weights),
        lambda: (jnp.zeros((), jnp.float32),
                 (jax.tree.map(jnp.zeros_like, params), tuple(map(jnp.zeros_like, xs)))))
    param_grads = jax.tree.map(jnp.add, param_grads, g_params)
    return (total + value, param_grads), g_inputs

  init = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
  (total, param_grads), input_grads = jax.lax.scan(
      body, init, _chunks(chunk_size, inputs, const_inputs, mask))
  length = mask.shape[1]
  input_grads = tuple(_merge_chunks(g, length) for g in input_grads)
  return total, (param_grads, input_grads)


def _fused_weighted_sum_bwd(token_fn, chunk_size, residuals, cotangent):
  del token_fn, chunk_size
  param_grads, input_grads = residuals
  scale = lambda g: (g * cotangent).astype(g.dtype)
  return (jax.tree.map(scale, param_grads), None,
          tuple(scale(g) for g in input_grads), None, None, None)


_fused_weighted_sum.defvjp(_fused_weighted_sum_fwd, _fused_weighted_sum_bwd)


def chunked_sum_and_count(token_fn: Callable[..., Array], params: Any,
                          inputs: tuple[Array, ...], mask: Array, *,
                          consts: Any = None,
                          const_inputs: tuple[Array, ...] = (),
                          chunk_size: int = 128,
                          per_sequence: bool = False) -> tuple[Array, Array]:
  """``masked_sum_and_count(token_fn(...), mask)`` chunk by chunk, fused backward.

  The positions are cut into chunks of ``chunk_size`` (the tail is padded and
  masked out) and scanned. Under differentiation the gradient of each chunk is
  computed in the same scan step as its value, so no [B, L, V] buffer is stored
  and nothing is recomputed in the backward pass. A chunk with no masked-in
  position is skipped (same result, less work). Peak memory grows with
  B * chunk_size * V plus one gradient buffer for ``params``. Reverse mode only
  (no ``jax.jvp``, no second derivatives).

  Args:
    token_fn: ``(params, consts, *chunk_inputs, *chunk_const_inputs) -> [B, C]``
      per-position values; each chunk input is the [B, C, ...] slice of the
      matching array. Must not close over traced values (pass them in).
    params: pytree, differentiated (e.g. the student's LM head).
    inputs: arrays [B, L, ...], differentiated (e.g. student hidden states).
    mask: [B, L] bool, positions that count.
    consts: pytree, not differentiated (e.g. the teacher's LM head).
    const_inputs: arrays [B, L, ...], not differentiated (e.g. teacher hidden
      states, integer targets).
    chunk_size: positions per chunk.
    per_sequence: False: (sum of masked values, number of masked-in positions).
      True: (sum over sequences of each sequence's masked mean, number of
      sequences with at least one masked-in position).

  Returns:
    ``(sum, count)`` float32 scalars; gradients flow to ``params`` and ``inputs``
    through ``sum`` only.
  """
  mask = mask.astype(bool)
  chunk_size = max(1, min(chunk_size, mask.shape[1]))
  seq_counts = jnp.sum(mask, axis=-1).astype(jnp.float32)
  if per_sequence:
    # Sum of per-sequence means = sum of values weighted by 1 / row count.
    weights = jnp.where(seq_counts > 0, 1.0 / jnp.maximum(seq_counts, 1.0), 0.0)
    count = jnp.sum((seq_counts > 0).astype(jnp.float32))
  else:
    weights = jnp.ones_like(seq_counts)
    count = jnp.sum(seq_counts)
  consts = jax.lax.stop_gradient(consts)
  const_inputs = tuple(jax.lax.stop_gradient(x) for x in const_inputs)
  total = _fused_weighted_sum(token_fn, chunk_size, params, consts,
                              tuple(inputs), const_inputs, mask, weights)
  return total, count
