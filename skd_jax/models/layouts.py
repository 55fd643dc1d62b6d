"""How a model's params are held: the stacked layout, the per-layer decode layout, dtype casts.

    fast = decode_layout(params, cfg)     # per-layer weights for the CPU decode loop
    half = cast_params(params, jnp.bfloat16)

`transformer.forward` runs either layout: stacked layers (a leading "layers"
axis, run under `jax.lax.scan`; `transformer.param_specs`) or a tuple of
per-layer dicts (unrolled).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from skd_jax.models.config import ModelConfig
from skd_jax.models.transformer import Params


def decode_layout(params: Params, cfg: ModelConfig) -> Params:
  """The same weights laid out for fast token-by-token decoding on CPU.

  "layers" becomes a tuple of per-layer dicts (`forward` then unrolls the layer
  loop) and a tied embedding gets a transposed copy "embed_t" [D, V] for the
  logits. Why: inside a `while_loop`, XLA:CPU copies each layer's slice of the
  stacked weights on every step, and a [V, D]-contracting matvec runs at about
  half the speed of a [D, V] one; both dominate a small-batch decode step.
  Costs one extra copy of the weights (and compile time linear in the layers),
  so it is for the sampler's loop on CPU, not for training or for TPU pods.
  Convert OUTSIDE the jitted loop (`sampler.loop_params`): inside one jit, XLA
  may fuse the slices back into the loop body and most of the gain is lost.
  Idempotent.
  """
  layers = params["layers"]
  if isinstance(layers, (list, tuple)):   # Already in this layout.
    return params
  out = dict(params)
  out["layers"] = tuple(jax.tree.map(lambda a, i=i: a[i], layers) for i in range(cfg.num_layers))
  if cfg.tie_embeddings:
    out["embed_t"] = params["embed"].T
  return out


def matmul_weights_in_compute_dtype(params: Params, cfg: ModelConfig) -> Params:
  """The matrices (ndim >= 2: projections, MLP, embeddings, LM head) cast to
  `cfg.dtype` once, when it is narrower than their storage dtype.

  Why: the model casts every matrix to its compute dtype at each use
  (`_dense`, the embedding lookup, the logits), so a bfloat16-compute model over
  float32 masters reads float32 weights on every decode step. A rollout's
  batch-8 decode step is bound by those reads (bench/profile_step.py), so the
  sampler's loop gets matrices already in the compute dtype: the values every
  matmul sees are the same, the bytes per step are halved. Vectors (norm scales,
  biases) are left as stored: norms read their scale in float32. Costs one copy
  of the matrices in the compute dtype for the loop's lifetime.
  """
  compute = jnp.dtype(cfg.dtype)
  return jax.tree.map(lambda a: a.astype(compute) if _wider_matrix(a, compute) else a, params)


def has_wider_matrices(params: Params, cfg: ModelConfig) -> bool:
  """Whether `matmul_weights_in_compute_dtype` would cast anything."""
  compute = jnp.dtype(cfg.dtype)
  return any(_wider_matrix(a, compute) for a in jax.tree.leaves(params))


def _wider_matrix(a, compute) -> bool:
  return (jnp.issubdtype(a.dtype, jnp.floating) and a.ndim >= 2
          and jnp.finfo(compute).bits < jnp.finfo(a.dtype).bits)


def cast_params(params: Params, dtype) -> Params:
  """All floating-point leaves cast to `dtype`."""
  return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                      params)

