"""SIGKILL mid-run, resume: final parameters bit-identical to an uninterrupted run."""
import os
import signal
import subprocess

import pytest

from tests import tiny

FLAGS = ["--config=configs/gemma_translate.py:tiny", "--config.max_steps=8",
         "--config.checkpoint.every_steps=2", "--config.eval.every_steps=4",
         "--config.eval.limit=4", "--config.eval.batch_size=4", "--config.eval.final_split=",
         "--config.sampler.gamma=3"]


def _driver(workdir):
  return tiny.driver(FLAGS, workdir, stdout=subprocess.DEVNULL)


_finished_steps = tiny.finished_steps


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path):
  reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
  ref_proc = _driver(reference)            # Runs alongside the to-be-killed one.
  proc = _driver(killed)
  tiny.wait_for_checkpoint(proc, killed, 2)
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
  tiny.assert_same_export(reference, killed)
