"""What the benchmark scripts record about the machine they ran on."""
from __future__ import annotations

import os
import platform
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
      "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
      **versions,
  }
