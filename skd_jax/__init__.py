"""skd_jax: Speculative Knowledge Distillation (Xu et al., ICLR 2025) in JAX/Flax."""
from skd_jax.models.config import ModelConfig, get_config
from skd_jax.models.hf import CheckpointError, export_hf, load_model, load_tokenizer
from skd_jax.models.model import Model, logits

__all__ = [
    "CheckpointError", "Model", "ModelConfig", "export_hf", "get_config", "load_model",
    "load_tokenizer", "logits",
]
