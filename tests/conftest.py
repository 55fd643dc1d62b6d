"""Test set-up: 8 simulated CPU devices, no network, float32 matmuls; shared fixtures.

Fixtures (the objects live in tests/tiny.py, which subprocess workers import too, and
tests/tiny_sampling.py):
  tiny_params       (student params, teacher params) of the tiny Gemma / Qwen2 pair (session)
  tiny_batch        a fresh numpy batch {"tokens": [8, 16], "loss_mask": [8, 16]}
  pair              (student, teacher) Models: tiny Gemmas of 2 and 3 layers (session)
  small_vocab_pair  (student, teacher) Models: Qwen2-style with 12 ids, for exact laws
"""
import os

# Must happen before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def tiny_params():
  """tests/tiny.py's (student, teacher) params; a donating step needs a copy."""
  from tests import tiny  # pylint: disable=g-import-not-at-top
  return tiny.params()


@pytest.fixture
def tiny_batch():
  """A fresh tests/tiny.py batch (numpy; the test may change it)."""
  from tests import tiny  # pylint: disable=g-import-not-at-top
  return tiny.batch()


@pytest.fixture(scope="session")
def pair():
  """tests/tiny_sampling.py's (student, teacher) Models of vocabulary 128."""
  from tests import tiny_sampling  # pylint: disable=g-import-not-at-top
  return tiny_sampling.pair()


@pytest.fixture(scope="session")
def small_vocab_pair():
  """tests/tiny_sampling.py's (student, teacher) Models of vocabulary 12."""
  from tests import tiny_sampling  # pylint: disable=g-import-not-at-top
  return tiny_sampling.small_vocab_pair()


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long-running test (still run in CI)")
