"""Distillation divergences between a teacher and a student, in float32, masked.

Conventions (pinned by tests/test_losses.py):

* ``p`` is the teacher's distribution, ``q`` the student's, both
  ``softmax(logits / temperature)`` computed in float32 whatever the input dtype.
  No ``temperature**2`` rescaling is applied.
* Names:

  - ``"fkl"``: forward KL, ``KL(p || q) = sum_v p_v (log p_v - log q_v)``.
  - ``"rkl"``: reverse KL, ``KL(q || p)``.
  - ``"jsd"``: generalised Jensen-Shannon divergence in TRL's convention
    (``GKDTrainer.generalized_jsd_loss``, GKD paper eq. 1):
    ``beta * KL(p || m) + (1 - beta) * KL(q || m)`` with the mixture
    ``m = beta * p + (1 - beta) * q``. The endpoints are special-cased exactly as
    TRL does: ``beta = 0`` is ``fkl`` and ``beta = 1`` is ``rkl`` (the interior
    formula itself tends to 0 at both ends, so the family is discontinuous there).
  - ``"tvd"``: total variation, ``0.5 * sum_v |p_v - q_v|``.
  - ``"skl"``: DistiLLM's skew KL, ``KL(p || alpha * p + (1 - alpha) * q)``.
    DistiLLM's code drops the constant teacher entropy; we keep it so that the
    value is a true divergence (0 for identical inputs) — the gradient is the same.

* ``-inf`` logits (forbidden tokens): in the KL-type divergences, vocabulary entries
  where either model's logit is infinite contribute 0 to value and gradient (the
  "inf mask" of DistiLLM; also gives ``0 * log 0 = 0``). TVD is exact there.
* Optional sparse teacher (``top_k``): keep the teacher's top-k ids per position and
  renormalise BOTH distributions over those ids before taking the divergence.
* Reductions over the distilled positions (``mask`` [B, L] bool):

  - ``"token"``: token-weighted mean over all masked-in positions (default).
  - ``"sequence"``: masked mean within each sequence, then the mean over sequences
    that have at least one masked-in position (the SKD paper's reduction).
  - ``"sum"`` / ``"sequence_sum"``: the ``(sum, count)`` pairs behind the two means.
    Pairs add up across micro-batches and hosts, so ``sum(sums) / sum(counts)`` is
    exact (a sequence never straddles two micro-batches).

  An all-zero mask gives a loss of 0 (the count is clamped to 1 in the division).
"""
from collections.abc import Callable
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

DIVERGENCES = ("fkl", "rkl", "jsd", "tvd", "skl")
REDUCTIONS = ("token", "sequence", "sum", "sequence_sum")


def log_probs(logits: Array, temperature: float = 1.0) -> Array:
  """float32 ``log_softmax(logits / temperature)`` over the last axis."""
  return jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)


def _kl(log_a: Array, log_b: Array, valid: Array) -> Array:
  """``sum_v a_v (log a_v - log b_v)`` over the entries where ``valid``.

  Invalid entries are replaced by 0 before any arithmetic (the "double where"), so
  neither the value nor the gradient can see an ``inf - inf`` or ``0 * inf``.
  """
  log_a = jnp.where(valid, log_a, 0.0)
  log_b = jnp.where(valid, log_b, 0.0)
  terms = jnp.exp(log_a) * (log_a - log_b)
  return jnp.sum(jnp.where(valid, terms, 0.0), axis=-1)


def _mixture_log_probs(log_p: Array, log_q: Array, weight: float,
                       valid: Array) -> Array:
  """``log(weight * p + (1 - weight) * q)``; ``weight`` is a static float."""
  if weight == 0.0:
    return log_q
  if weight == 1.0:
    return log_p
  log_p = jnp.where(valid, log_p, 0.0)
  log_q = jnp.where(valid, log_q, 0.0)
  return jnp.logaddexp(log_p + math.log(weight), log_q + math.log1p(-weight))


