"""Ctrl-C mid-run: one line, exit 130, no tmp dirs, no duplicate rows, exact resume."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from skd_jax.train import interrupt
from tests import tiny

STEPS = 16
FLAGS = ["--config=configs/gemma_translate.py:tiny", f"--config.max_steps={STEPS}",
         "--config.checkpoint.every_steps=2", "--config.eval.every_steps=0",
         "--config.eval.final_split=", "--config.sampler.gamma=3"]
LINE = re.compile(r"^interrupted at step (\d+); checkpoint (\d+) is intact; "
                  r"run the same command to resume\.$")


def _driver(workdir):
  return tiny.driver(FLAGS, workdir, stdout=subprocess.PIPE)


_finished_steps = tiny.finished_steps


def _lines(text):
  """stderr lines, with tqdm's carriage-return redraws split apart."""
  return [part.strip() for line in text.splitlines() for part in line.split("\r")
          if part.strip()]


def test_interrupted_names_the_step_and_the_checkpoint():
  assert str(interrupt.Interrupted(9, 8)) == (
      "interrupted at step 9; checkpoint 8 is intact; run the same command to resume.")
  assert "no checkpoint was saved yet (the first is at step 50)" in str(
      interrupt.Interrupted(3, None, 50))


def test_stop_between_steps_defers_the_first_signal_only():
  # The handlers in place before (pytest-xdist workers ignore SIGINT) come back after.
  before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
  with interrupt.StopBetweenSteps() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)
    assert stop.requested == signal.SIGINT and stop.should_stop()
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(0.01)
  assert {sig: signal.getsignal(sig) for sig in before} == before


@pytest.mark.slow
def test_sigint_stops_cleanly_and_resumes_exactly(tmp_path):
  reference, stopped = str(tmp_path / "reference"), str(tmp_path / "stopped")
  ref_proc = _driver(reference)            # Runs alongside the interrupted one.
  proc = _driver(stopped)
  tiny.wait_for_checkpoint(proc, stopped, 2)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == interrupt.EXIT_CODE, err[-3000:]
  assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
  about = [line for line in _lines(err) if "interrupt" in line.lower()]
  assert len(about) == 1 and LINE.match(about[0]), about
  step, checkpoint = (int(g) for g in LINE.match(about[0]).groups())
  assert checkpoint == max(_finished_steps(stopped)) and checkpoint <= step < STEPS
  leftovers = [d for d in os.listdir(os.path.join(stopped, "checkpoints")) if "tmp" in d]
  assert leftovers == []
  assert not os.path.exists(os.path.join(stopped, "export"))

  resumed = _driver(stopped)
  _, err = resumed.communicate(timeout=400)
  assert resumed.returncode == 0, err[-3000:]
  assert f"resumed from step {checkpoint}" in err
  with open(os.path.join(stopped, "metrics.jsonl")) as f:
    steps = [r["step"] for r in map(json.loads, f) if r["kind"] == "train"]
  assert steps == list(range(1, STEPS + 1)), steps      # No duplicated rows.
  _, ref_err = ref_proc.communicate(timeout=400)
  assert ref_proc.returncode == 0, ref_err[-3000:]
  tiny.assert_same_export(reference, stopped)
