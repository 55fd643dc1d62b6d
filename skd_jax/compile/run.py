"""`compile_config` and the command line `python -m skd_jax.compile` (see `skd_jax.compile`)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from skd_jax import plan as plan_lib
from skd_jax.compile.compilation import Compilation
from skd_jax.compile.programs import Program, programs
from skd_jax.compile.results import Result, compile_program, usable_hbm_bytes
from skd_jax.compile.setup import Setup, build_setup
from skd_jax.compile.topology import TOPOLOGY_FORMS, CompileError, topology
from skd_jax.plan.sizes import GiB


def reference_topology(num_chips: int) -> str | None:
  """A v5p topology (95 GiB chips) with `num_chips` chips, or None."""
  if num_chips < 4 or num_chips % 4:
    return None
  return f"v5p:2x2x{num_chips // 4}"


def _measure_elsewhere(config, setup: Setup, progs: Sequence[Program], results: list[Result],
                       topology_name: str, log=None) -> None:
  """Memory figures of the programs that ran out of HBM, compiled with the same
  mesh on v5p chips (95 GiB). XLA's out-of-memory message states more
  temporaries than the compiled program then uses (about twice on Gemma's
  train step), so this is the figure to compare with the HBM."""
  failed = [(p, r) for p, r in zip(progs, results) if r.error]
  name = reference_topology(int(setup.mesh.devices.size))
  if not failed or name is None or topology_name.startswith("v5p"):
    return
  devices, chip = topology(name)
  other = build_setup(config, devices)
  by_name = {p.name: p for p in programs(other)}
  for p, r in failed:
    if log:
      log(f"compiling {p.name} on {name} (same mesh) for its memory figures ...")
    ref = compile_program(by_name[p.name], other, chip)
    if ref.error:
      continue
    r.argument_bytes, r.output_bytes = ref.argument_bytes, ref.output_bytes
    r.temp_bytes, r.alias_bytes = ref.temp_bytes, ref.alias_bytes
    r.xla_flops, r.xla_bytes_accessed = ref.xla_flops, ref.xla_bytes_accessed
    r.measured_on = name


def compile_config(config, topology_name: str, *, acceptance: float = 1.0,
                   only: Sequence[str] | None = None, log=None) -> Compilation:
  """Compiles the driver's functions of `config` for a topology (see `skd_jax.compile`).

  Args:
    config: the experiment ConfigDict (mesh, batch_size, ... already overridden).
    topology_name: e.g. "v5e:2x2".
    acceptance: per-draft acceptance assumed by the SKD rollout's roofline.
    only: compile just these function names (default all).
    log: optional callable(str) for progress lines.

  Raises:
    CompileError: see `topology` and `build_setup`.
  """
  devices, chip = topology(topology_name)
  setup = build_setup(config, devices)
  progs = programs(setup, acceptance)
  if only:
    unknown = set(only) - {p.name for p in progs}
    if unknown:
      raise CompileError(f"unknown function(s) {sorted(unknown)}; known: "
                         f"{[p.name for p in progs]}.")
    progs = [p for p in progs if p.name in only]
  results = []
  for p in progs:
    if log:
      log(f"compiling {p.name} ...")
    results.append(compile_program(p, setup, chip))
    if log:
      r = results[-1]
      log(f"  {p.name}: " + (f"out of HBM ({r.error[:160]})" if r.error else
                             f"peak {r.peak_bytes / GiB:.2f} GiB, run {r.run_peak_bytes / GiB:.2f} "
                             f"GiB, in {r.compile_seconds:.0f} s"))
  _measure_elsewhere(config, setup, progs, results, topology_name, log)
  planner = plan_lib.plan_experiment(config, num_devices=int(setup.mesh.devices.size))
  usable = usable_hbm_bytes(setup.mesh) or chip.hbm_bytes
  return Compilation(topology_name, chip, setup, results, [p.planner_phase for p in progs],
                     planner, usable)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="python -m skd_jax.compile",
      description="Compiles the driver's jitted functions for a TPU topology, on any host.")
  p.add_argument("--config", required=True, help="experiment config FILE[:arg]")
  p.add_argument("--topology", required=True, help=f"TPU topology: {TOPOLOGY_FORMS}")
  p.add_argument("--mesh", default=None, help="data:D,fsdp:F,tensor:T (default: the config's)")
  p.add_argument("--batch_size", type=int, default=None, help="global batch (default: config's)")
  p.add_argument("--json", default=None, help="write the results as JSON here")
  p.add_argument("--acceptance", type=float, default=1.0,
                 help="per-draft acceptance assumed by the SKD rollout roofline (1 = all)")
  p.add_argument("--functions", default=None,
                 help="comma-separated subset of functions to compile (default all)")
  return p


def main(argv: Sequence[str] | None = None) -> Compilation:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a[len("--config."):] for a in argv if a.startswith("--config.")]
  args = _parser().parse_args([a for a in argv if not a.startswith("--config.")])
  try:
    config = plan_lib.load_config(args.config, overrides)
    if args.mesh:
      config.mesh = args.mesh
    if args.batch_size:
      config.batch_size = args.batch_size
    only = [f.strip() for f in args.functions.split(",")] if args.functions else None
    log = lambda s: print(s, file=sys.stderr, flush=True)
    result = compile_config(config, args.topology, acceptance=args.acceptance, only=only, log=log)
  except (CompileError, plan_lib.PlanError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  print(result.table(), flush=True)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result.to_json(), f, indent=2)
  return result
