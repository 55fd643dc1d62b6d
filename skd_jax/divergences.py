"""The divergence registry: each entry is a small frozen dataclass carrying its formula.

An entry's fields are its hyperparameters (``JSD(beta=0.3)``, ``SKL(alpha=0.1)``);
calling it maps normalised float32 log-probabilities to per-position values::

    entry(log_p [..., V], log_q [..., V]) -> [...]     # p teacher, q student

``-inf`` log-probabilities are probability 0 (``0 * log 0 = 0``). Entries are
hashable, so a ``LossConfig`` holding one stays a jit static argument.

Adding a divergence is one file (docs/EXTENDING.md)::

    from skd_jax.divergences import Divergence, register_divergence

    @register_divergence("my_div")
    @dataclasses.dataclass(frozen=True)
    class MyDiv(Divergence):
      tau: float = 1.0                  # a hyperparameter: config key loss.tau
      def __call__(self, log_p, log_q):
        return ...                      # [...] float32

after which ``--config.loss.divergence=my_div``, ``skd_jax.divergence("my_div",
..., tau=2.0)`` and ``LossConfig(divergence="my_div")`` all work. Config keys of
the loss section that are not LossConfig fields are the registered entries'
hyperparameters (``loss.beta``, ``loss.alpha``, ``loss.tau``); each entry
validates its own in ``__post_init__`` with a message that starts ``field=value``.

Formulas and conventions of the built-in five: see ``skd_jax.losses``.
"""
from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

Array = jax.Array
_NEG_INF = -jnp.inf


class Divergence:
  """Base class of registry entries (subclasses are frozen dataclasses).

  ``name`` is set by ``register_divergence``. ``__call__(log_p, log_q)`` returns
  the per-position divergence D(p, q) over the last axis, float32.
  """
  name: ClassVar[str] = ""

  def __call__(self, log_p: Array, log_q: Array) -> Array:
    raise NotImplementedError


_REGISTRY: dict[str, type[Divergence]] = {}
# Read-only, live view: name -> entry class, in registration order.
REGISTRY: Mapping[str, type[Divergence]] = types.MappingProxyType(_REGISTRY)


def register_divergence(name: str) -> Callable[[type], type]:
  """Class decorator: register a frozen dataclass as divergence ``name``.

  A class that is not yet a dataclass is made a frozen one. Registering the same
  class again (a config module imported twice) replaces it; a different class
  under a taken name is an error.
  """
  if not name or not isinstance(name, str):
    raise ValueError(f"divergence name must be a non-empty string, got {name!r}")

  def decorate(cls: type) -> type:
    if not (isinstance(cls, type) and issubclass(cls, Divergence)):
      raise TypeError(f"divergence {name!r}: {cls!r} must subclass skd_jax.Divergence.")
    if not dataclasses.is_dataclass(cls):
      cls = dataclasses.dataclass(frozen=True)(cls)
    if not cls.__dataclass_params__.frozen:
      raise TypeError(f"divergence {name!r}: {cls.__name__} must be a frozen dataclass "
                      "(@dataclasses.dataclass(frozen=True)): entries are jit static args.")
    old = _REGISTRY.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__,
                                                                   cls.__qualname__):
      raise ValueError(f"divergence {name!r} is already registered as "
                       f"{old.__module__}.{old.__qualname__}; pick another name.")
    cls.name = name
    _REGISTRY[name] = cls
    return cls

  return decorate


def hyperparameter_names() -> frozenset[str]:
  """Every field name of every registered entry (the loss section's extra keys)."""
  return frozenset(f.name for cls in _REGISTRY.values() for f in dataclasses.fields(cls))


def _field_names(cls: type) -> set[str]:
  return {f.name for f in dataclasses.fields(cls)}


