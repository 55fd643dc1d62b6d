"""skd_jax.models."""
