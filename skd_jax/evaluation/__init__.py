"""skd_jax.evaluation."""
