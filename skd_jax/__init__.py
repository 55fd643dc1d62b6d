"""skd_jax: Speculative Knowledge Distillation (Xu et al., ICLR 2025) in JAX/Flax.

The public surface (DESIGN.md): models and checkpoints (`load_model`, `logits`,
`export_hf`, `load_tokenizer`), the interleaved sampler (`sample`,
`SamplerConfig`), text in and text out (`skd_jax.text`) and the divergences
(`divergence`).
"""
from skd_jax.losses import divergence
from skd_jax.models.config import ModelConfig, get_config
from skd_jax.models.hf import CheckpointError, export_hf, load_model, load_tokenizer
from skd_jax.models.model import Model, logits
from skd_jax.sampling import SampleOutput, SamplerConfig, sample
from skd_jax import text

__all__ = [
    "CheckpointError", "Model", "ModelConfig", "SampleOutput", "SamplerConfig", "divergence",
    "export_hf", "get_config", "load_model", "load_tokenizer", "logits", "sample", "text",
]
