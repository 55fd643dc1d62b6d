"""skd_jax.sampling."""