def get_divergence(spec: str | Divergence, **hyperparameters: Any) -> Divergence:
  """The entry for a registered name (or an entry itself), with hyperparameters.

  Args:
    spec: a registered name ("fkl", "jsd", ...) or a ``Divergence`` instance.
    **hyperparameters: values for the entry's fields (a name builds the entry
      from them, an instance has them replaced). Fields of OTHER registered
      entries are ignored (``beta=`` with "fkl" is harmless); a name no entry has
      is a TypeError.

  Raises:
    ValueError: ``spec`` is not registered (message: "divergence=...: unknown
      divergence ..."), or an entry rejects a value.
  """
  unknown = set(hyperparameters) - hyperparameter_names()
  if unknown:
    raise TypeError(f"unknown divergence hyperparameter(s) {sorted(unknown)}; registered "
                    f"entries take {sorted(hyperparameter_names())}.")
  if isinstance(spec, Divergence):
    own = {k: v for k, v in hyperparameters.items() if k in _field_names(type(spec))}
    return dataclasses.replace(spec, **own) if own else spec
  cls = _REGISTRY.get(spec) if isinstance(spec, str) else None
  if cls is None:
    raise ValueError(f"divergence={spec!r}: unknown divergence; registered: "
                     f"{', '.join(_REGISTRY)} (add one with skd_jax.divergences.register_divergence).")
  return cls(**{k: v for k, v in hyperparameters.items() if k in _field_names(cls)})


def validate_hyperparameters(values: Mapping[str, Any]) -> None:
  """Builds every entry that has a field in ``values``: each checks its own.

  So a bad ``loss.beta`` is reported even when the chosen divergence is "fkl".
  Keys that are no entry's field are ignored here.
  """
  for cls in _REGISTRY.values():
    own = {k: values[k] for k in _field_names(cls) if k in values}
    if own:
      cls(**own)


# --- the formulas ---------------------------------------------------------------


def _positive(log_x: Array) -> Array:
  """Where a log-probability is not -inf (NaN stays in, so it propagates)."""
  return log_x != _NEG_INF


def kl(log_a: Array, log_b: Array) -> Array:
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


def mixture_log_probs(log_p: Array, log_q: Array, weight: float) -> Array:
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


def _unit_float(field: str, value: Any, high_open: bool = False) -> float:
  """``float(value)`` if in [0, 1] ([0, 1) with ``high_open``); else ValueError."""
  value = float(value)
  if not (0.0 <= value < 1.0 if high_open else 0.0 <= value <= 1.0):
    raise ValueError(f"{field}={value} must be in [0, {'1)' if high_open else '1]'}.")
  return value


@register_divergence("fkl")
@dataclasses.dataclass(frozen=True)
class FKL(Divergence):
  """Forward KL, ``KL(p || q)``."""

  def __call__(self, log_p, log_q):
    return kl(log_p, log_q)


@register_divergence("rkl")
@dataclasses.dataclass(frozen=True)
class RKL(Divergence):
  """Reverse KL, ``KL(q || p)``."""

  def __call__(self, log_p, log_q):
    return kl(log_q, log_p)


@register_divergence("jsd")
@dataclasses.dataclass(frozen=True)
class JSD(Divergence):
  """Generalised JSD in TRL's convention: ``beta KL(p||m) + (1-beta) KL(q||m)``.

  ``m = beta p + (1 - beta) q``; ``beta = 0`` is exactly fkl and ``beta = 1``
  exactly rkl (as TRL special-cases them; the interior formula tends to 0 there).
  """
  beta: float = 0.5

  def __post_init__(self):
    object.__setattr__(self, "beta", _unit_float("beta", self.beta))

  def __call__(self, log_p, log_q):
    if self.beta == 0.0:  # TRL: exactly KL(teacher || student).
      return kl(log_p, log_q)
    if self.beta == 1.0:  # TRL: exactly KL(student || teacher).
      return kl(log_q, log_p)
    log_m = mixture_log_probs(log_p, log_q, self.beta)
    return self.beta * kl(log_p, log_m) + (1.0 - self.beta) * kl(log_q, log_m)


@register_divergence("tvd")
@dataclasses.dataclass(frozen=True)
class TVD(Divergence):
  """Total variation, ``0.5 * sum_v |p_v - q_v|``."""

  def __call__(self, log_p, log_q):
    return 0.5 * jnp.sum(jnp.abs(jnp.exp(log_p) - jnp.exp(log_q)), axis=-1)


@register_divergence("skl")
@dataclasses.dataclass(frozen=True)
class SKL(Divergence):
  """DistiLLM's skew KL, ``KL(p || alpha p + (1 - alpha) q)``, alpha in [0, 1)."""
  alpha: float = 0.1

  def __post_init__(self):
    object.__setattr__(self, "alpha", _unit_float("alpha", self.alpha, high_open=True))

  def __call__(self, log_p, log_q):
    return kl(log_p, mixture_log_probs(log_p, log_q, self.alpha))
