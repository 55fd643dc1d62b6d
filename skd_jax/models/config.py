"""Model configurations: one decoder, configured per family (Gemma 1/2/3, Qwen2).

A `ModelConfig` is frozen and hashable, so it can be a static argument of
`jax.jit`. Per-layer attention types are a tuple of strings, as in transformers'
`layer_types` ("sliding_attention" | "full_attention").
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

FAMILIES = ("gemma", "gemma2", "gemma3", "qwen2")
SLIDING = "sliding_attention"
FULL = "full_attention"

# transformers `model_type` -> our family.
HF_MODEL_TYPES = {
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
    "qwen2": "qwen2",
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture, dtypes and special tokens of a decoder-only LM.

  Attributes:
    family: "gemma" | "gemma2" | "gemma3" | "qwen2"; selects norms, activation and
      the Gemma-specific tricks (embedding scale, soft-capping, QK-norm, ...).
    vocab_size, hidden_size, intermediate_size, num_layers, num_heads,
    num_kv_heads, head_dim: the usual shapes (GQA when num_kv_heads < num_heads).
    layer_types: one of SLIDING / FULL per layer.
    sliding_window: window of SLIDING layers; a query at position p sees keys at
      positions k with p - window < k <= p (transformers' convention).
    rope_theta: RoPE base of FULL layers (and of all layers when
      rope_local_theta is None); rope_scaling: linear position-scaling factor of
      FULL layers (Gemma 3 >= 4B uses 8).
    rope_local_theta: RoPE base of SLIDING layers (Gemma 3: 10,000).
    query_pre_attn_scalar: queries are scaled by this ** -0.5 (default head_dim).
    attn_logit_softcap / final_logit_softcap: tanh soft-capping (Gemma 2).
    qkv_bias: q/k/v projection biases (Qwen2).
    tie_embeddings: the LM head is the embedding matrix.
    dtype: compute dtype (activations, matmul inputs); matmuls accumulate in f32.
    param_dtype: dtype params are created/loaded in.
    bos_id, eos_ids, pad_id: special tokens (eos_ids a tuple: Gemma's
      instruction-tuned models stop at <eos> and <end_of_turn>).
  """
  family: str
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  layer_types: tuple[str, ...] = ()
  sliding_window: int | None = None
  rope_theta: float = 10_000.0
  rope_scaling: float = 1.0
  rope_local_theta: float | None = None
  query_pre_attn_scalar: float | None = None
  attn_logit_softcap: float | None = None
  final_logit_softcap: float | None = None
  qkv_bias: bool = False
  tie_embeddings: bool = True
  rms_norm_eps: float = 1e-6
  max_position_embeddings: int = 8192
  dtype: str = "float32"
  param_dtype: str = "float32"
  bos_id: int | None = 2
  eos_ids: tuple[int, ...] = (1,)
  pad_id: int = 0
  name: str = "custom"

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"Unknown model family {self.family!r}; expected one of {FAMILIES}.")
    if not self.layer_types:
      object.__setattr__(self, "layer_types", (FULL,) * self.num_layers)
    if len(self.layer_types) != self.num_layers:
      raise ValueError(
          f"layer_types has {len(self.layer_types)} entries for {self.num_layers} layers. To change "
          f"the depth use cfg.keep_layers(range({self.num_layers})) (keeps those layers' attention "
          f"types) or cfg.replace(num_layers={self.num_layers}) (the family's layer pattern), not "
          "dataclasses.replace.")
    bad = set(self.layer_types) - {SLIDING, FULL}
    if bad:
      raise ValueError(f"Unknown layer types {sorted(bad)}; expected {SLIDING!r} or {FULL!r}.")
    if SLIDING in self.layer_types and not self.sliding_window:
      raise ValueError("Sliding-window layers need `sliding_window` > 0.")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}.")
    for field in ("dtype", "param_dtype"):
      if getattr(self, field) not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"{field}={getattr(self, field)!r}; use 'float32' or 'bfloat16'.")
    object.__setattr__(self, "eos_ids", tuple(self.eos_ids))

  # -- family traits ---------------------------------------------------------
  @property
  def is_gemma(self) -> bool:
    return self.family.startswith("gemma")

  @property
  def has_post_norms(self) -> bool:
    """Gemma 2/3 normalise the outputs of attention and MLP too."""
    return self.family in ("gemma2", "gemma3")

  @property
  def has_qk_norm(self) -> bool:
    return self.family == "gemma3"

  @property
  def activation(self) -> str:
    return "gelu_tanh" if self.is_gemma else "silu"

  @property
  def query_scale(self) -> float:
    return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

  def replace(self, **kw) -> "ModelConfig":
    """dataclasses.replace; a new `num_layers` re-derives the family's layer pattern."""
    if "num_layers" in kw and "layer_types" not in kw:
      kw["layer_types"] = default_layer_types(self.family, kw["num_layers"])
    return dataclasses.replace(self, **kw)

  def keep_layers(self, indices) -> "ModelConfig":
    """The config of the decoder layers `indices` (in order), e.g. `range(2)` for the first two.

    Each kept layer keeps its attention type (sliding / full, hence its RoPE base),
    so `cfg.keep_layers(range(0, 18, 3))` of Gemma 3 270M is a consistent 6-layer
    Gemma 3. `Model.keep_layers` prunes the params to match.

    Raises:
      ValueError: indices empty, repeated or outside [0, num_layers).
    """
    indices = [int(i) for i in indices]
    n = self.num_layers
    if not indices or any(not 0 <= i < n for i in indices) or len(set(indices)) != len(indices):
      raise ValueError(f"keep_layers={indices}: give distinct layer indices in [0, {n}).")
    return dataclasses.replace(self, num_layers=len(indices),
                               layer_types=tuple(self.layer_types[i] for i in indices),
                               name=f"{self.name}-{len(indices)}of{n}l")

  def num_params(self) -> int:
    """Parameter count (embedding counted once when tied)."""
    d, f, h, k, hd = (self.hidden_size, self.intermediate_size, self.num_heads,
                      self.num_kv_heads, self.head_dim)
    attn = d * hd * (h + 2 * k) + h * hd * d + (hd * (h + 2 * k) if self.qkv_bias else 0)
    norms = d * (4 if self.has_post_norms else 2) + (2 * hd if self.has_qk_norm else 0)
    layer = attn + 3 * d * f + norms
    head = 0 if self.tie_embeddings else d * self.vocab_size
    return self.vocab_size * d + self.num_layers * layer + d + head


