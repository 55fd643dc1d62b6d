"""`Model`: a static config plus a params pytree, and teacher-forced logits."""
from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from skd_jax.models import transformer
from skd_jax.models.config import ModelConfig


@flax.struct.dataclass
class Model:
  """A model is a pytree: `params` are leaves, `config` is static metadata."""
  config: ModelConfig = flax.struct.field(pytree_node=False)
  params: Any

  @classmethod
  def random(cls, config: ModelConfig, seed: int = 0) -> "Model":
    return cls(config=config, params=transformer.init_params(config, jax.random.PRNGKey(seed)))

  def keep_layers(self, indices) -> "Model":
    """A layer-pruned copy: decoder layers `indices` (in order), the rest dropped.

    Each kept layer keeps its attention type (sliding / full, hence its RoPE
    base), so e.g. every third layer of Gemma 3 is a consistent smaller Gemma 3.
    """
    take = np.asarray([int(i) for i in indices])
    layers = jax.tree.map(lambda x: x[take], self.params["layers"])
    return Model(config=pruned_config(self.config, indices),
                 params={**self.params, "layers": layers})


def pruned_config(config: ModelConfig, indices) -> ModelConfig:
  """The config of `Model.keep_layers(indices)` (each layer keeps its attention type).

  Raises:
    ValueError: indices empty, repeated or outside [0, num_layers).
  """
  indices = [int(i) for i in indices]
  n = config.num_layers
  if not indices or any(not 0 <= i < n for i in indices) or len(set(indices)) != len(indices):
    raise ValueError(f"keep_layers={indices}: give distinct layer indices in [0, {n}).")
  return config.replace(num_layers=len(indices),
                        layer_types=tuple(config.layer_types[i] for i in indices),
                        name=f"{config.name}-{len(indices)}of{n}l")


@functools.partial(jax.jit, static_argnames=("cfg",))
def _logits(params, tokens, cfg: ModelConfig):
  return transformer.forward(params, tokens, cfg)[0]


def logits(model: Model, tokens) -> jax.Array:
  """Teacher-forced float32 logits [B, L, V] of `tokens` ([B, L] ints, no padding)."""
  tokens = jnp.asarray(np.asarray(tokens), jnp.int32)
  if tokens.ndim != 2:
    raise ValueError(f"tokens must be [batch, length]; got shape {tokens.shape}.")
  return _logits(model.params, tokens, model.config)
