"""SIGKILL mid-run, resume: final parameters bit-identical to an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.tiny import ROOT

FLAGS = ["--config=configs/gemma_translate.py:tiny", "--config.max_steps=8",
         "--config.checkpoint.every_steps=2", "--config.eval.every_steps=4",
         "--config.eval.limit=4", "--config.eval.batch_size=4", "--config.eval.final_split=",
         "--config.sampler.gamma=3"]


def _driver(workdir):
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu",
             JAX_DEFAULT_MATMUL_PRECISION="highest")
  return subprocess.Popen([sys.executable, "-m", "skd_jax.main", *FLAGS, f"--workdir={workdir}"],
                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _finished_steps(workdir):
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit()
                and os.path.exists(os.path.join(directory, d, "_CHECKPOINT_METADATA")))


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path):
  reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
  ref_proc = _driver(reference)            # Runs alongside the to-be-killed one.
  proc = _driver(killed)
  deadline = time.time() + 400
  while not [s for s in _finished_steps(killed) if s >= 2]:
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline, "no checkpoint in time"
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(killed, "export")), "run ended before the kill"
  killed_at = max(_finished_steps(killed))
  assert killed_at < 8
  resumed = _driver(killed)
  _, err = resumed.communicate(timeout=400)
  assert resumed.returncode == 0, err[-3000:]
  _, ref_err = ref_proc.communicate(timeout=400)
  assert ref_proc.returncode == 0, ref_err[-3000:]
  assert "resumed from step" in err
  a = load_file(os.path.join(reference, "export", "model.safetensors"))
  b = load_file(os.path.join(killed, "export", "model.safetensors"))
  assert a.keys() == b.keys()
  for name in a:
    assert np.array_equal(a[name], b[name]), name
