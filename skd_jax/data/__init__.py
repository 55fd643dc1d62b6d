"""skd_jax.data."""
