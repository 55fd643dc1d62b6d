"""The interleaved SKD sampler (see `sampler.py` for the algorithm and its invariants)."""
from skd_jax.sampling.api import SampleOutput, sample
from skd_jax.sampling.config import METHODS, SamplerConfig
from skd_jax.sampling.sampler import Rollout, rollout, row_keys_for
