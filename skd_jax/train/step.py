"""The jitted, pure training steps: distillation (teacher -> student) and SFT.

A batch is ``dict(tokens=int32 [B, L], loss_mask=bool [B, L])`` where
``loss_mask`` marks completion tokens (prompt and padding are False). The logit at
position t predicts token t + 1, so the loss is taken at the positions given by
``loss_positions(loss_mask)``.

Gradient accumulation: the batch is split into ``num_microbatches`` micro-batches
along its leading axis; each returns the gradient of a loss SUM together with its
count, and the update uses ``sum of gradients / total count``. This equals one
big batch exactly (not a mean of micro-batch means), and under data parallelism
(batch sharded on its leading axis over a mesh, params replicated) XLA turns the
sums into all-reduces, so the result does not depend on the device count.
"""
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from skd_jax import divergences
from skd_jax import losses
from skd_jax.models import transformer
from skd_jax.models.config import ModelConfig
from skd_jax.train.state import TrainState

Array = jax.Array
Batch = dict[str, Array]
Metrics = dict[str, tuple[Array, Array]]


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Static settings of the training objective (hashable: a jit static arg).

  Attributes:
    divergence: the registry entry (``skd_jax.divergences``): ``FKL()``,
      ``JSD(beta=0.3)``, ... A registered name is accepted too and becomes its
      entry with default hyperparameters; ``loss_config`` builds it from a config
      section's name and hyperparameter keys (``divergence="jsd", beta=0.3``).
    temperature: softmax temperature of both models in the loss.
    top_k: sparse teacher (renormalise both over the teacher's top-k), or None.
    reduction: "token" (token-weighted mean) | "sequence" (mean of per-sequence
      means, the SKD paper's).
    chunk_size: positions per chunk of the memory-bounded loss; the loss holds a
      few [B / num_microbatches, chunk_size, V] float32 buffers at a time
      (32 x 262,144-vocab x 2 rows is 64 MiB each).
    num_microbatches: gradient accumulation steps; must divide the batch size.
    remat: rematerialise each student layer in the backward pass.
    shared_vocab_size: compare the two models on their first N vocabulary ids
      (both LM heads are cut to N rows, so wider logits are never formed): for
      vocabularies that differ only by padding rows (Qwen2-7B 152,064 vs
      Qwen2-0.5B 151,936). None: the vocabularies must match (a ValueError names
      both sizes otherwise). The driver passes ``sampler.shared_vocab_size``.
  """
  divergence: divergences.Divergence | str = "fkl"
  temperature: float = 1.0
  top_k: int | None = None
  reduction: str = "token"
  chunk_size: int = 32
  num_microbatches: int = 1
  remat: bool = False
  shared_vocab_size: int | None = None

  def __post_init__(self):
    object.__setattr__(self, "divergence", divergences.get_divergence(self.divergence))
    if self.reduction not in ("token", "sequence"):
      raise ValueError(f"reduction={self.reduction!r} must be 'token' or 'sequence'.")
    if self.shared_vocab_size is not None and self.shared_vocab_size < 1:
      raise ValueError(f"shared_vocab_size={self.shared_vocab_size} must be >= 1 or None.")


def loss_config(config: Any = None, **overrides) -> LossConfig:
  """A LossConfig from a dataclass, ml_collections ConfigDict or mapping.

  Keys that are not LossConfig fields are divergence hyperparameters: the chosen
  entry takes its own (``divergence="jsd", beta=0.3`` -> ``JSD(beta=0.3)``), and
  every registered entry validates the values of its fields even when another
  divergence is chosen (a bad ``loss.beta`` is reported under "fkl" too). A key
  that is neither is an error. ``overrides`` replace keys, e.g. the driver's
  ``loss_config(config.loss, shared_vocab_size=config.sampler.shared_vocab_size)``
  (0 or None = no shared size).

  Raises:
    ValueError: an unknown key, divergence or bad hyperparameter; the message
      starts with the key, ``beta=1.5 must be in [0, 1].``, so that callers can
      prefix the config section (``loss.``).
  """
  if config is None:
    values = {}
  elif isinstance(config, LossConfig):
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
  elif hasattr(config, "to_dict"):
    values = dict(config.to_dict())
  else:
    values = dict(config)
  values.update(overrides)
  if "shared_vocab_size" in values:
    values["shared_vocab_size"] = int(values["shared_vocab_size"] or 0) or None
  fields = {f.name for f in dataclasses.fields(LossConfig)}
  hyper = {k: v for k, v in values.items() if k not in fields}
  unknown = set(hyper) - divergences.hyperparameter_names()
  if unknown:
    raise ValueError(f"{sorted(unknown)[0]}: not a loss key. LossConfig fields: "
                     f"{sorted(fields)}; divergence hyperparameters: "
                     f"{sorted(divergences.hyperparameter_names())}.")
  divergences.validate_hyperparameters(hyper)
  entry = divergences.get_divergence(values.pop("divergence", "fkl"), **hyper)
  return LossConfig(divergence=entry, **{k: v for k, v in values.items() if k in fields})


def loss_positions(loss_mask: Array) -> Array:
  """Positions whose logits are trained, from the completion-token mask.

  The logit at position t predicts token t + 1, so position t is trained iff
  token t + 1 is a completion token: the first completion token IS predicted
  (from the last prompt position) and nothing past the last completion token is
  (the last position never is, as it predicts beyond the sequence).

  Args:
    loss_mask: [B, L] bool, True at completion tokens.

  Returns:
    [B, L] bool, ``out[:, t] = loss_mask[:, t + 1]`` and ``out[:, L - 1] = False``.
  """
  loss_mask = loss_mask.astype(bool)
  return jnp.pad(loss_mask[:, 1:], ((0, 0), (0, 1)))


def next_tokens(tokens: Array) -> Array:
  """[B, L] targets: ``out[:, t] = tokens[:, t + 1]`` (last column is padding)."""
  return jnp.pad(tokens[:, 1:], ((0, 0), (0, 1)))


def _head(cfg: ModelConfig):
  """LM head as ``(params, hidden [B, C, D]) -> float32 logits [B, C, V]``."""
  return lambda params, hidden: transformer.lm_head(params, hidden, cfg)


def _head_params(params, cfg: ModelConfig, vocab_size: int | None = None):
  """The weights ``transformer.lm_head`` uses, cut to the first ``vocab_size`` ids.

  The chunked loss differentiates what it is given: passing the head alone keeps
  its scan from carrying gradient buffers for every other parameter. Cutting the
  weights (not the logits) means wider logits are never formed; the gradient of
  the rows cut off is exactly 0.
  """
  if "embed_t" in params:  # [D, V] decode layout.
    name, axis = "embed_t", 1
  elif cfg.tie_embeddings:  # [V, D]
    name, axis = "embed", 0
  else:  # [D, V]
    name, axis = "lm_head", 1
  weight = params[name]
  if vocab_size is not None and vocab_size < weight.shape[axis]:
    weight = jax.lax.slice_in_dim(weight, 0, vocab_size, axis=axis)
  return {name: weight}


def _hidden(params, tokens: Array, cfg: ModelConfig, remat: bool = False):
  hidden, _ = transformer.forward(params, tokens, cfg, return_hidden=True,
                                  remat=remat)
  return hidden


def distill_sum_and_count(student_params, teacher_params, batch: Batch, *,
                          student_cfg: ModelConfig, teacher_cfg: ModelConfig,
                          loss_cfg: LossConfig) -> tuple[Array, Array]:
  """(sum, count) of D(teacher || student) over the batch's loss positions.

  The teacher runs under ``stop_gradient``; the student's LM head and the
  divergence run chunk by chunk (``losses.chunked_divergence``), over the first
  ``loss_cfg.shared_vocab_size`` ids of both models when set.

  Raises:
    ValueError: the vocabularies differ and ``loss_cfg.shared_vocab_size`` is None.
  """
  vocab = losses.shared_vocab(teacher_cfg.vocab_size, student_cfg.vocab_size,
                              loss_cfg.shared_vocab_size)
  tokens = batch["tokens"]
  teacher_params = jax.lax.stop_gradient(teacher_params)
  teacher_hidden = jax.lax.stop_gradient(_hidden(teacher_params, tokens,
                                                 teacher_cfg))
  student_hidden = _hidden(student_params, tokens, student_cfg, loss_cfg.remat)
  return losses.chunked_divergence(
      loss_cfg.divergence, teacher_hidden, student_hidden, _head(teacher_cfg),
      _head(student_cfg), loss_positions(batch["loss_mask"]),
      teacher_params=_head_params(teacher_params, teacher_cfg, vocab),
      student_params=_head_params(student_params, student_cfg, vocab),
      chunk_size=loss_cfg.chunk_size, reduction=loss_cfg.reduction,
      temperature=loss_cfg.temperature, top_k=loss_cfg.top_k, vocab_size=vocab)


def sft_sum_and_count(student_params, batch: Batch, *,
                      student_cfg: ModelConfig,
                      loss_cfg: LossConfig) -> tuple[Array, Array]:
  """(sum, count) of the next-token cross-entropy on the completion tokens."""
  tokens = batch["tokens"]
  hidden = _hidden(student_params, tokens, student_cfg, loss_cfg.remat)
  return losses.chunked_cross_entropy(
      hidden, _head(student_cfg), _head_params(student_params, student_cfg),
      next_tokens(tokens),
      loss_positions(batch["loss_mask"]), chunk_size=loss_cfg.chunk_size,
      reduction=loss_cfg.reduction)


def split_microbatches(batch: Batch, num_microbatches: int) -> Batch:
  """[B, ...] leaves -> [k, B / k, ...]; micro-batch i holds rows i, i + k, ...

  Strided rather than contiguous, so that with the batch sharded on its leading
  axis every device holds a slice of every micro-batch (no resharding).
  """
  def split(x):
    if x.shape[0] % num_microbatches:
      raise ValueError(f"batch size {x.shape[0]} is not a multiple of "
                       f"num_microbatches={num_microbatches}")
    x = x.reshape((x.shape[0] // num_microbatches, num_microbatches)
                  + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, batch)


def accumulate_gradients(sum_and_count_fn, params, batch: Batch,
                         num_microbatches: int):
  """Gradient of ``total sum / total count`` over micro-batches.

  Args:
    sum_and_count_fn: ``(params, micro_batch) -> (sum, count)``.
    params: differentiated pytree (float32).
    batch: the full batch (leaves [B, ...]).
    num_microbatches: k, dividing B.

  Returns:
    (grads, loss_sum, count): grads of the global mean; an empty count gives
    zero gradients and zero loss.
  """
  grad_fn = jax.value_and_grad(sum_and_count_fn, has_aux=True)
  if num_microbatches == 1:  # No accumulation buffer.
    (loss_sum, count), grads = grad_fn(params, batch)
    return _divide(grads, count), loss_sum, count

  def micro_step(carry, micro):
    grad_sum, loss_sum, count = carry
    (value, n), grads = grad_fn(params, micro)
    grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
    return (grad_sum, loss_sum + value, count + n), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
  (grad_sum, loss_sum, count), _ = jax.lax.scan(
      micro_step, init, split_microbatches(batch, num_microbatches))
  return _divide(grad_sum, count), loss_sum, count


def _divide(grads, count):
  return jax.tree.map(lambda g: g / jnp.maximum(count, 1.0), grads)


def distill_grads(student_params, teacher_params, batch: Batch, *,
                  student_cfg: ModelConfig, teacher_cfg: ModelConfig,
                  loss_cfg: LossConfig):
  """(grads, loss_sum, count) of the distillation loss; see accumulate_gradients."""
  fn = functools.partial(distill_sum_and_count, teacher_params=teacher_params,
                         student_cfg=student_cfg, teacher_cfg=teacher_cfg,
                         loss_cfg=loss_cfg)
  return accumulate_gradients(lambda p, b: fn(p, batch=b), student_params,
                              batch, loss_cfg.num_microbatches)


def sft_grads(student_params, batch: Batch, *, student_cfg: ModelConfig,
              loss_cfg: LossConfig):
  """(grads, loss_sum, count) of the SFT cross-entropy."""
  fn = functools.partial(sft_sum_and_count, student_cfg=student_cfg,
                         loss_cfg=loss_cfg)
  return accumulate_gradients(lambda p, b: fn(p, batch=b), student_params,
                              batch, loss_cfg.num_microbatches)


def _apply(state: TrainState, grads, loss_sum, count,
           batch: Batch) -> tuple[TrainState, Metrics]:
  """Optimizer update plus metrics as (sum, count) pairs."""
  one = jnp.ones((), jnp.float32)
  tokens = jnp.sum(loss_positions(batch["loss_mask"])).astype(jnp.float32)
  metrics = {
      "loss": (loss_sum, count),
      "tokens": (tokens, one),
      "grad_norm": (optax.tree.norm(grads), one),  # Before clipping.
      "learning_rate": (state.learning_rate, one),
  }
  return state.apply_gradients(grads), metrics


@functools.partial(
    jax.jit, static_argnames=("student_cfg", "teacher_cfg", "loss_cfg"),
    donate_argnames=("state",))
def train_step(state: TrainState, teacher_params, batch: Batch, *,
               student_cfg: ModelConfig, teacher_cfg: ModelConfig,
               loss_cfg: LossConfig) -> tuple[TrainState, Metrics]:
  """One distillation update of the student.

  Args:
    state: student TrainState (donated).
    teacher_params: teacher params pytree (any dtype; never differentiated).
    batch: ``tokens`` int32 [B, L], ``loss_mask`` bool [B, L] (completion
      tokens); B divisible by ``loss_cfg.num_microbatches``.
    student_cfg: student ModelConfig (``dtype`` = compute dtype; master params
      stay float32 in ``state``).
    teacher_cfg: teacher ModelConfig.
    loss_cfg: LossConfig.

  Returns:
    (new state, metrics): metrics map names to (sum, count) pairs: "loss" (the
    divergence; per-token or per-sequence sums as ``loss_cfg.reduction``),
    "tokens" (distilled positions), "grad_norm" (before clipping),
    "learning_rate" (the one this update used).
  """
  grads, loss_sum, count = distill_grads(
      state.params, teacher_params, batch, student_cfg=student_cfg,
      teacher_cfg=teacher_cfg, loss_cfg=loss_cfg)
  return _apply(state, grads, loss_sum, count, batch)


@functools.partial(jax.jit, static_argnames=("student_cfg", "loss_cfg"),
                   donate_argnames=("state",))
def sft_step(state: TrainState, batch: Batch, *, student_cfg: ModelConfig,
             loss_cfg: LossConfig) -> tuple[TrainState, Metrics]:
  """One supervised fine-tuning update (cross-entropy on completion tokens).

  Same batch, accumulation and metrics conventions as ``train_step``; only
  ``reduction``, ``chunk_size``, ``num_microbatches`` and ``remat`` of
  ``loss_cfg`` are used.
  """
  grads, loss_sum, count = sft_grads(state.params, batch,
                                     student_cfg=student_cfg,
                                     loss_cfg=loss_cfg)
  return _apply(state, grads, loss_sum, count, batch)
