"""Compiling one program for a topology: XLA's memory plan and cost, per chip."""
from __future__ import annotations

import dataclasses
import re
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from skd_jax.compile.programs import Program
from skd_jax.compile.setup import Setup, shard_bytes
from skd_jax.compile.topology import Chip
from skd_jax.plan.sizes import GiB


@dataclasses.dataclass
class Result:
  """Per-chip figures of one compiled function."""
  name: str
  argument_bytes: int = 0
  output_bytes: int = 0
  temp_bytes: int = 0
  alias_bytes: int = 0
  resident_bytes: int = 0
  xla_flops: float = 0.0
  xla_bytes_accessed: float = 0.0
  flops: float = 0.0
  bytes_accessed: float = 0.0
  roofline_seconds: float = 0.0
  tokens_per_second: float | None = None
  compile_seconds: float = 0.0
  error: str | None = None          # the compiler's out-of-memory message
  # For a program that ran out of HBM: the topology its memory figures were
  # compiled on instead (same mesh, larger chips), or None (then they are the
  # arguments plus XLA's stated temporaries, an overestimate).
  measured_on: str | None = None

  @property
  def peak_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes + self.temp_bytes - self.alias_bytes

  @property
  def run_peak_bytes(self) -> int:
    return self.peak_bytes + self.resident_bytes

  def to_json(self) -> dict:
    out = dataclasses.asdict(self)
    out["peak_bytes"] = self.peak_bytes
    out["run_peak_bytes"] = self.run_peak_bytes
    return out


_GIB_UNITS = {"K": 2 ** -20, "M": 2 ** -10, "G": 1.0, "T": 2 ** 10}
_TEMPS = re.compile(r"required for HLO temporaries \(([\d.]+)([KMGT])\)")
_AVAILABLE = re.compile(r"available HBM \(([\d.]+)([KMGT])\)")


def _gib_in(pattern: re.Pattern, text: str) -> int | None:
  m = pattern.search(text)
  return None if m is None else int(float(m.group(1)) * _GIB_UNITS[m.group(2)] * GiB)


def usable_hbm_bytes(mesh: jax.sharding.Mesh) -> int | None:
  """HBM per chip that XLA may allocate on this topology (None if unknown).

  Found by compiling a program whose argument cannot fit: the compiler's
  out-of-memory message states what is available (e.g. v5e 15.75G of 16 GiB).
  Nothing is allocated.
  """
  big = jax.ShapeDtypeStruct((mesh.devices.size, 2 ** 40), jnp.int8,
                             sharding=NamedSharding(mesh, jax.sharding.PartitionSpec(
                                 tuple(mesh.axis_names))))
  try:
    jax.jit(lambda x: x + 1).lower(big).compile()
  except Exception as e:  # pylint: disable=broad-except
    return _gib_in(_AVAILABLE, str(e))
  return None


def compile_program(program: Program, setup: Setup, chip: Chip) -> Result:
  """Lowers (under the mesh, as the driver runs) and compiles one function.

  A program the chip cannot hold does not compile (RESOURCE_EXHAUSTED); its
  Result then has `error`, the arguments' bytes and, when the message states
  them, the temporaries the compiler needed.
  """
  result = Result(program.name, resident_bytes=shard_bytes(program.resident),
                  flops=program.flops, bytes_accessed=program.bytes_accessed)
  result.roofline_seconds = max(program.flops / (chip.bf16_tflops * 1e12),
                                program.bytes_accessed / (chip.hbm_gbps * 1e9))
  if program.tokens and result.roofline_seconds > 0:
    result.tokens_per_second = program.tokens / result.roofline_seconds
  tic = time.perf_counter()
  try:
    with jax.set_mesh(setup.mesh):
      compiled = program.lower().compile()
  except Exception as e:  # pylint: disable=broad-except
    result.compile_seconds = time.perf_counter() - tic
    text = str(e)
    if "RESOURCE_EXHAUSTED" not in text:
      raise
    result.error = " ".join(text.split())[:400]
    result.argument_bytes = shard_bytes(program.args)
    result.temp_bytes = _gib_in(_TEMPS, text) or 0
    return result
  result.compile_seconds = time.perf_counter() - tic
  mem = compiled.memory_analysis()
  result.argument_bytes = int(mem.argument_size_in_bytes)
  result.output_bytes = int(mem.output_size_in_bytes)
  result.temp_bytes = int(mem.temp_size_in_bytes)
  result.alias_bytes = int(mem.alias_size_in_bytes)
  cost = compiled.cost_analysis() or {}
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  result.xla_flops = float(cost.get("flops", 0.0))
  result.xla_bytes_accessed = float(cost.get("bytes accessed", 0.0))
  return result