def _alternating(n: int) -> tuple[str, ...]:
  """Gemma 2: even layers sliding, odd layers global."""
  return tuple(SLIDING if i % 2 == 0 else FULL for i in range(n))


def _five_to_one(n: int) -> tuple[str, ...]:
  """Gemma 3: five sliding layers then one global layer."""
  return tuple(FULL if (i + 1) % 6 == 0 else SLIDING for i in range(n))


def default_layer_types(family: str, n: int) -> tuple[str, ...]:
  """The released models' attention pattern of a family, for n layers."""
  return {"gemma2": _alternating, "gemma3": _five_to_one}.get(family, lambda n: (FULL,) * n)(n)


def _gemma(name, **kw):
  return ModelConfig(family="gemma", name=name, **kw)


def _gemma2(name, n, **kw):
  return ModelConfig(family="gemma2", name=name, num_layers=n, layer_types=_alternating(n),
                     attn_logit_softcap=50.0, final_logit_softcap=30.0, **kw)


def _gemma3(name, n, **kw):
  return ModelConfig(family="gemma3", name=name, num_layers=n, layer_types=_five_to_one(n),
                     rope_theta=1_000_000.0, rope_local_theta=10_000.0, **kw)


def _qwen2(name, **kw):
  return ModelConfig(family="qwen2", name=name, qkv_bias=True, rope_theta=1_000_000.0,
                     bos_id=None, rms_norm_eps=1e-6, **kw)


