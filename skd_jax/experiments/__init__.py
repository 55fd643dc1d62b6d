"""Multi-run experiments built on the driver (`skd_jax.train.loop.run`)."""
