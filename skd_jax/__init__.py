"""skd_jax: Speculative Knowledge Distillation (Xu et al., ICLR 2025) in JAX/Flax."""
