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
  """The config of `Model.keep_layers(indices)`: `ModelConfig.keep_layers` (see there)."""
  return config.keep_layers(indices)


@functools.partial(jax.jit, static_argnames=("cfg",))
def params_logits(params, tokens, cfg: ModelConfig):
  """The jitted program of `logits`: (params, int32 tokens [B, L]) -> float32 [B, L, V];
  `skd_jax.compile` lowers it with abstract, sharded arguments."""
  return transformer.forward(params, tokens, cfg)[0]


def logits(model: Model, tokens) -> jax.Array:
  """Teacher-forced float32 logits [B, L, V] of `tokens` ([B, L] ints, no padding)."""
  tokens = jnp.asarray(np.asarray(tokens), jnp.int32)
  if tokens.ndim != 2:
    raise ValueError(f"tokens must be [batch, length]; got shape {tokens.shape}.")
  return params_logits(model.params, tokens, model.config)
