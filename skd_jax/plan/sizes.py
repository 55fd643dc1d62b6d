"""Per-device sizes under a rule table: params, caches, gathered weights, splits."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax

from skd_jax import sharding
from skd_jax.models import transformer
from skd_jax.models.config import ModelConfig

GiB = 2 ** 30
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def dtype_bytes(name: str) -> int:
  if name not in _DTYPE_BYTES:
    raise ValueError(f"Unknown dtype {name!r}; expected one of {sorted(_DTYPE_BYTES)}.")
  return _DTYPE_BYTES[name]


def sharded_elements(axes_tree: Any, shapes_tree: Any, axis_sizes: Mapping[str, int],
                     rules) -> int:
  """Elements per device of a pytree under a rule table (sum over leaves)."""
  specs = sharding.logical_to_specs(axes_tree, shapes_tree, axis_sizes, rules)
  shapes = jax.tree.leaves(shapes_tree, is_leaf=lambda x: hasattr(x, "shape"))
  specs = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  return sum(math.prod(sharding.shard_shape(s.shape, p, axis_sizes))
             for s, p in zip(shapes, specs))


def param_bytes(cfg: ModelConfig, axis_sizes: Mapping[str, int], rules,
                dtype: str) -> int:
  """Bytes per device of a model's params stored in `dtype`."""
  n = sharded_elements(transformer.param_axes(cfg), transformer.param_shapes(cfg),
                       axis_sizes, rules)
  return n * dtype_bytes(dtype)


def cache_bytes(cfg: ModelConfig, batch: int, length: int, axis_sizes: Mapping[str, int],
                rules, dtype: str | None = None) -> int:
  """Bytes per device of the KV cache (k and v; end_index is negligible)."""
  dtype = dtype or cfg.dtype
  shape = (cfg.num_layers, batch, length, cfg.num_kv_heads, cfg.head_dim)
  spec = sharding.logical_to_spec(transformer.CACHE_AXES.k, shape, axis_sizes, rules)
  return 2 * math.prod(sharding.shard_shape(shape, spec, axis_sizes)) * dtype_bytes(dtype)


def split_ways(name: str, size: int, axis_sizes: Mapping[str, int], rules,
           only: Sequence[str] = ("tensor",)) -> int:
  """How many ways a dimension called `name` is split over the axes in `only`."""
  spec = sharding.logical_to_spec((name,), (size,), axis_sizes, rules)
  axes = sharding._axes_tuple(spec[0])  # pylint: disable=protected-access
  return math.prod(axis_sizes[a] for a in axes if a in only)


def gathered_elements(cfg: ModelConfig, axis_sizes: Mapping[str, int], rules,
                       layer: bool, head_only: bool = False) -> int:
  """Elements per device of one layer's weights (or of the embeddings/head;
  `head_only`: the LM-head matrix only) once gathered over data/fsdp, i.e.
  split over "tensor" only."""
  specs = transformer.param_specs(cfg)
  if layer:
    leaves = [(s.axes[1:], s.shape[1:]) for s in jax.tree.leaves(
        specs["layers"], is_leaf=lambda x: isinstance(x, transformer.ParamSpec))]
  else:
    names = ("embed", "lm_head")
    if head_only:
      names = ("lm_head",) if "lm_head" in specs else ("embed",)
    leaves = [(specs[k].axes, specs[k].shape) for k in names if k in specs]
  tensor_only = {a: (s if a == "tensor" else 1) for a, s in axis_sizes.items()}
  total = 0
  for axes, shape in leaves:
    spec = sharding.logical_to_spec(axes, shape, axis_sizes, rules)
    kept = jax.sharding.PartitionSpec(*[
        tuple(a for a in sharding._axes_tuple(e) if a == "tensor") or None  # pylint: disable=protected-access
        for e in spec])
    total += math.prod(sharding.shard_shape(shape, kept, tensor_only))
  return total


def gathered_extra(cfg: ModelConfig, axis_sizes, rules, together: bool = True) -> int:
  """Compute-dtype bytes by which a forward's weights grow when gathered over
  data/fsdp: the LM head whole (it contracts all of D; an untied embedding is
  only looked up) and one layer at a time. 0 for weights split over tensor
  only (teacher rules). `together` False: the head and the layer are not live
  at once (one teacher-forced pass: the layers, then the head); in a decode
  loop XLA keeps both."""
  c = dtype_bytes(cfg.dtype)
  whole = sum(gathered_elements(cfg, axis_sizes, rules, layer) * (cfg.num_layers if layer else 1)
              for layer in (True, False))
  shard = param_bytes(cfg, axis_sizes, rules, "float32") // 4
  if whole <= shard:
    return 0
  embed = gathered_elements(cfg, axis_sizes, rules, layer=False, head_only=True)
  one_layer = gathered_elements(cfg, axis_sizes, rules, layer=True)
  return (embed + one_layer if together else max(embed, one_layer)) * c
