"""Distillation divergences between a teacher and a student, in float32, masked.

Conventions (pinned by tests/test_losses.py and tests/test_losses_inf.py):

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

* ``-inf`` logits (forbidden tokens) are probability 0, with ``0 * log 0 = 0``:
  every value is exact. ``jsd`` (0 < beta < 1), ``skl`` (0 < alpha < 1) and
  ``tvd`` are finite; ``fkl`` / ``rkl`` (and ``jsd`` at beta 0 / 1, ``skl`` at
  alpha 0) are ``+inf`` where the first distribution has mass on an id the second
  forbids — never a wrong finite number. Each KL term goes through a double
  ``where``: an entry with ``a_v = 0`` contributes 0, one with ``a_v > 0 = b_v``
  turns the value into ``+inf``, and neither lets an ``inf - inf`` or ``0 * inf``
  reach the value or the gradient, so gradients are finite everywhere (zero
  through a ``+inf`` value).
* Shared vocabulary (``vocab_size=N``): both models' logits are cut to their first
  N ids before anything else (Qwen2-7B has 152,064 rows and Qwen2-0.5B 151,936:
  one tokenizer plus padding rows). ``None``: the vocabularies must match.
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

The memory-bounded versions (``chunked_divergence``, ``chunked_cross_entropy``)
run on ``skd_jax.chunked``'s engine (re-exported here as ``chunked_sum_and_count``).
"""
from collections.abc import Callable
import math
from typing import Any

import jax
import jax.numpy as jnp

from skd_jax.chunked import chunked_sum_and_count

Array = jax.Array

DIVERGENCES = ("fkl", "rkl", "jsd", "tvd", "skl")
REDUCTIONS = ("token", "sequence", "sum", "sequence_sum")
_NEG_INF = -jnp.inf


def log_probs(logits: Array, temperature: float = 1.0) -> Array:
  """float32 ``log_softmax(logits / temperature)`` over the last axis."""
  return jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)


def shared_vocab(teacher_vocab: int, student_vocab: int,
                 vocab_size: int | None = None) -> int:
  """How many leading vocabulary ids the two models are compared on.

  Args:
    teacher_vocab, student_vocab: the models' logit widths.
    vocab_size: the shared size N (compare ids 0 .. N - 1), or None: the widths
      must match.

  Raises:
    ValueError: naming both sizes and the fix.
  """
  small = min(teacher_vocab, student_vocab)
  if vocab_size is None:
    if teacher_vocab != student_vocab:
      raise ValueError(
          f"teacher vocabulary {teacher_vocab} != student vocabulary {student_vocab}. "
          "If the extra rows are padding of one tokenizer (Qwen2-7B vs 0.5B), compare "
          f"the shared ids only: --config.sampler.shared_vocab_size={small} "
          f"(LossConfig.shared_vocab_size / vocab_size={small}).")
    return teacher_vocab
  if not 0 < int(vocab_size) <= small:
    raise ValueError(f"shared vocabulary size {vocab_size} must be in [1, {small}] "
                     f"(teacher {teacher_vocab}, student {student_vocab}).")
  return int(vocab_size)


def _positive(log_x: Array) -> Array:
  """Where a log-probability is not -inf (NaN stays in, so it propagates)."""
  return log_x != _NEG_INF


def _kl(log_a: Array, log_b: Array) -> Array:
  """Exact ``sum_v a_v (log a_v - log b_v)`` with ``0 log 0 = 0``.

  An entry with ``a_v = 0`` contributes 0; one with ``a_v > 0 = b_v`` makes the
  value +inf (through a constant, so its gradient is zero). The other entries are
  computed on inputs the double ``where`` made finite.
  """
  a_pos, b_pos = _positive(log_a), _positive(log_b)
  both = a_pos & b_pos
  log_a = jnp.where(both, log_a, 0.0)
  log_b = jnp.where(both, log_b, 0.0)
  terms = jnp.where(both, jnp.exp(log_a) * (log_a - log_b), 0.0)
  infinite = jnp.any(a_pos & ~b_pos, axis=-1)
  return jnp.where(infinite, jnp.inf, jnp.sum(terms, axis=-1))


def _mixture_log_probs(log_p: Array, log_q: Array, weight: float) -> Array:
  """``log(weight * p + (1 - weight) * q)``; ``weight`` is a static float.

  -inf only where both are 0; ``logaddexp`` only ever sees finite inputs.
  """
  if weight == 0.0:
    return log_q
  if weight == 1.0:
    return log_p
  p_pos, q_pos = _positive(log_p), _positive(log_q)
  a = jnp.where(p_pos, log_p, 0.0) + math.log(weight)
  b = jnp.where(q_pos, log_q, 0.0) + math.log1p(-weight)
  one_sided = jnp.where(p_pos, a, jnp.where(q_pos, b, _NEG_INF))
  return jnp.where(p_pos & q_pos, jnp.logaddexp(a, b), one_sided)


