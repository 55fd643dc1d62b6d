"""The decoder's shardings: its params' and KV caches' logical axes on a mesh.

    shardings = param_shardings(cfg, mesh, "student")    # a params pytree of NamedShardings
    cache = cache_shardings(cfg, batch, length, mesh, "teacher")

The logical axes are the model's (`transformer.param_axes(cfg)`,
`transformer.CACHE_AXES`); the rule tables and the logical -> spec engine are
`skd_jax.sharding`'s. Placing values on these shardings is
`skd_jax.distributed.shard_params`.
"""
from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from skd_jax import sharding
from skd_jax.models import transformer
from skd_jax.models.config import ModelConfig


def param_shardings(cfg: ModelConfig, mesh: Mesh | jax.sharding.AbstractMesh,
                    rules: str | sharding.Rules) -> Any:
  """NamedShardings of a model's params (`transformer.param_specs` layout)."""
  return sharding.logical_to_sharding(transformer.param_axes(cfg), transformer.param_shapes(cfg),
                                      mesh, rules)


def cache_shapes(cfg: ModelConfig, batch: int, length: int, dtype=None) -> Any:
  """`ShapeDtypeStruct`s of `transformer.init_cache(cfg, batch, length, dtype)`."""
  return jax.eval_shape(lambda: transformer.init_cache(cfg, batch, length, dtype))


def cache_shardings(cfg: ModelConfig, batch: int, length: int, mesh: Mesh,
                    rules: str | sharding.Rules) -> Any:
  """A `KVCache` of NamedShardings for a cache of `batch` rows x `length` slots."""
  shardings = sharding.logical_to_sharding(transformer.CACHE_AXES,
                                           cache_shapes(cfg, batch, length), mesh, rules)
  # end_index [B] follows the batch split of k and v (not its own, wider one).
  return shardings.replace(end_index=NamedSharding(mesh, P(shardings.k.spec[1])))
