"""The tiny models, batch and experiment config that several tests share.

    from tests import tiny
    student, teacher = tiny.params()     # cached params pytrees: copy before a donating step
    batch = tiny.batch()                 # numpy {"tokens": [8, 16] int32, "loss_mask": [8, 16] bool}
    config = tiny.tiny_config("gemma_translate", method="skd", **{"eval.limit": 2})

The pair crosses two model families: the student is Gemma (tied head), the teacher
Qwen2 (untied head, another hidden size), with a larger init so that its
distributions are far from uniform. tests/conftest.py wraps these as fixtures;
tests/multihost_worker.py, which runs as its own process without conftest, imports
this module directly (nothing here runs JAX at import).
"""
import functools
import importlib.util
import os

import numpy as np

from skd_jax.models import config as mconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STUDENT = mconfig.get_config("tiny-gemma")
TEACHER = mconfig.get_config("tiny-qwen2", hidden_size=48)


@functools.lru_cache(maxsize=None)
def params():
  """(student params, teacher params) of STUDENT / TEACHER, the same in every process."""
  import jax  # pylint: disable=g-import-not-at-top
  from skd_jax.models import transformer  # pylint: disable=g-import-not-at-top
  student = transformer.init_params(STUDENT, jax.random.PRNGKey(0))
  teacher = transformer.init_params(TEACHER, jax.random.PRNGKey(1), std=0.3)
  return student, teacher


def batch(rows: int = 8, length: int = 16, seed: int = 0) -> dict:
  """Random tokens [rows, length] and a loss mask of a different span on every row.

  Row b learns from positions 2 + b % 5 up to length - b % 3, so rows hold different
  token counts (a sharded or strided split must weight them right).
  """
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, STUDENT.vocab_size, (rows, length)).astype(np.int32)
  loss_mask = np.zeros((rows, length), bool)
  for b in range(rows):
    loss_mask[b, 2 + b % 5: length - b % 3] = True
  return dict(tokens=tokens, loss_mask=loss_mask)


def config_module(name: str):
  """The module of configs/<name>.py, loaded from its file (configs/ is not a package)."""
  path = os.path.join(ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"test_cfg_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def tiny_config(name: str = "gemma_translate", **overrides):
  """The `configs/<name>.py:tiny` experiment, shrunk further (2 steps, no export).

  `overrides` are dotted config keys, e.g. `**{"eval.limit": 2}` or `method="sft"`.
  """
  c = config_module(name).get_config("tiny")
  c.max_steps = 2
  c.eval.every_steps = 0
  c.eval.limit = 4
  c.eval.batch_size = 4
  c.eval.final_split = ""
  c.export = False
  c.checkpoint.every_steps = 100
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c