def divergence_from_log_probs(name: str, log_p: Array, log_q: Array, *,
                              beta: float = 0.5, alpha: float = 0.1) -> Array:
  """Per-position divergence from normalised log-probs (-inf = probability 0).

  Args:
    name: one of ``DIVERGENCES``.
    log_p: teacher log-probs [..., V] float32.
    log_q: student log-probs [..., V] float32.
    beta: JSD interpolation (static float in [0, 1], TRL's convention).
    alpha: skew of ``"skl"`` (static float in [0, 1)).

  Returns:
    [...] float32 divergence values (+inf where a KL is infinite).
  """
  if name == "fkl":
    return _kl(log_p, log_q)
  if name == "rkl":
    return _kl(log_q, log_p)
  if name == "jsd":
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
      raise ValueError(f"jsd beta must be in [0, 1], got {beta}")
    if beta == 0.0:  # TRL: exactly KL(teacher || student).
      return _kl(log_p, log_q)
    if beta == 1.0:  # TRL: exactly KL(student || teacher).
      return _kl(log_q, log_p)
    log_m = _mixture_log_probs(log_p, log_q, beta)
    return beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)
  if name == "tvd":
    return 0.5 * jnp.sum(jnp.abs(jnp.exp(log_p) - jnp.exp(log_q)), axis=-1)
  if name == "skl":
    alpha = float(alpha)
    if not 0.0 <= alpha < 1.0:
      raise ValueError(f"skl alpha must be in [0, 1), got {alpha}")
    return _kl(log_p, _mixture_log_probs(log_p, log_q, alpha))
  raise ValueError(f"unknown divergence {name!r}; expected one of {DIVERGENCES}")


def _sparse_teacher_logits(teacher_logits: Array, student_logits: Array,
                           top_k: int) -> tuple[Array, Array]:
  """Both models' logits at the teacher's top-k ids: two [..., k] arrays."""
  _, ids = jax.lax.top_k(teacher_logits, top_k)
  take = lambda x: jnp.take_along_axis(x, ids, axis=-1)
  return take(teacher_logits), take(student_logits)


def shared_vocab_logits(teacher_logits: Array, student_logits: Array,
                        vocab_size: int | None = None) -> tuple[Array, Array]:
  """Both logits cut to their first ``shared_vocab(...)`` ids (see there)."""
  n = shared_vocab(teacher_logits.shape[-1], student_logits.shape[-1], vocab_size)
  cut = lambda x: x if x.shape[-1] == n else x[..., :n]
  return cut(teacher_logits), cut(student_logits)


def token_divergence(name: str, teacher_logits: Array, student_logits: Array, *,
                     temperature: float = 1.0, beta: float = 0.5,
                     alpha: float = 0.1, top_k: int | None = None,
                     vocab_size: int | None = None) -> Array:
  """Per-position divergence D(teacher, student).

  Args:
    name: one of ``DIVERGENCES`` (see the module docstring for the formulas).
    teacher_logits: [B, L, V_t] any float dtype (cast to float32); may hold -inf.
    student_logits: [B, L, V_s] any float dtype (cast to float32); may hold -inf.
    temperature: softmax temperature applied to both models.
    beta: JSD interpolation, TRL's convention (0 = fkl, 1 = rkl).
    alpha: skew of ``"skl"``.
    top_k: if set, both distributions are renormalised over the teacher's top-k
      ids at each position.
    vocab_size: compare the first ``vocab_size`` ids of both models (None: V_t
      must equal V_s).

  Returns:
    [B, L] float32 divergence per position (no mask applied).
  """
  teacher_logits, student_logits = shared_vocab_logits(teacher_logits, student_logits,
                                                       vocab_size)
  teacher_logits = teacher_logits.astype(jnp.float32)
  student_logits = student_logits.astype(jnp.float32)
  if top_k is not None:
    teacher_logits, student_logits = _sparse_teacher_logits(
        teacher_logits, student_logits, top_k)
  return divergence_from_log_probs(
      name, log_probs(teacher_logits, temperature),
      log_probs(student_logits, temperature), beta=beta, alpha=alpha)


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
               top_k: int | None = None,
               vocab_size: int | None = None) -> Array | tuple[Array, Array]:
  """Masked divergence D(teacher, student) over the distilled positions.

  Args:
    name: ``"fkl" | "rkl" | "jsd" | "tvd" | "skl"`` (see the module docstring).
    teacher_logits: [B, L, V_t] (gradient is not stopped here; callers do that).
    student_logits: [B, L, V_s].
    mask: [B, L] bool, the distilled positions.
    temperature: softmax temperature of both models.
    beta: JSD interpolation in TRL's convention (0 = fkl, 1 = rkl).
    alpha: skew of ``"skl"``.
    reduction: ``"token"`` (masked token mean, scalar), ``"sequence"`` (mean of
      per-sequence means, scalar), ``"sum"`` / ``"sequence_sum"`` (the
      ``(sum, count)`` pairs behind them).
    top_k: sparse teacher: renormalise both models over the teacher's top-k ids.
    vocab_size: compare the first ``vocab_size`` ids (None: V_t must equal V_s).

  Returns:
    A float32 scalar, or a ``(sum, count)`` pair for the ``*sum`` reductions.
  """
  _check_reduction(reduction)
  values = token_divergence(name, teacher_logits, student_logits,
                            temperature=temperature, beta=beta, alpha=alpha,
                            top_k=top_k, vocab_size=vocab_size)
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
    teacher_head: ``(teacher_params, hidden [B, C, D_t]) -> logits [B, C, V_t]``.
    student_head: ``(student_params, hidden [B, C, D_s]) -> logits [B, C, V_s]``.
    mask: [B, L] bool, the distilled positions.
    teacher_params: pytree passed to ``teacher_head`` (gradient stopped).
    student_params: pytree passed to ``student_head`` (differentiated).
    chunk_size: positions per chunk.
    reduction: ``"token"`` or ``"sequence"``: which ``(sum, count)`` pair to
      return (the ``"sum"`` / ``"sequence_sum"`` spellings are accepted too).
    **kwargs: ``temperature``, ``beta``, ``alpha``, ``top_k``, ``vocab_size`` of
      ``token_divergence`` (static Python values). With ``vocab_size`` each chunk's
      logits are cut after the heads; to never form the wider logits at all, give
      heads whose weights are already cut (as ``skd_jax.train.step`` does).

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
