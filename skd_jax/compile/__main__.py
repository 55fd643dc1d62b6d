"""`python -m skd_jax.compile ...` (see `skd_jax.compile`)."""
from skd_jax.compile.run import main

main()
