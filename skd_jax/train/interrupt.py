"""Ctrl-C and SIGTERM stop a run cleanly between steps.

    with interrupt.StopBetweenSteps() as stop:
      for step in range(start, total):
        if stop.should_stop():           # agreed by every process
          break
        ...one step, checkpoint...
    ckpt.wait()                          # finish the save in flight: no *-tmp dirs
    if stop.requested:
      raise interrupt.Interrupted(done, ckpt.latest_step())

Inside the block the first SIGINT / SIGTERM only sets a flag: the step (or the
evaluation) in progress finishes, pending asynchronous saves are finished, and
`Interrupted` carries the one line `skd_jax.main` prints before exiting with
status 130 ("interrupted at step 9; checkpoint 8 is intact; run the same
command to resume"). A second signal stops at once (KeyboardInterrupt).
Outside the block (loading, compiling, the final evaluation) a signal is a
KeyboardInterrupt: nothing of the run's checkpoints is being written there
that orbax does not already discard.
"""
from __future__ import annotations

import signal
import threading
from typing import Callable

import numpy as np

EXIT_CODE = 130        # 128 + SIGINT, what shells report for Ctrl-C.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
  """A run stopped by a signal between steps; str() is the one line to print."""

  def __init__(self, step: int, checkpoint: int | None, first_checkpoint: int | None = None):
    self.step, self.checkpoint = int(step), checkpoint
    if checkpoint is not None:
      saved = f"checkpoint {checkpoint} is intact; run the same command to resume"
    else:
      later = f" (the first is at step {first_checkpoint})" if first_checkpoint else ""
      saved = f"no checkpoint was saved yet{later}; the same command starts over"
    super().__init__(f"interrupted at step {self.step}; {saved}.")


def _raise_keyboard_interrupt(signum, frame):
  del signum, frame
  raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
  """SIGTERM raises KeyboardInterrupt like Ctrl-C (main thread only)."""
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


class StopBetweenSteps:
  """Context manager: the first SIGINT/SIGTERM requests a stop, a second raises.

  Attributes:
    requested: the signal number received (None when none).
  """

  def __init__(self, agree: Callable[[int], int] | None = None):
    """agree: maps this process's flag (0/1) to the flag of all processes
    (e.g. a max over processes), so every host stops at the same step."""
    self.requested: int | None = None
    self._agree = agree
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested is not None:
      raise KeyboardInterrupt
    self.requested = signum

  def __enter__(self) -> "StopBetweenSteps":
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def should_stop(self) -> bool:
    """Whether to stop before the next step (the same answer on every process)."""
    flag = int(self.requested is not None)
    if self._agree is not None:
      flag = int(np.asarray(self._agree(flag)))
      if flag and self.requested is None:
        self.requested = signal.SIGTERM   # Another host was told to stop.
    return bool(flag)
