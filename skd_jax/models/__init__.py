"""Model configs, the decoder, and HF checkpoint import/export."""
from skd_jax.models.config import ModelConfig, get_config
from skd_jax.models.model import Model, logits
from skd_jax.models.transformer import KVCache, forward, init_cache, init_params