def divergence_from_log_probs(name: str, log_p: Array, log_q: Array, *,
                              valid: Array | None = None, beta: float = 0.5,
                              alpha: float = 0.1) -> Array:
  """Per-position divergence from normalised log-probs.

  Args:
    name: one of ``DIVERGENCES``.
    log_p: teacher log-probs [..., V] float32.
    log_q: student log-probs [..., V] float32.
    valid: [..., V] bool, vocabulary entries that take part in the KL-type sums
      (default: where both log-probs are finite).
    beta: JSD interpolation (static float in [0, 1], TRL's convention).
    alpha: skew of ``"skl"`` (static float in [0, 1)).

  Returns:
    [...] float32 divergence values.
  """
  if valid is None:
    valid = jnp.isfinite(log_p) & jnp.isfinite(log_q)
  if name == "fkl":
    return _kl(log_p, log_q, valid)
  if name == "rkl":
    return _kl(log_q, log_p, valid)
  if name == "jsd":
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
      raise ValueError(f"jsd beta must be in [0, 1], got {beta}")
    if beta == 0.0:  # TRL: exactly KL(teacher || student).
      return _kl(log_p, log_q, valid)
    if beta == 1.0:  # TRL: exactly KL(student || teacher).
      return _kl(log_q, log_p, valid)
    log_m = _mixture_log_probs(log_p, log_q, beta, valid)
    return beta * _kl(log_p, log_m, valid) + (1.0 - beta) * _kl(
        log_q, log_m, valid)
  if name == "tvd":
    return 0.5 * jnp.sum(jnp.abs(jnp.exp(log_p) - jnp.exp(log_q)), axis=-1)
  if name == "skl":
    alpha = float(alpha)
    if not 0.0 <= alpha < 1.0:
      raise ValueError(f"skl alpha must be in [0, 1), got {alpha}")
    log_m = _mixture_log_probs(log_p, log_q, alpha, valid)
    return _kl(log_p, log_m, valid)
  raise ValueError(f"unknown divergence {name!r}; expected one of {DIVERGENCES}")


def _sparse_teacher_logits(teacher_logits: Array, student_logits: Array,
                           top_k: int) -> tuple[Array, Array]:
  """Both models' logits at the teacher's top-k ids: two [..., k] arrays."""
  _, ids = jax.lax.top_k(teacher_logits, top_k)
  take = lambda x: jnp.take_along_axis(x, ids, axis=-1)
  return take(teacher_logits), take(student_logits)


def token_divergence(name: str, teacher_logits: Array, student_logits: Array, *,
                     temperature: float = 1.0, beta: float = 0.5,
                     alpha: float = 0.1, top_k: int | None = None) -> Array:
  """Per-position divergence D(teacher, student).

  Args:
    name: one of ``DIVERGENCES`` (see the module docstring for the formulas).
    teacher_logits: [B, L, V] any float dtype (cast to float32).
    student_logits: [B, L, V] any float dtype (cast to float32).
    temperature: softmax temperature applied to both models.
    beta: JSD interpolation, TRL's convention (0 = fkl, 1 = rkl).
    alpha: skew of ``"skl"``.
    top_k: if set, both distributions are renormalised over the teacher's top-k
      ids at each position.

  Returns:
    [B, L] float32 divergence per position (no mask applied).
  """
  teacher_logits = teacher_logits.astype(jnp.float32)
  student_logits = student_logits.astype(jnp.float32)
  if top_k is not None:
    teacher_logits, student_logits = _sparse_teacher_logits(
        teacher_logits, student_logits, top_k)
  # Forbidden tokens are judged on the raw logits: log_softmax keeps -inf as -inf.
  valid = jnp.isfinite(teacher_logits) & jnp.isfinite(student_logits)
  return divergence_from_log_probs(
      name, log_probs(teacher_logits, temperature),
      log_probs(student_logits, temperature), valid=valid, beta=beta,
      alpha=alpha)


