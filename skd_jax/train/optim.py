"""Optimizer and learning-rate schedules of the student (optax).

Defaults are the official SKD hyperparameters: AdamW (b1 0.9, b2 0.999, eps 1e-6,
no weight decay), lr 1e-5 decayed linearly to 0 over the run, no warmup, gradients
clipped to global norm 1.0.
"""
import dataclasses
import functools
from typing import Any

import optax

SCHEDULES = ("constant", "linear", "cosine")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Student optimizer settings.

  Attributes:
    learning_rate: peak learning rate.
    schedule: "constant" | "linear" (to ``end_learning_rate``) | "cosine" (to
      ``end_learning_rate``), after ``warmup_steps`` of linear warmup from 0.
    total_steps: optimizer updates in the run, warmup included (the decay length).
    warmup_steps: linear warmup from 0 to ``learning_rate``.
    end_learning_rate: value at ``total_steps`` for the decaying schedules.
    b1, b2, eps: Adam moments.
    weight_decay: decoupled (AdamW) weight decay, applied to every parameter.
    max_grad_norm: clip by global norm; None or <= 0 disables clipping.
  """
  learning_rate: float = 1e-5
  schedule: str = "linear"
  total_steps: int = 1000
  warmup_steps: int = 0
  end_learning_rate: float = 0.0
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-6
  weight_decay: float = 0.0
  max_grad_norm: float | None = 1.0


def optimizer_config(config: Any = None, **overrides) -> OptimizerConfig:
  """An OptimizerConfig from a dataclass, ml_collections ConfigDict or mapping.

  Unknown keys are rejected so that a typo in an experiment config is loud.
  """
  if config is None:
    values = {}
  elif isinstance(config, OptimizerConfig):
    values = dataclasses.asdict(config)
  elif hasattr(config, "to_dict"):  # ml_collections.ConfigDict
    values = dict(config.to_dict())
  else:
    values = dict(config)
  values.update(overrides)
  return OptimizerConfig(**values)


def make_schedule(config: Any = None) -> optax.Schedule:
  """The learning-rate schedule: update count -> learning rate."""
  return _make_schedule(optimizer_config(config))


def make_optimizer(config: Any = None) -> optax.GradientTransformation:
  """clip_by_global_norm -> AdamW(schedule); hyperparameters from ``config``.

  Equal configs return the same object: the transformation is a static field of
  ``TrainState``, so this keeps the jit cache warm across re-created states.
  """
  return _make_optimizer(optimizer_config(config))


@functools.lru_cache(maxsize=None)
def _make_schedule(c: OptimizerConfig) -> optax.Schedule:
  if c.schedule not in SCHEDULES:
    raise ValueError(f"unknown schedule {c.schedule!r}; expected {SCHEDULES}")
  decay_steps = max(c.total_steps - c.warmup_steps, 1)
  if c.schedule == "constant":
    main = optax.constant_schedule(c.learning_rate)
  elif c.schedule == "linear":
    main = optax.linear_schedule(c.learning_rate, c.end_learning_rate,
                                 decay_steps)
  else:
    main = optax.cosine_decay_schedule(
        c.learning_rate, decay_steps,
        alpha=c.end_learning_rate / c.learning_rate if c.learning_rate else 0.0)
  if c.warmup_steps <= 0:
    return main
  warmup = optax.linear_schedule(0.0, c.learning_rate, c.warmup_steps)
  return optax.join_schedules([warmup, main], [c.warmup_steps])


@functools.lru_cache(maxsize=None)
def _make_optimizer(c: OptimizerConfig) -> optax.GradientTransformation:
  adamw = optax.adamw(_make_schedule(c), b1=c.b1, b2=c.b2, eps=c.eps,
                      weight_decay=c.weight_decay)
  if not c.max_grad_norm or c.max_grad_norm <= 0:
    return adamw
  return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), adamw)