# Released sizes (numbers from the checkpoints' config.json).
PRESETS: dict[str, ModelConfig] = {
    "gemma-2b": _gemma("gemma-2b", vocab_size=256_000, hidden_size=2048, intermediate_size=16_384,
                       num_layers=18, num_heads=8, num_kv_heads=1, head_dim=256),
    "gemma-7b": _gemma("gemma-7b", vocab_size=256_000, hidden_size=3072, intermediate_size=24_576,
                       num_layers=28, num_heads=16, num_kv_heads=16, head_dim=256),
    "gemma-2-2b": _gemma2("gemma-2-2b", 26, vocab_size=256_000, hidden_size=2304,
                          intermediate_size=9216, num_heads=8, num_kv_heads=4, head_dim=256,
                          sliding_window=4096, query_pre_attn_scalar=256),
    "gemma-2-9b": _gemma2("gemma-2-9b", 42, vocab_size=256_000, hidden_size=3584,
                          intermediate_size=14_336, num_heads=16, num_kv_heads=8, head_dim=256,
                          sliding_window=4096, query_pre_attn_scalar=256),
    "gemma-3-270m": _gemma3("gemma-3-270m", 18, vocab_size=262_144, hidden_size=640,
                            intermediate_size=2048, num_heads=4, num_kv_heads=1, head_dim=256,
                            sliding_window=512, query_pre_attn_scalar=256,
                            max_position_embeddings=32_768),
    "gemma-3-1b": _gemma3("gemma-3-1b", 26, vocab_size=262_144, hidden_size=1152,
                          intermediate_size=6912, num_heads=4, num_kv_heads=1, head_dim=256,
                          sliding_window=512, query_pre_attn_scalar=256,
                          max_position_embeddings=32_768),
    "qwen2-0.5b": _qwen2("qwen2-0.5b", vocab_size=151_936, hidden_size=896, intermediate_size=4864,
                         num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64,
                         tie_embeddings=True, eos_ids=(151_645, 151_643), pad_id=151_643,
                         max_position_embeddings=32_768),
    "qwen2-1.5b": _qwen2("qwen2-1.5b", vocab_size=151_936, hidden_size=1536,
                         intermediate_size=8960, num_layers=28, num_heads=12, num_kv_heads=2,
                         head_dim=128, tie_embeddings=True, eos_ids=(151_645, 151_643),
                         pad_id=151_643, max_position_embeddings=32_768),
    "qwen2-7b": _qwen2("qwen2-7b", vocab_size=152_064, hidden_size=3584, intermediate_size=18_944,
                       num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128,
                       tie_embeddings=False, eos_ids=(151_645, 151_643), pad_id=151_643,
                       max_position_embeddings=32_768),
}

# Tiny models of every family, for tests and `:tiny` configs (vocab 128).
_TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=2,
             head_dim=16, max_position_embeddings=512)
PRESETS.update({
    "tiny-gemma": _gemma("tiny-gemma", num_layers=2, **{**_TINY, "num_kv_heads": 1}),
    "tiny-gemma2": _gemma2("tiny-gemma2", 4, sliding_window=8, query_pre_attn_scalar=24, **_TINY),
    "tiny-gemma3": _gemma3("tiny-gemma3", 6, sliding_window=8, query_pre_attn_scalar=16,
                           rope_scaling=2.0, **_TINY),
    "tiny-qwen2": _qwen2("tiny-qwen2", num_layers=2, tie_embeddings=False, eos_ids=(1,),
                         pad_id=0, **_TINY),
})


