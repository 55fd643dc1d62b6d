"""The one timing helper of bench/, and what the scripts record about the machine.

    import benchutil   # bench/ is on sys.path when a bench script runs
    t = benchutil.measure(lambda: step(state, batch), repeats=5)   # 1 warm-up, then 5 timed
    t.median_s          # the figure to report (seconds per call)
    t.as_dict()         # {"median_s", "all_s", "warmup_s", "loadavg_before", "loadavg_after"}
    out, s = benchutil.timed(fn)                   # one call, when the caller schedules calls
    benchutil.emit_result(results, args.json)      # "RESULT {json}" line + the JSON file
    per_step = benchutil.measure(lambda: loop(n), repeats=3).median_s / n   # a jitted loop of n

Conventions (every bench script follows them, so figures compare):
  * `fn` takes no arguments; the clock stops only after its output is ready
    (`jax.block_until_ready` on the returned pytree, when jax is imported), so JAX's
    asynchronous dispatch never makes a call look fast. Return what the work computed.
  * Warm-up calls (compilation, first-touch) are timed apart (`warmup_s`), never in
    the median. The median of N, not the mean: one preempted call on a shared
    2-core machine moves a mean, not a median.
  * `setup`, if given, runs before every call outside the clock (e.g. a fresh cache
    for a function that donates it); its result is passed to `fn`.
  * The 1-minute load average is read before the first and after the last call:
    report it beside the figure (`machine()` records it at start too).
This module imports jax only when a caller has (a subprocess-driving script such as
compile_topologies.py stays jax-free).
"""
from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loadavg() -> float:
  """The 1-minute load average (nan where the OS has none)."""
  try:
    return round(os.getloadavg()[0], 2)
  except OSError:
    return float("nan")


def _ready(out):
  """`out` with every JAX array in it computed (a no-op when jax is not imported)."""
  if "jax" in sys.modules:
    sys.modules["jax"].block_until_ready(out)
  return out


def timed(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, float]:
  """(fn(*args, **kwargs), wall seconds until its output is ready)."""
  start = time.perf_counter()
  out = _ready(fn(*args, **kwargs))
  return out, time.perf_counter() - start


def median(xs) -> float:
  """The median of `xs` as a float (nan when empty)."""
  xs = list(xs)
  return float(statistics.median(xs)) if xs else float("nan")


@dataclasses.dataclass(frozen=True)
class Timing:
  """Seconds of the timed calls of one `measure`, with the load they ran under."""
  all_s: tuple[float, ...]       # every timed call, in order
  warmup_s: tuple[float, ...]    # the warm-up calls (compilation included)
  loadavg_before: float
  loadavg_after: float
  outputs: tuple[Any, ...] = dataclasses.field(default=(), repr=False, compare=False)

  @property
  def median_s(self) -> float:
    return median(self.all_s)

  @property
  def last(self):
    """The output of the last timed call."""
    return self.outputs[-1]

  def as_dict(self) -> dict:
    """JSON-ready figures (outputs left out)."""
    return {"median_s": self.median_s, "all_s": list(self.all_s),
            "warmup_s": list(self.warmup_s), "loadavg_before": self.loadavg_before,
            "loadavg_after": self.loadavg_after}


def measure(fn: Callable[..., Any], *, repeats: int, warmup: int = 1,
            setup: Callable[[], Any] | None = None) -> Timing:
  """`warmup` calls of `fn` (timed apart, not in the median), then `repeats` timed ones.

  Args:
    fn: the work, `fn()` (or `fn(setup())` when `setup` is given); its output is
      waited for before each clock stops, and kept in `Timing.outputs` (return
      something small, e.g. metrics or the tokens).
    repeats: timed calls (>= 1); the figure is their median.
    warmup: calls before them (compilation); their seconds go to `warmup_s`.
    setup: runs before every call outside the clock; its result is fn's argument.
  """
  if repeats < 1:
    raise ValueError(f"repeats={repeats}: measure needs at least one timed call.")

  def one():
    if setup is None:
      return timed(fn)
    arg = _ready(setup())
    return timed(fn, arg)

  before = loadavg()
  warm = tuple(one()[1] for _ in range(warmup))
  runs = [one() for _ in range(repeats)]
  return Timing(all_s=tuple(s for _, s in runs), warmup_s=warm, loadavg_before=before,
                loadavg_after=loadavg(), outputs=tuple(o for o, _ in runs))


def emit_result(out: dict, json_path: str | None = "") -> dict:
  """Prints `out` as one "RESULT {json}" line (what a driving script parses, e.g.
  bench/peers/trl_vs_skd.py) and writes it to `json_path` when given; returns `out`.

  Numpy values are written as lists / numbers.
  """
  import json  # pylint: disable=import-outside-toplevel
  default = lambda x: x.tolist() if hasattr(x, "tolist") else str(x)
  print("RESULT " + json.dumps(out, default=default), flush=True)
  if json_path:
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
      json.dump(out, f, indent=1, default=default)
  return out


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def git_head() -> str | None:
  try:
    return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip() or None
  except OSError:
    return None


def machine(**versions: str) -> dict:
  """CPU, cores, memory, Python, git HEAD, JAX backend and the given package versions."""
  import jax  # pylint: disable=g-import-not-at-top
  return {
      "cpu": cpu_model(),
      "cores": os.cpu_count(),
      "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
      "python": platform.python_version(),
      "git_head": git_head(),
      "jax": jax.__version__,
      "jax_backend": jax.default_backend(),
      "jax_devices": [str(d) for d in jax.devices()],
      "loadavg_1min_at_start": loadavg(),
      **versions,
  }
