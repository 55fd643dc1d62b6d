"""TPU topologies without a TPU: chip figures, libtpu's topology descriptions."""
from __future__ import annotations

import dataclasses
import os
import re

import jax

from skd_jax.plan.sizes import GiB


class CompileError(ValueError):
  """A bad topology, mesh, batch or environment; the message alone is shown."""


@dataclasses.dataclass(frozen=True)
class Chip:
  """Published per-chip figures (Google Cloud TPU documentation)."""
  name: str
  hbm_gib: float          # HBM per chip.
  bf16_tflops: float      # Peak bf16 matmul throughput.
  hbm_gbps: float         # HBM bandwidth, GB/s (1e9 bytes).

  @property
  def hbm_bytes(self) -> int:
    return int(self.hbm_gib * GiB)


CHIPS: dict[str, Chip] = {
    "v4": Chip("TPU v4", 32, 275, 1228),
    "v5e": Chip("TPU v5e", 16, 197, 819),
    "v5p": Chip("TPU v5p", 95, 459, 2765),
    "v6e": Chip("TPU v6e", 32, 918, 1640),
}
# Chips whose two TensorCores JAX drives as one device ("megacore").
_MEGACORE = ("v4",)


TOPOLOGY_FORMS = "v5e:2x2, v5e:2x4, v6e:2x2 (2-D, v5e/v6e) or v4:2x2x1, v5p:2x2x1 (3-D, v4/v5p)"


_NAME = re.compile(r"^(v4|v5e|v5p|v6e):(\d+)x(\d+)(?:x(\d+))?$")


def libtpu_pip_line() -> str:
  return f'pip install "jax[tpu]=={jax.__version__}"'


def _prepare_libtpu_env() -> None:
  """Environment for loading libtpu on a host that has no TPU.

  * ALLOW_MULTIPLE_LIBTPU_LOAD: libtpu otherwise takes /tmp/libtpu_lockfile
    for the process's lifetime, and a second process that loads it (a driver
    run without JAX_PLATFORMS=cpu holds it too) fails with "Internal error when
    accessing libtpu multi-process lockfile". We only compile, so sharing is safe.
  * TPU_WORKER_HOSTNAMES=localhost (only without local TPU chips): silences
    libtpu's "unexpected worker hostname" error, logged when it finds no TPU VM
    metadata.
  """
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  if not any(os.path.exists(p) for p in ("/dev/accel0", "/dev/vfio/0")):
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")


def topology(name: str):
  """(devices, Chip) of a topology name such as "v5e:2x2" or "v4:2x2x1".

  Raises:
    CompileError: libtpu missing, or an unknown name (listing the valid forms).
  """
  m = _NAME.match(name)
  if not m:
    raise CompileError(f"--topology={name!r} is not a topology name; use "
                       f"<chip>:<AxB> or <chip>:<AxBxC> with chip in "
                       f"{sorted(CHIPS)}, e.g. {TOPOLOGY_FORMS} (names like 'v5e-8' "
                       "are not accepted).")
  try:
    import libtpu  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    raise CompileError(f"compiling for a TPU topology needs libtpu, which is not installed; "
                       f"{libtpu_pip_line()} (CPU-only runs are unaffected).") from None
  _prepare_libtpu_env()
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  kind = m.group(1)
  kwargs = {"chip_config_name": "megacore"} if kind in _MEGACORE else {}
  try:
    desc = topologies.get_topology_desc(topology_name=name, platform="tpu", **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CompileError(f"--topology={name!r}: libtpu rejected it ({first}); valid forms: "
                       f"{TOPOLOGY_FORMS}, with at least a 2x2 slice of chips.") from None
  return list(desc.devices), CHIPS[kind]