# Hub ids -> the preset with their shapes, for tools that need a model's shapes
# but not its weights (`skd_jax.compile`, `skd_jax.plan --config`) on a host
# without the checkpoint. The instruction-tuned and base models share shapes.
# The driver itself never uses this table: it downloads hub ids.
HUB_PRESETS: dict[str, str] = {
    "google/gemma-2b": "gemma-2b",
    "google/gemma-2b-it": "gemma-2b",
    "google/gemma-7b": "gemma-7b",
    "google/gemma-7b-it": "gemma-7b",
    "google/gemma-2-2b": "gemma-2-2b",
    "google/gemma-2-2b-it": "gemma-2-2b",
    "google/gemma-2-9b": "gemma-2-9b",
    "google/gemma-2-9b-it": "gemma-2-9b",
    "google/gemma-3-270m": "gemma-3-270m",
    "google/gemma-3-270m-it": "gemma-3-270m",
    "google/gemma-3-1b-pt": "gemma-3-1b",
    "google/gemma-3-1b-it": "gemma-3-1b",
    "Qwen/Qwen2-0.5B": "qwen2-0.5b",
    "Qwen/Qwen2-0.5B-Instruct": "qwen2-0.5b",
    "Qwen/Qwen2-1.5B": "qwen2-1.5b",
    "Qwen/Qwen2-1.5B-Instruct": "qwen2-1.5b",
    "Qwen/Qwen2-7B": "qwen2-7b",
    "Qwen/Qwen2-7B-Instruct": "qwen2-7b",
}


def preset_for_hub_id(path: str) -> str | None:
  """The preset name with the shapes of hub id `path` (None if not in HUB_PRESETS)."""
  return HUB_PRESETS.get(path)


def get_config(name: str, **overrides) -> ModelConfig:
  """A preset by name (see `PRESETS`), with optional field overrides."""
  if name not in PRESETS:
    raise ValueError(f"Unknown model preset {name!r}; known presets: {sorted(PRESETS)}.")
  return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def _rope_params(hf: Mapping[str, Any]) -> tuple[float, float, float | None]:
  """(global theta, global linear scaling, local theta) from an HF config dict."""
  rp = hf.get("rope_parameters") or {}
  if FULL in rp or SLIDING in rp:   # transformers 5, per layer type
    full, local = rp.get(FULL, {}), rp.get(SLIDING, {})
  else:
    full, local = rp, {}
  theta = full.get("rope_theta", hf.get("rope_theta", 10_000.0))
  scaling_cfg = full if full.get("rope_type", "default") != "default" else (hf.get("rope_scaling") or {})
  rope_type = scaling_cfg.get("rope_type", scaling_cfg.get("type", "default"))
  if rope_type not in ("default", "linear"):
    raise NotImplementedError(f"RoPE type {rope_type!r} is not supported (only default and linear).")
  factor = float(scaling_cfg.get("factor", 1.0)) if rope_type == "linear" else 1.0
  local_theta = local.get("rope_theta", hf.get("rope_local_base_freq"))
  return float(theta), factor, (float(local_theta) if local_theta is not None else None)


