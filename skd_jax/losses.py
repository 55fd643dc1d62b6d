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

  Each name is an entry of the registry in ``skd_jax.divergences``: ``FKL()``,
  ``RKL()``, ``JSD(beta)``, ``TVD()``, ``SKL(alpha)``, small frozen dataclasses that
  carry their formula; ``register_divergence`` adds one (docs/EXTENDING.md).
  Functions here take a name plus hyperparameters (``beta=``) or an entry.

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
from typing import Any

import jax
import jax.numpy as jnp

from skd_jax.chunked import chunked_sum_and_count
from skd_jax.divergences import (FKL, JSD, RKL, SKL, TVD, Divergence, get_divergence,
                                 register_divergence)
from skd_jax.divergences import REGISTRY as DIVERGENCES

Array = jax.Array

__all__ = [
    "DIVERGENCES", "FKL", "JSD", "RKL", "SKL", "TVD", "Divergence", "chunked_cross_entropy",
    "chunked_divergence", "chunked_sum_and_count", "divergence", "divergence_from_log_probs",
    "get_divergence", "log_probs", "masked_sum_and_count", "register_divergence",
    "safe_mean", "shared_vocab", "shared_vocab_logits", "token_cross_entropy",
    "token_divergence",
]
REDUCTIONS = ("token", "sequence", "sum", "sequence_sum")


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


def divergence_from_log_probs(spec: str | Divergence, log_p: Array, log_q: Array,
                              **hyperparameters) -> Array:
  """Per-position divergence from normalised log-probs (-inf = probability 0).

  Args:
    spec: a registered name (``DIVERGENCES``) or a ``Divergence`` entry.
    log_p: teacher log-probs [..., V] float32.
    log_q: student log-probs [..., V] float32.
    **hyperparameters: the entry's fields, e.g. ``beta=`` (jsd), ``alpha=`` (skl);
      see ``divergences.get_divergence``.

  Returns:
    [...] float32 divergence values (+inf where a KL is infinite).
  """
  return get_divergence(spec, **hyperparameters)(log_p, log_q)


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


def token_divergence(name: str | Divergence, teacher_logits: Array,
                     student_logits: Array, *, temperature: float = 1.0,
                     top_k: int | None = None, vocab_size: int | None = None,
                     **hyperparameters) -> Array:
  """Per-position divergence D(teacher, student).

  Args:
    name: a registered name (``DIVERGENCES``, see the module docstring for the
      formulas) or a ``Divergence`` entry such as ``JSD(beta=0.3)``.
    teacher_logits: [B, L, V_t] any float dtype (cast to float32); may hold -inf.
    student_logits: [B, L, V_s] any float dtype (cast to float32); may hold -inf.
    temperature: softmax temperature applied to both models.
    top_k: if set, both distributions are renormalised over the teacher's top-k
      ids at each position.
    vocab_size: compare the first ``vocab_size`` ids of both models (None: V_t
      must equal V_s).
    **hyperparameters: the entry's fields: ``beta=`` (jsd, TRL's convention,
      0 = fkl, 1 = rkl), ``alpha=`` (skl), or a registered entry's own; fields of
      other entries are ignored.

  Returns:
    [B, L] float32 divergence per position (no mask applied).
  """
  entry = get_divergence(name, **hyperparameters)
  teacher_logits, student_logits = shared_vocab_logits(teacher_logits, student_logits,
                                                       vocab_size)
  teacher_logits = teacher_logits.astype(jnp.float32)
  student_logits = student_logits.astype(jnp.float32)
  if top_k is not None:
    teacher_logits, student_logits = _sparse_teacher_logits(
        teacher_logits, student_logits, top_k)
  return entry(log_probs(teacher_logits, temperature),
               log_probs(student_logits, temperature))


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


def divergence(name: str | Divergence, teacher_logits: Array, student_logits: Array,
               mask: Array, *, temperature: float = 1.0, reduction: str = "token",
               top_k: int | None = None, vocab_size: int | None = None,
               **hyperparameters) -> Array | tuple[Array, Array]:
  """Masked divergence D(teacher, student) over the distilled positions.

  Args:
    name: ``"fkl" | "rkl" | "jsd" | "tvd" | "skl"`` (see the module docstring),
      any name added with ``register_divergence``, or an entry (``JSD(0.3)``).
    teacher_logits: [B, L, V_t] (gradient is not stopped here; callers do that).
    student_logits: [B, L, V_s].
    mask: [B, L] bool, the distilled positions.
    temperature: softmax temperature of both models.
    reduction: ``"token"`` (masked token mean, scalar), ``"sequence"`` (mean of
      per-sequence means, scalar), ``"sum"`` / ``"sequence_sum"`` (the
      ``(sum, count)`` pairs behind them).
    top_k: sparse teacher: renormalise both models over the teacher's top-k ids.
    vocab_size: compare the first ``vocab_size`` ids (None: V_t must equal V_s).
    **hyperparameters: ``beta=`` (jsd, TRL's convention: 0 = fkl, 1 = rkl),
      ``alpha=`` (skl), or a registered entry's own fields.

  Returns:
    A float32 scalar, or a ``(sum, count)`` pair for the ``*sum`` reductions.
  """
  _check_reduction(reduction)
  values = token_divergence(name, teacher_logits, student_logits,
                            temperature=temperature, top_k=top_k,
                            vocab_size=vocab_size, **hyperparameters)
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


def chunked_divergence(name: str | Divergence, teacher_hidden: Array, student_hidden: Array,
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
    name: divergence name or entry, see ``divergence``.
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
    **kwargs: ``temperature``, ``top_k``, ``vocab_size`` and the hyperparameters
      (``beta``, ``alpha``, ...) of ``token_divergence`` (static Python values). With ``vocab_size`` each chunk's
      logits are cut after the heads; to never form the wider logits at all, give
      heads whose weights are already cut (as ``skd_jax.train.step`` does).

  Returns:
    ``(sum, count)`` float32 scalars.
  """
  _check_reduction(reduction)
  hyper = {k: kwargs.pop(k) for k in list(kwargs)
           if k not in ("temperature", "top_k", "vocab_size")}
  entry = get_divergence(name, **hyper)  # Resolved (and validated) once, not per chunk.

  def token_fn(s_params, t_params, s_hidden, t_hidden):
    return token_divergence(entry, teacher_head(t_params, t_hidden),
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
