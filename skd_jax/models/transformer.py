"""One decoder for Gemma 1/2/3 and Qwen2, as pure functions over a params pytree.

Conventions
-----------
* Params are a nested dict. Per-layer weights are stacked on a leading `layers`
  axis and the layers run under `jax.lax.scan`, so compile time does not grow with
  depth. `param_specs(cfg)` is the one table of names, shapes and logical axis
  names; `init_params` and `param_axes` are derived from it.
* The KV cache is an explicit pytree (`KVCache`) passed in and returned. Row b of
  the batch holds its tokens contiguously in cache slots 0 .. end_index[b] - 1, and
  the slot index IS the token's position. A call with T new tokens writes them at
  slots end_index[b] .. end_index[b] + T - 1 of each row (rows advance by
  different amounts) and the caller says how many of them are real (`lengths`);
  slots past end_index are never attended, so they may hold stale tokens.
* Sliding-window layers keep a full-length cache and mask keys outside the window
  (a query at position p sees keys k with p - window < k <= p), so they stay exact
  however long the sequence grows.
* Matmuls take inputs in the compute dtype (`cfg.dtype`) and accumulate in float32
  (`preferred_element_type`); norms, softmax, RoPE and logits are float32.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from skd_jax import sharding
from skd_jax.models.config import SLIDING, ModelConfig, dtype_of

Params = dict[str, Any]
_NO_WINDOW = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------
# Parameter table
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ParamSpec:
  """Shape, logical axis names and initialiser of one parameter."""
  shape: tuple[int, ...]
  axes: tuple[str, ...]
  init: str  # "normal" | "zeros" | "ones"


def param_specs(cfg: ModelConfig) -> Params:
  """The nested dict of `ParamSpec`s of a model (stacked layers lead with L)."""
  d, f, h, k, hd, v, n = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                          cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size, cfg.num_layers)
  # Gemma scales norms by (1 + w), so "no-op" weights are zeros; Qwen2 by w.
  norm_init = "zeros" if cfg.is_gemma else "ones"
  layer = {
      "attn_norm": ParamSpec((n, d), ("layers", "embed"), norm_init),
      "q": ParamSpec((n, d, h, hd), ("layers", "embed", "q_heads", "head_dim"), "normal"),
      "k": ParamSpec((n, d, k, hd), ("layers", "embed", "kv_heads", "head_dim"), "normal"),
      "v": ParamSpec((n, d, k, hd), ("layers", "embed", "kv_heads", "head_dim"), "normal"),
      "o": ParamSpec((n, h, hd, d), ("layers", "q_heads", "head_dim", "embed"), "normal"),
      "mlp_norm": ParamSpec((n, d), ("layers", "embed"), norm_init),
      "gate": ParamSpec((n, d, f), ("layers", "embed", "mlp"), "normal"),
      "up": ParamSpec((n, d, f), ("layers", "embed", "mlp"), "normal"),
      "down": ParamSpec((n, f, d), ("layers", "mlp", "embed"), "normal"),
  }
  if cfg.qkv_bias:
    layer["q_bias"] = ParamSpec((n, h, hd), ("layers", "q_heads", "head_dim"), "zeros")
    layer["k_bias"] = ParamSpec((n, k, hd), ("layers", "kv_heads", "head_dim"), "zeros")
    layer["v_bias"] = ParamSpec((n, k, hd), ("layers", "kv_heads", "head_dim"), "zeros")
  if cfg.has_qk_norm:
    layer["q_norm"] = ParamSpec((n, hd), ("layers", "head_dim"), norm_init)
    layer["k_norm"] = ParamSpec((n, hd), ("layers", "head_dim"), norm_init)
  if cfg.has_post_norms:
    layer["attn_post_norm"] = ParamSpec((n, d), ("layers", "embed"), norm_init)
    layer["mlp_post_norm"] = ParamSpec((n, d), ("layers", "embed"), norm_init)
  specs = {
      "embed": ParamSpec((v, d), ("vocab", "embed"), "normal"),
      "layers": layer,
      "final_norm": ParamSpec((d,), ("embed",), norm_init),
  }
  if not cfg.tie_embeddings:
    specs["lm_head"] = ParamSpec((d, v), ("embed", "vocab"), "normal")
  return specs


def _is_spec(x) -> bool:
  return isinstance(x, ParamSpec)


def param_axes(cfg: ModelConfig) -> Params:
  """Logical axis names of every parameter, as a pytree of tuples."""
  return jax.tree.map(lambda s: s.axes, param_specs(cfg), is_leaf=_is_spec)


def param_shapes(cfg: ModelConfig) -> Params:
  """`jax.ShapeDtypeStruct`s of every parameter (in `cfg.param_dtype`)."""
  dt = dtype_of(cfg.param_dtype)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, dt), param_specs(cfg),
                      is_leaf=_is_spec)


def init_params(cfg: ModelConfig, rng: jax.Array, std: float = 0.02) -> Params:
  """Random parameters (normal(0, std) matrices, identity norms, zero biases)."""
  specs = param_specs(cfg)
  leaves, treedef = jax.tree.flatten(specs, is_leaf=_is_spec)
  keys = jax.random.split(rng, len(leaves))
  dt = dtype_of(cfg.param_dtype)

  def make(spec: ParamSpec, key):
    if spec.init == "normal":
      return (std * jax.random.normal(key, spec.shape, jnp.float32)).astype(dt)
    return (jnp.zeros if spec.init == "zeros" else jnp.ones)(spec.shape, dt)

  return jax.tree.unflatten(treedef, [make(s, k) for s, k in zip(leaves, keys)])


# ----------------------------------------------------------------------------
# KV cache
# ----------------------------------------------------------------------------
@flax.struct.dataclass
class KVCache:
  """Keys and values of every layer, plus each row's fill level.

  k, v: [L, B, S, K, Dh] (layers, batch, cache slots, kv heads, head dim).
  end_index: [B] int32, the number of valid slots (= the next token's position).
  """
  k: jax.Array
  v: jax.Array
  end_index: jax.Array

  @property
  def length(self) -> int:
    """S, the number of slots per row (static)."""
    return self.k.shape[2]

  @property
  def batch_size(self) -> int:
    return self.k.shape[1]


CACHE_AXES = KVCache(
    k=("layers", "cache_batch", "cache_seq", "cache_kv_heads", "head_dim"),
    v=("layers", "cache_batch", "cache_seq", "cache_kv_heads", "head_dim"),
    end_index=("cache_batch",),
)


def init_cache(cfg: ModelConfig, batch_size: int, length: int, dtype=None) -> KVCache:
  """An empty cache of `length` slots per row, in the compute dtype by default."""
  dt = dtype or dtype_of(cfg.dtype)
  shape = (cfg.num_layers, batch_size, length, cfg.num_kv_heads, cfg.head_dim)
  return KVCache(k=jnp.zeros(shape, dt), v=jnp.zeros(shape, dt),
                 end_index=jnp.zeros((batch_size,), jnp.int32))


# ----------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------
def _dense(x: jax.Array, w: jax.Array, dt, n_in: int = 1) -> jax.Array:
  """x [..., *in] @ w [*in, *out] with inputs in `dt`, float32 accumulation, result in `dt`.

  Computed as one 2-D matmul [N, in] @ [in, out]: the weight gradient then
  contracts a single axis, which XLA's CPU backend runs ~2x faster than an
  einsum contracting (batch, seq).
  """
  lead, in_shape, out_shape = x.shape[:x.ndim - n_in], w.shape[:n_in], w.shape[n_in:]
  x2 = x.reshape(-1, math.prod(in_shape)).astype(dt)
  w2 = w.reshape(math.prod(in_shape), -1).astype(dt)
  y = jnp.dot(x2, w2, preferred_element_type=jnp.float32).astype(dt)
  return y.reshape(*lead, *out_shape)


def rms_norm(x: jax.Array, w: jax.Array, cfg: ModelConfig) -> jax.Array:
  """RMSNorm over the last axis, in float32; Gemma scales by (1 + w), Qwen2 by w."""
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + cfg.rms_norm_eps)
  if cfg.is_gemma:
    return (y * (1.0 + w.astype(jnp.float32))).astype(x.dtype)
  return w.astype(x.dtype) * y.astype(x.dtype)


def rope_tables(positions: jax.Array, head_dim: int, theta: float, scaling: float = 1.0):
  """cos, sin of shape [B, T, head_dim] (halves repeated; transformers' layout)."""
  inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
  inv_freq = jnp.asarray(inv_freq / scaling, jnp.float32)
  angles = positions.astype(jnp.float32)[..., None] * inv_freq
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates x [B, T, N, Dh] by cos/sin [B, T, Dh] (rotate-half convention)."""
  x32 = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
  out = x32 * cos[:, :, None, :] + rotated * sin[:, :, None, :]
  return out.astype(x.dtype)


def _softcap(x: jax.Array, cap: float | None) -> jax.Array:
  return x if cap is None else jnp.tanh(x / cap) * cap


def attention_mask(q_pos: jax.Array, k_pos: jax.Array, window: jax.Array,
                   k_valid: jax.Array | None = None) -> jax.Array:
  """[B, T, S] bool: causal, within `window` (int32 scalar), and valid keys."""
  diff = q_pos[:, :, None] - k_pos[:, None, :]
  mask = (diff >= 0) & (diff < window)
  if k_valid is not None:
    mask &= k_valid[:, None, :]
  return mask


def _attend(q, k, v, mask, cfg: ModelConfig, dt):
  """Grouped-query attention. q [B,T,H,Dh]; k, v [B,S,K,Dh]; mask [B,T,S]."""
  b, t, h, hd = q.shape
  groups = h // cfg.num_kv_heads
  q = q.reshape(b, t, cfg.num_kv_heads, groups, hd)
  scores = jnp.einsum("btkgd,bskd->bkgts", q.astype(dt), k.astype(dt),
                      preferred_element_type=jnp.float32) * cfg.query_scale
  scores = _softcap(scores, cfg.attn_logit_softcap)
  scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1).astype(dt)
  out = jnp.einsum("bkgts,bskd->btkgd", probs, v.astype(dt), preferred_element_type=jnp.float32)
  return out.astype(dt).reshape(b, t, h, hd)


def _write_cache(buf: jax.Array, layer: jax.Array, new: jax.Array, slots: jax.Array) -> jax.Array:
  """buf[layer, b, slots[b, t]] = new[b, t] in place (out-of-range slots dropped)."""
  rows = jnp.broadcast_to(jnp.arange(new.shape[0])[:, None], slots.shape)
  return buf.at[layer, rows, slots].set(new.astype(buf.dtype), mode="drop")


def _mlp(x, p, cfg: ModelConfig, dt):
  gate = _dense(x, p["gate"], dt)
  up = _dense(x, p["up"], dt)
  if cfg.activation == "gelu_tanh":
    act = jax.nn.gelu(gate.astype(jnp.float32), approximate=True)
  else:
    act = jax.nn.silu(gate.astype(jnp.float32))
  return _dense((act * up.astype(jnp.float32)).astype(dt), p["down"], dt)


# ----------------------------------------------------------------------------
# The decoder
# ----------------------------------------------------------------------------
def _layer_windows(cfg: ModelConfig) -> jax.Array:
  return jnp.asarray([cfg.sliding_window if t == SLIDING else _NO_WINDOW
                      for t in cfg.layer_types], jnp.int32)


def embed_tokens(params: Params, tokens: jax.Array, cfg: ModelConfig) -> jax.Array:
  """[B, T] int -> [B, T, D] in the compute dtype (Gemma scales by sqrt(D))."""
  dt = dtype_of(cfg.dtype)
  x = jnp.take(params["embed"], tokens, axis=0).astype(dt)
  if cfg.is_gemma:
    x = x * jnp.asarray(math.sqrt(cfg.hidden_size), dt)
  return x


def lm_head(params: Params, hidden: jax.Array, cfg: ModelConfig) -> jax.Array:
  """Final-normed hidden [..., D] -> float32 logits [..., V] (soft-capped for Gemma 2)."""
  dt = dtype_of(cfg.dtype)
  lead = hidden.shape[:-1]
  h2 = hidden.reshape(-1, hidden.shape[-1]).astype(dt)   # 2-D: see `_dense`
  if "embed_t" in params:   # `layouts.decode_layout`: [D, V], a plain matmul.
    logits = jnp.dot(h2, params["embed_t"].astype(dt), preferred_element_type=jnp.float32)
  elif cfg.tie_embeddings:
    logits = jax.lax.dot_general(h2, params["embed"].astype(dt), (((1,), (1,)), ((), ())),
                                 preferred_element_type=jnp.float32)
  else:
    logits = jnp.dot(h2, params["lm_head"].astype(dt), preferred_element_type=jnp.float32)
  logits = logits.reshape(*lead, logits.shape[-1])
  return _softcap(logits, cfg.final_logit_softcap)


def forward(params: Params, tokens: jax.Array, cfg: ModelConfig, *,
            positions: jax.Array | None = None,
            cache: KVCache | None = None,
            lengths: jax.Array | None = None,
            key_mask: jax.Array | None = None,
            return_hidden: bool = False,
            remat: bool = False) -> tuple[jax.Array, KVCache | None]:
  """Runs the decoder on a block of T tokens per row.

  Args:
    params: the params pytree (`param_specs` layout).
    tokens: [B, T] int32.
    cfg: the model config (static).
    positions: [B, T] int32 positions; default 0..T-1 without a cache, and
      end_index[b] + (0..T-1) with one (they must be these with a cache).
    cache: a `KVCache`, or None for a teacher-forced pass over `tokens` alone.
    lengths: [B] int32, with a cache: how many of the T tokens of each row are
      real; end_index advances by this (default T). Tokens past it are written but
      never attended, so right-padding a ragged prefill is exact.
    key_mask: [B, T] bool, without a cache: which tokens may be attended to
      (default all; right padding needs no mask because attention is causal).
    return_hidden: return the final-normed hidden states [B, T, D] (compute dtype)
      instead of logits; `lm_head` turns them into logits.
    remat: rematerialise each layer in the backward pass (training).

  Returns:
    (logits [B, T, V] float32 or hidden [B, T, D], updated cache or None).
  """
  dt = dtype_of(cfg.dtype)
  b, t = tokens.shape
  if cache is not None:
    if positions is None:
      positions = cache.end_index[:, None] + jnp.arange(t, dtype=jnp.int32)[None, :]
    k_pos = jnp.broadcast_to(jnp.arange(cache.length, dtype=jnp.int32)[None], (b, cache.length))
    k_valid = None
  else:
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], (b, t))
    k_pos, k_valid = positions, key_mask
  positions = positions.astype(jnp.int32)

  # Under FSDP the embedding is split on "embed"; pin the activations to the batch
  # split, or XLA propagates the D split and every device computes the whole batch.
  x = sharding.with_logical_constraint(embed_tokens(params, tokens, cfg), ("batch", "seq", "embed"))
  global_rope = rope_tables(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
  local_rope = global_rope
  if cfg.rope_local_theta is not None:
    local_rope = rope_tables(positions, cfg.head_dim, cfg.rope_local_theta)
  is_sliding = jnp.asarray([lt == SLIDING for lt in cfg.layer_types])
  windows = _layer_windows(cfg)

  def layer_fn(carry, xs):
    x, cache_k, cache_v = carry
    p, idx, window, sliding = xs
    cos = jnp.where(sliding, local_rope[0], global_rope[0])
    sin = jnp.where(sliding, local_rope[1], global_rope[1])

    h = rms_norm(x, p["attn_norm"], cfg)
    q, k, v = _dense(h, p["q"], dt), _dense(h, p["k"], dt), _dense(h, p["v"], dt)
    if cfg.qkv_bias:
      q, k, v = q + p["q_bias"].astype(dt), k + p["k_bias"].astype(dt), v + p["v_bias"].astype(dt)
    if cfg.has_qk_norm:
      q, k = rms_norm(q, p["q_norm"], cfg), rms_norm(k, p["k_norm"], cfg)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)

    if cache_k is not None:
      cache_k = _write_cache(cache_k, idx, k, positions)
      cache_v = _write_cache(cache_v, idx, v, positions)
      keys, values = cache_k[idx], cache_v[idx]
    else:
      keys, values = k, v
    mask = attention_mask(positions, k_pos, window, k_valid)
    attn = _attend(q, keys, values, mask, cfg, dt)
    attn = _dense(attn, p["o"], dt, n_in=2)
    if cfg.has_post_norms:
      attn = rms_norm(attn, p["attn_post_norm"], cfg)
    x = x + attn

    h = rms_norm(x, p["mlp_norm"], cfg)
    h = _mlp(h, p, cfg, dt)
    if cfg.has_post_norms:
      h = rms_norm(h, p["mlp_post_norm"], cfg)
    x = x + h
    return (x, cache_k, cache_v), None

  if remat:
    layer_fn = jax.checkpoint(layer_fn, prevent_cse=False)
  carry = (x, None if cache is None else cache.k, None if cache is None else cache.v)
  if isinstance(params["layers"], (list, tuple)):   # `layouts.decode_layout`: unrolled.
    for i, layer in enumerate(params["layers"]):
      carry, _ = layer_fn(carry, (layer, i, windows[i], is_sliding[i]))
  else:
    xs = (params["layers"], jnp.arange(cfg.num_layers), windows, is_sliding)
    carry, _ = jax.lax.scan(layer_fn, carry, xs)
  x, cache_k, cache_v = carry

  if cache is not None:
    advance = jnp.full((b,), t, jnp.int32) if lengths is None else lengths.astype(jnp.int32)
    cache = KVCache(k=cache_k, v=cache_v, end_index=cache.end_index + advance)
  hidden = rms_norm(x, params["final_norm"], cfg)
  if return_hidden:
    return hidden, cache
  return lm_head(params, hidden, cfg), cache
