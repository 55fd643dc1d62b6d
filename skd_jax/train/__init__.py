"""skd_jax.train."""