def from_hf_config(hf: Mapping[str, Any], *, dtype: str = "float32",
                   param_dtype: str | None = None) -> ModelConfig:
  """Builds a ModelConfig from a transformers config dict (config.json contents)."""
  model_type = hf.get("model_type")
  if model_type not in HF_MODEL_TYPES:
    raise ValueError(f"Unsupported architecture model_type={model_type!r} "
                     f"(architectures={hf.get('architectures')}); supported: {sorted(HF_MODEL_TYPES)}.")
  if "text_config" in hf and model_type == "gemma3":   # multimodal wrapper: take the text tower
    hf = {**hf["text_config"], "model_type": "gemma3_text"}
  family = HF_MODEL_TYPES[model_type]
  n = hf["num_hidden_layers"]
  heads = hf["num_attention_heads"]
  layer_types = hf.get("layer_types")
  if not layer_types:
    layer_types = default_layer_types(family, n)
  if family == "qwen2" and not hf.get("use_sliding_window", False):
    layer_types = (FULL,) * n
  theta, factor, local_theta = _rope_params(hf)
  eos = hf.get("eos_token_id")
  eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else ((eos,) if eos is not None else ())
  return ModelConfig(
      family=family,
      name=hf.get("_name_or_path") or model_type,
      vocab_size=hf["vocab_size"],
      hidden_size=hf["hidden_size"],
      intermediate_size=hf["intermediate_size"],
      num_layers=n,
      num_heads=heads,
      num_kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
      layer_types=tuple(layer_types),
      sliding_window=hf.get("sliding_window") if SLIDING in layer_types else None,
      rope_theta=theta,
      rope_scaling=factor,
      rope_local_theta=local_theta if family == "gemma3" else None,
      query_pre_attn_scalar=hf.get("query_pre_attn_scalar") if family != "gemma" else None,
      attn_logit_softcap=hf.get("attn_logit_softcapping"),
      final_logit_softcap=hf.get("final_logit_softcapping"),
      qkv_bias=family == "qwen2",
      tie_embeddings=bool(hf.get("tie_word_embeddings", family != "qwen2")),
      rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
      max_position_embeddings=hf.get("max_position_embeddings", 8192),
      dtype=dtype,
      param_dtype=param_dtype or dtype,
      bos_id=hf.get("bos_token_id"),
      eos_ids=eos_ids,
      pad_id=hf.get("pad_token_id") if hf.get("pad_token_id") is not None else 0,
  )


def to_hf_config(cfg: ModelConfig) -> dict[str, Any]:
  """The transformers config dict of `cfg` (inverse of `from_hf_config`)."""
  model_type, arch = {
      "gemma": ("gemma", "GemmaForCausalLM"),
      "gemma2": ("gemma2", "Gemma2ForCausalLM"),
      "gemma3": ("gemma3_text", "Gemma3ForCausalLM"),
      "qwen2": ("qwen2", "Qwen2ForCausalLM"),
  }[cfg.family]
  full_rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
  if cfg.rope_scaling != 1.0:
    full_rope = {"rope_type": "linear", "rope_theta": cfg.rope_theta, "factor": cfg.rope_scaling}
  rope = full_rope
  if cfg.family == "gemma3":
    rope = {FULL: full_rope,
            SLIDING: {"rope_type": "default", "rope_theta": cfg.rope_local_theta or cfg.rope_theta}}
  hf = {
      "model_type": model_type,
      "architectures": [arch],
      "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.hidden_size,
      "intermediate_size": cfg.intermediate_size,
      "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads,
      "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim,
      "layer_types": list(cfg.layer_types),
      "rope_parameters": rope,
      "rms_norm_eps": cfg.rms_norm_eps,
      "max_position_embeddings": cfg.max_position_embeddings,
      "tie_word_embeddings": cfg.tie_embeddings,
      "bos_token_id": cfg.bos_id,
      "eos_token_id": list(cfg.eos_ids) if len(cfg.eos_ids) != 1 else cfg.eos_ids[0],
      "pad_token_id": cfg.pad_id,
      "dtype": cfg.param_dtype,
  }
  if cfg.is_gemma:
    hf["hidden_activation"] = "gelu_pytorch_tanh"
    hf["hidden_act"] = "gelu_pytorch_tanh"
  else:
    hf["hidden_act"] = "silu"
    hf["use_sliding_window"] = SLIDING in cfg.layer_types
  if cfg.family in ("gemma2", "gemma3"):
    hf["sliding_window"] = cfg.sliding_window
    hf["query_pre_attn_scalar"] = cfg.query_pre_attn_scalar or cfg.head_dim
    hf["attn_logit_softcapping"] = cfg.attn_logit_softcap
    hf["final_logit_softcapping"] = cfg.final_logit_softcap
  elif cfg.family == "qwen2" and SLIDING in cfg.layer_types:
    hf["sliding_window"] = cfg.sliding_window
  return hf


def dtype_of(name: str):
  import jax.numpy as jnp  # local: keep this module importable without jax
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]
