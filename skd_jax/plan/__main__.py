"""`python -m skd_jax.plan ...` (see `skd_jax.plan`)."""
from skd_jax.plan.cli import main

main()
