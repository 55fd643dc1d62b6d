"""What several tests share: the tiny models, batch and experiment config, the driver.

    from tests import tiny
    student, teacher = tiny.params()     # cached params pytrees: copy before a donating step
    batch = tiny.batch()                 # numpy {"tokens": [8, 16] int32, "loss_mask": [8, 16] bool}
    config = tiny.tiny_config("gemma_translate", method="skd", **{"eval.limit": 2})
    proc = tiny.driver(["--config=configs/gemma_translate.py:tiny"], workdir)  # a subprocess
    tiny.finished_steps(workdir)         # steps whose checkpoint is complete
    tiny.wait_for_checkpoint(proc, workdir, 2)   # ... until one is >= 2 (proc still running)
    tiny.assert_same_export(workdir_a, workdir_b)  # bit-identical exported weights
    tiny.config_module("base"), tiny.script_module("reproduce")   # configs/, scripts/ files

The pair crosses two model families: the student is Gemma (tied head), the teacher
Qwen2 (untied head, another hidden size), with a larger init so that its
distributions are far from uniform. tests/conftest.py wraps these as fixtures;
tests/multihost_worker.py, which runs as its own process without conftest, imports
this module directly (nothing here runs JAX at import).
"""
import functools
import importlib.util
import os
import subprocess
import sys
import time

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


def _file_module(folder: str, name: str):
  """The module of ROOT/<folder>/<name>.py, loaded from its file (not a package)."""
  path = os.path.join(ROOT, folder, f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"test_{folder}_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def config_module(name: str):
  """The module of configs/<name>.py."""
  return _file_module("configs", name)


def script_module(name: str):
  """The module of scripts/<name>.py."""
  return _file_module("scripts", name)


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


def driver(flags, workdir: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
  """`python -m skd_jax.main FLAGS --workdir=WORKDIR` started in the background.

  Offline, on CPU, with float32 matmuls (as the tests' own process); stderr is piped
  (text), stdout goes to `stdout`.
  """
  # SKD_ALLOW_CODE_CHANGE: a resumed run must not depend on nobody editing skd_jax
  # in between (a shared checkout); its config and data are still checked.
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu",
             JAX_DEFAULT_MATMUL_PRECISION="highest", SKD_ALLOW_CODE_CHANGE="1")
  return subprocess.Popen([sys.executable, "-m", "skd_jax.main", *flags, f"--workdir={workdir}"],
                          cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)


def finished_steps(workdir: str) -> list[int]:
  """The steps of WORKDIR/checkpoints whose checkpoint was completely written, sorted."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit()
                and os.path.exists(os.path.join(directory, d, "_CHECKPOINT_METADATA")))


def wait_for_checkpoint(proc: subprocess.Popen, workdir: str, step: int,
                        timeout: float = 400) -> None:
  """Returns once WORKDIR holds a finished checkpoint >= `step`; fails if `proc` ends first."""
  deadline = time.time() + timeout
  while not [s for s in finished_steps(workdir) if s >= step]:
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline, "no checkpoint in time"
    time.sleep(0.05)


def assert_same_export(workdir_a: str, workdir_b: str) -> None:
  """The two runs exported bit-identical weights (WORKDIR/export/model.safetensors)."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  a = load_file(os.path.join(workdir_a, "export", "model.safetensors"))
  b = load_file(os.path.join(workdir_b, "export", "model.safetensors"))
  assert a.keys() == b.keys()
  for name in a:
    assert np.array_equal(a[name], b[name]), name
