"""Acceptance-targeting K: SKD's K adjusted between steps to hold the replacement rate.

Beyond the paper. The paper fixes K (25) and its appendix found a linearly
decaying K worse; what K means depends on the vocabulary and on how far the
student is from the teacher (docs/RESULTS.md: K = 25 of 600 ids lets ~90% of an
untrained student's tokens through). This controller makes the curriculum
explicit instead: it holds the fraction of sampled tokens the teacher writes
(the replacement rate) near a target, raising K when the teacher replaces too
much and lowering it when it replaces too little.

The rate falls with K (a larger top-K accepts more drafts), roughly as a power
law r(K) ~ c K^-a over the ranks a student's tokens take under the teacher. So
the update works in log K on the log error:

    log K' = log K + gain * log(rate / target)

clipped to a factor `max_factor` per step, with no change while
|rate - target| <= band (measurement noise) or when the step sampled nothing
(rate nan). For r = c K^-a the error shrinks by |1 - gain * a| per step:
stable for gain * a < 2, so the default gain 0.5 is stable up to a = 4. K is
held as a float (small corrections accumulate) and used rounded
(`acceptance_k`). Pure functions of numbers: the driver keeps the state.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

from skd_jax.train import methods


@dataclasses.dataclass(frozen=True)
class Control:
  """Settings of the controller (config keys `sampler.target_*`).

  target: replacement rate to hold, in (0, 1). band: half-width of the dead band
  around it (>= 0). k_min, k_max: bounds of K (k_max = the vocabulary size when
  the config says 0). gain: log-K step per unit of log error. max_factor: the
  most K changes by in one step (> 1).
  """
  target: float
  band: float = 0.05
  k_min: int = 1
  k_max: int = 1 << 30
  gain: float = 0.5
  max_factor: float = 2.0

  def __post_init__(self):
    if not 0.0 < self.target < 1.0:
      raise ValueError(f"target replacement rate {self.target} must be in (0, 1) "
                       "(sampler.target_replacement_rate; 0 turns the controller off).")
    if self.band < 0:
      raise ValueError(f"band={self.band} must be >= 0 (sampler.target_band).")
    if not 1 <= self.k_min <= self.k_max:
      raise ValueError(f"K bounds [{self.k_min}, {self.k_max}] need 1 <= k_min <= k_max "
                       "(sampler.target_k_min / target_k_max).")
    if self.gain <= 0 or self.max_factor <= 1:
      raise ValueError(f"gain={self.gain} must be > 0 and max_factor={self.max_factor} > 1 "
                       "(sampler.target_gain).")


def from_config(sampler, vocab_size: int, initial_k: int) -> tuple[Control, float] | None:
  """(Control, initial K) from a config's `sampler` block; None when the target is 0 (off)."""
  get = sampler.get if hasattr(sampler, "get") else (lambda k, d: getattr(sampler, k, d))
  target = float(get("target_replacement_rate", 0.0))
  if target == 0.0:
    return None
  k_max = int(get("target_k_max", 0)) or vocab_size
  control = Control(target=target, band=float(get("target_band", 0.05)),
                    k_min=int(get("target_k_min", 1)), k_max=min(k_max, vocab_size),
                    gain=float(get("target_gain", 0.5)))
  return control, float(min(max(initial_k, control.k_min), control.k_max))


def update(k: float, rate: float, control: Control) -> float:
  """The next step's K (a float in [k_min, k_max]) after a step whose rate was `rate`."""
  if not math.isfinite(rate) or abs(rate - control.target) <= control.band:
    return k
  error = math.log(max(rate, 1e-6) / control.target)   # > 0: the teacher replaced too much
  factor = min(max(math.exp(control.gain * error), 1.0 / control.max_factor), control.max_factor)
  return min(max(k * factor, float(control.k_min)), float(control.k_max))


def acceptance_k(k: float) -> int:
  """The integer K the sampler tests with (K >= 1: the controller never turns SKD into
  teacher sampling)."""
  return max(int(round(k)), 1)


STATE_FILE = "acceptance_k.json"


class Tracker:
  """The driver's controller state: K per step, saved beside each checkpoint.

      tracker = Tracker.create(config.sampler, vocab_size, workdir)   # None when off
      k = tracker.k_for_step()          # the SKD rollout's K this step
      logged = tracker.observe(rate)    # {"acceptance_k": k} and the next K
      tracker.save(step)                # at every checkpoint (resume continues exactly)

  `WORKDIR/acceptance_k.json` maps each saved step to the K the next step uses
  (a float; JSON keeps it exactly), so a resumed run tests with the K the
  uninterrupted run would have.
  """

  def __init__(self, control: Control, k: float, workdir: str):
    self.control, self.k, self.workdir = control, float(k), workdir

  @classmethod
  def create(cls, sampler, vocab_size: int, workdir: str, restore_step: int | None = None):
    made = from_config(sampler, vocab_size, int(sampler.top_k))
    if made is None:
      return None
    tracker = cls(made[0], made[1], workdir)
    if restore_step is not None:
      tracker.restore(restore_step)
    return tracker

  def k_for_step(self) -> int:
    return acceptance_k(self.k)

  def observe(self, rate: float) -> dict[str, float]:
    """Logs the K this step used and moves K by the step's replacement rate."""
    used = self.k_for_step()
    self.k = update(self.k, rate, self.control)
    return {"acceptance_k": float(used)}

  def _path(self) -> str:
    return os.path.join(self.workdir, STATE_FILE)

  def _read(self) -> dict[str, float]:
    if not os.path.exists(self._path()):
      return {}
    with open(self._path()) as f:
      return json.load(f)

  def save(self, step: int) -> None:
    states = self._read()
    states[str(int(step))] = self.k
    tmp = f"{self._path()}.tmp{os.getpid()}"   # hosts sharing a workdir write the same K
    with open(tmp, "w") as f:
      json.dump(states, f)
    os.replace(tmp, self._path())

  def restore(self, step: int) -> None:
    """The K saved with checkpoint `step` (a run saved before the controller was on
    keeps its configured start)."""
    states = self._read()
    if str(int(step)) in states:
      self.k = float(states[str(int(step))])


def tracker_of(run, restore_step: int | None = None) -> Tracker | None:
  """The driver's Tracker of a run (`run_setup.RunSetup`): None when
  `sampler.target_replacement_rate` is 0 or the method samples no SKD rows.
  K is bounded by the vocabulary sampled over (`sampler.shared_vocab_size` or
  the student's); `restore_step` is the checkpoint the run resumes from."""
  config = run.config
  if methods.SKD not in methods.METHODS[config.method].sources:
    return None
  vocab = int(config.sampler.get("shared_vocab_size", 0) or 0) or run.student.config.vocab_size
  return Tracker.create(config.sampler, vocab, run.workdir, restore_step)