def masked_sum_and_count(values: Array, mask: Array, *,
                         per_sequence: bool = False) -> tuple[Array, Array]:
  """Masked ``(sum, count)`` of per-position values; ratios give the means.

  Args:
    values: [B, L] per-position values.
    mask: [B, L] bool, positions that count.
    per_sequence: False: (sum of masked values, number of masked-in positions).
      True: (sum over sequences of each sequence's masked mean, number of
      sequences with at least one masked-in position).

  Returns:
    Two float32 scalars. Masked-out positions contribute nothing to either the
    value or the gradient, whatever their values.
  """
  mask = mask.astype(bool)
  values = jnp.where(mask, values.astype(jnp.float32), 0.0)
  counts = jnp.sum(mask, axis=-1).astype(jnp.float32)
  if not per_sequence:
    return jnp.sum(values), jnp.sum(counts)
  return _per_sequence_sum_and_count(jnp.sum(values, axis=-1), counts)


def _per_sequence_sum_and_count(seq_sums: Array,
                                seq_counts: Array) -> tuple[Array, Array]:
  """(sum of per-sequence means, number of non-empty sequences) from [B] sums."""
  nonempty = seq_counts > 0
  means = seq_sums / jnp.maximum(seq_counts, 1.0)
  return jnp.sum(jnp.where(nonempty, means, 0.0)), jnp.sum(
      nonempty.astype(jnp.float32))


def safe_mean(total: Array, count: Array) -> Array:
  """``total / count`` with an empty count giving 0 instead of NaN."""
  return total / jnp.maximum(count, 1.0)


def _check_reduction(reduction: str):
  if reduction not in REDUCTIONS:
    raise ValueError(f"unknown reduction {reduction!r}; expected {REDUCTIONS}")


def divergence(name: str, teacher_logits: Array, student_logits: Array,
               mask: Array, *, temperature: float = 1.0, beta: float = 0.5,
               alpha: float = 0.1, reduction: str = "token",
               top_k: int | None = None) -> Array | tuple[Array, Array]:
  """Masked divergence D(teacher, student) over the distilled positions.

  Args:
    name: ``"fkl" | "rkl" | "jsd" | "tvd" | "skl"`` (see the module docstring).
    teacher_logits: [B, L, V] (gradient is not stopped here; callers do that).
    student_logits: [B, L, V].
    mask: [B, L] bool, the distilled positions.
    temperature: softmax temperature of both models.
    beta: JSD interpolation in TRL's convention (0 = fkl, 1 = rkl).
    alpha: skew of ``"skl"``.
    reduction: ``"token"`` (masked token mean, scalar), ``"sequence"`` (mean of
      per-sequence means, scalar), ``"sum"`` / ``"sequence_sum"`` (the
      ``(sum, count)`` pairs behind them).
    top_k: sparse teacher: renormalise both models over the teacher's top-k ids.

  Returns:
    A float32 scalar, or a ``(sum, count)`` pair for the ``*sum`` reductions.
  """
  _check_reduction(reduction)
  values = token_divergence(name, teacher_logits, student_logits,
                            temperature=temperature, beta=beta, alpha=alpha,
                            top_k=top_k)
  per_sequence = reduction in ("sequence", "sequence_sum")
  total, count = masked_sum_and_count(values, mask, per_sequence=per_sequence)
  if reduction in ("sum", "sequence_sum"):
    return total, count
  return safe_mean(total, count)


HeadFn = Callable[[Any, Array], Array]


def token_cross_entropy(logits: Array, targets: Array) -> Array:
  """``-log softmax(logits)[target]`` per position, float32.

  Args:
    logits: [B, L, V] any float dtype.
    targets: [B, L] int ids.

  Returns:
    [B, L] float32 negative log-likelihoods.
  """
  logp = log_probs(logits)
  return -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32),
                              axis=-1)[..., 0]


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_weighted_sum(token_fn, chunk_size, params, consts, inputs,
                        const_inputs, mask, weights):
  """Value of the chunked weighted sum (no gradient work when not differentiated)."""
  def body(total, chunk):
    xs, cs, m = chunk
    return total + _chunk_weighted_sum(token_fn, params, consts, xs, cs, m,
                                       weights), None

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
    value, (g_params, g_inputs) = grad_fn(token_fn, params, consts, xs, cs, m,
                                          weights)
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
  computed in the same scan step as its value (a ``jax.custom_vjp``: the loss is a
  scalar, so its gradient is known up to the incoming cotangent), as in fused
  linear-cross-entropy kernels: no [B, L, V] buffer is stored and nothing is
  recomputed in the backward pass. Peak memory grows with B * chunk_size * V plus
  one gradient buffer for ``params``.

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
    per_sequence: pair semantics of ``masked_sum_and_count``.

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


