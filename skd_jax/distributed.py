"""The multi-process runtime: joining a run, placing host values, gathering them back.

    initialize_distributed()                         # first, before any other JAX call
    params = shard_params(params, shardings)         # every process passes the same value
    batch = global_rows(local, mesh, replicated=False)   # each process passes its own rows
    host = to_host(tree)                             # numpy, gathered across processes
    width = across_processes(local_width)            # agree on a shape (max) or total (np.sum)

Row convention: in a run of n processes with a global batch of B rows, process
i holds rows i * B/n .. (i+1) * B/n - 1 (`make_mesh` keeps each process's
devices contiguous, so the batch axis splits by process). Every function that
gathers or agrees (`to_host`, `across_processes`, `global_rows`) is a
collective: every process must call it, in the same order. With one process
they are plain `device_put` / `device_get`.

Where arrays go (the specs) is `skd_jax.sharding`'s business; this module only
moves values to and from them.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from skd_jax import sharding


# ----------------------------------------------------------------------------
# Joining a run.
# ----------------------------------------------------------------------------
def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value not in (None, "") else None


def _auto_detected_processes() -> int:
  """How many processes a TPU pod / SLURM job launched (1 when unknown)."""
  if _env_int("SLURM_NTASKS") and "SLURM_JOB_ID" in os.environ:
    return _env_int("SLURM_NTASKS")
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  if hosts:
    return len([h for h in hosts.split(",") if h.strip()])
  return 1


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
  """Joins a multi-process JAX run; a no-op for a single process.

  Explicit arguments win, then the environment (COORDINATOR_ADDRESS,
  NUM_PROCESSES, PROCESS_ID, as `launch/gpu_local.sh` sets them); otherwise a
  TPU pod slice (TPU_WORKER_HOSTNAMES) or SLURM job (SLURM_NTASKS) with more
  than one process lets `jax.distributed.initialize()` detect everything.
  Call it first, before any other JAX call. On CPU, cross-process collectives
  use gloo.

  Returns:
    True when this is a multi-process run (now initialized).
  """
  if jax.distributed.is_initialized():
    return True
  coordinator_address = coordinator_address or os.environ.get("COORDINATOR_ADDRESS")
  num_processes = num_processes or _env_int("NUM_PROCESSES")
  if process_id is None:
    process_id = _env_int("PROCESS_ID")
  if num_processes is None:
    num_processes = _auto_detected_processes()
    if num_processes > 1:
      _use_gloo_on_cpu()
      jax.distributed.initialize()
      return True
    return False
  if num_processes <= 1:
    return False
  if coordinator_address is None or process_id is None:
    raise ValueError(f"{num_processes} processes need COORDINATOR_ADDRESS and PROCESS_ID "
                     f"(got {coordinator_address!r}, {process_id!r}).")
  _use_gloo_on_cpu()
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  return True


def _use_gloo_on_cpu():
  """CPU collectives across processes need an implementation (gloo)."""
  if jax.config.jax_cpu_collectives_implementation in (None, "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def is_main_process() -> bool:
  """True on process 0 (the one that logs and writes checkpoints' metadata)."""
  return jax.process_index() == 0


# ----------------------------------------------------------------------------
# Host values -> global arrays.
# ----------------------------------------------------------------------------
def _put(x, s: jax.sharding.Sharding) -> jax.Array:
  """One full host value (the same on every process) onto `s`."""
  if s.is_fully_addressable:
    return jax.device_put(x, s)
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, s, lambda idx: host[idx])


def shard_params(params: Any, shardings: Any) -> Any:
  """Places params (or a TrainState) on a pytree of shardings of the same structure.

  Works across processes too: when a sharding spans other processes' devices,
  every process must pass the same full value, and each keeps its own shards.
  """
  return jax.tree.map(_put, params, shardings)


def replicated_batch(batch: Any, sharding_: NamedSharding) -> Any:
  """A batch every process holds in full (evaluation prompts, `--mode=sample`),
  placed with one sharding for all leaves (e.g. `sharding.batch_sharding`)."""
  return jax.tree.map(lambda x: _put(x, sharding_), batch)


def global_batch_from_local(local_batch: Any, mesh: Mesh,
                            sharding_: NamedSharding | None = None) -> Any:
  """Global arrays from each process's slice of the batch.

  Args:
    local_batch: pytree of host arrays [B / num_processes, ...]: this process's
      rows (see the module docstring).
    mesh: the global mesh.
    sharding_: default `sharding.batch_sharding(mesh)`.

  Returns:
    The same pytree of global `jax.Array`s [B, ...].
  """
  sharding_ = sharding_ or sharding.batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding_, np.asarray(x)), local_batch)


def global_rows(local: dict[str, np.ndarray], mesh: Mesh, replicated: bool) -> dict:
  """Global batch arrays from host arrays, split by the "batch" rules.

  replicated=False: each process holds its own rows (process i's are global
  rows i * local .. (i+1) * local - 1). replicated=True: every process holds
  the same full batch.
  """
  rows = len(next(iter(local.values())))
  shard = sharding.batch_sharding(mesh, rows if replicated else rows * jax.process_count())
  if replicated:
    return replicated_batch(local, shard)
  return global_batch_from_local(local, mesh, shard)


def local_rows(tree: Any, rows: int, offset: int) -> Any:
  """Rows offset .. offset + rows of every batch-major leaf (scalars kept)."""
  return jax.tree.map(lambda x: x[offset:offset + rows] if np.ndim(x) else x, tree)


def pad_columns(x: np.ndarray, width: int, value=0) -> np.ndarray:
  """[B, W] -> [B, width] right-padded with `value` (one shape on every process)."""
  return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=value)


# ----------------------------------------------------------------------------
# Global arrays -> host values.
# ----------------------------------------------------------------------------
def to_host(tree: Any) -> Any:
  """numpy copies of a pytree of (possibly multi-process) global arrays.

  A fully addressable array is fetched with `device_get`; one that spans other
  processes' devices is gathered with `process_allgather` (a collective: every
  process must call this with the same tree).
  """
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
  return jax.tree.map(fetch, tree)


def across_processes(value: np.ndarray | int | float, reduce=np.max) -> np.ndarray:
  """`reduce` (over processes) of a small host value; the value itself with one process.

  Every process must call it (a collective). Used to agree on padded shapes
  (max) and to total logging counts (np.sum).
  """
  value = np.asarray(value)
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return reduce(np.asarray(multihost_utils.process_allgather(value)), axis=0)