def chunked_divergence(name: str, teacher_hidden: Array, student_hidden: Array,
                       teacher_head: HeadFn, student_head: HeadFn, mask: Array,
                       *, teacher_params: Any, student_params: Any,
                       chunk_size: int = 128, reduction: str = "token",
                       **kwargs) -> tuple[Array, Array]:
  """Memory-bounded divergence from final hidden states: never builds [B, L, V].

  Equal to ``divergence(name, teacher_head(teacher_params, teacher_hidden),
  student_head(student_params, student_hidden), mask, reduction="sum")`` (or
  ``"sequence_sum"``), computed chunk by chunk with the gradient fused into the
  forward scan (see ``chunked_sum_and_count``). The teacher side is under
  ``stop_gradient``; gradients flow to ``student_params`` and ``student_hidden``.

  Args:
    name: divergence name, see ``divergence``.
    teacher_hidden: [B, L, D_teacher] final (normed) hidden states.
    student_hidden: [B, L, D_student].
    teacher_head: ``(teacher_params, hidden [B, C, D_t]) -> logits [B, C, V]``.
    student_head: ``(student_params, hidden [B, C, D_s]) -> logits [B, C, V]``.
    mask: [B, L] bool, the distilled positions.
    teacher_params: pytree passed to ``teacher_head`` (gradient stopped).
    student_params: pytree passed to ``student_head`` (differentiated).
    chunk_size: positions per chunk.
    reduction: ``"token"`` or ``"sequence"``: which ``(sum, count)`` pair to
      return (the ``"sum"`` / ``"sequence_sum"`` spellings are accepted too).
    **kwargs: ``temperature``, ``beta``, ``alpha``, ``top_k`` of
      ``token_divergence`` (static Python values).

  Returns:
    ``(sum, count)`` float32 scalars.
  """
  _check_reduction(reduction)

  def token_fn(s_params, t_params, s_hidden, t_hidden):
    return token_divergence(name, teacher_head(t_params, t_hidden),
                            student_head(s_params, s_hidden), **kwargs)

  return chunked_sum_and_count(
      token_fn, student_params, (student_hidden,), mask, consts=teacher_params,
      const_inputs=(teacher_hidden,), chunk_size=chunk_size,
      per_sequence=reduction in ("sequence", "sequence_sum"))


def chunked_cross_entropy(hidden: Array, head: HeadFn, params: Any,
                          targets: Array, mask: Array, *,
                          chunk_size: int = 128,
                          reduction: str = "token") -> tuple[Array, Array]:
  """Memory-bounded ``(sum, count)`` of ``token_cross_entropy`` over ``mask``.

  Args:
    hidden: [B, L, D] final hidden states.
    head: ``(params, hidden [B, C, D]) -> logits [B, C, V]``.
    params: pytree passed to ``head`` (differentiated).
    targets: [B, L] int ids predicted at each position.
    mask: [B, L] bool, positions that count.
    chunk_size: positions per chunk.
    reduction: ``"token"`` or ``"sequence"`` pair, as ``chunked_divergence``.

  Returns:
    ``(sum, count)`` float32 scalars.
  """
  _check_reduction(reduction)
  return chunked_sum_and_count(
      lambda p, _, h, y: token_cross_entropy(head(p, h), y), params,
      (hidden,), mask, const_inputs=(targets,), chunk_size=chunk_size,
      per_sequence=reduction in ("sequence", "sequence_sum"))
