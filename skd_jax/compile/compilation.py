"""`Compilation`: every compiled function of a config beside the planner's estimates
(the JSON and the table `python -m skd_jax.compile` prints)."""
from __future__ import annotations

import dataclasses
from typing import Any

from skd_jax.compile.results import Result
from skd_jax.compile.setup import Setup
from skd_jax.compile.topology import Chip
from skd_jax.plan.sizes import GiB


@dataclasses.dataclass
class Compilation:
  """Everything `python -m skd_jax.compile` prints and writes."""
  topology: str
  chip: Chip
  setup: Setup
  results: list[Result]
  phases: list[str | None]     # the planner figure each result corresponds to
  planner: Any                 # plan.Report
  usable_hbm_bytes: int        # what XLA may allocate per chip

  @property
  def run_peak_bytes(self) -> int:
    return max(r.run_peak_bytes for r in self.results)

  @property
  def compiled(self) -> bool:
    return all(r.error is None for r in self.results)

  @property
  def fits(self) -> bool:
    return self.compiled and self.run_peak_bytes <= self.usable_hbm_bytes

  def _planned(self, phase: str | None) -> int | None:
    return None if phase is None else self.planner.phase_peaks()[phase]

  def planner_figures(self) -> dict[str, Any]:
    """The planner's estimates beside the compiled run peaks they estimate."""
    report = self.planner
    out: dict[str, Any] = {"peak_bytes": report.peak, "phases": report.phase_peaks(),
                           "errors": {}}
    measured = [r.error is None or r.measured_on is not None for r in self.results]
    for r, phase, ok in zip(self.results, self.phases, measured):
      planned = self._planned(phase)
      if planned is not None and ok:
        out["errors"][r.name] = (planned - r.run_peak_bytes) / r.run_peak_bytes
    if all(measured):
      out["error"] = (report.peak - self.run_peak_bytes) / self.run_peak_bytes
    return out

  def to_json(self) -> dict:
    return {
        "topology": self.topology,
        "chip": dataclasses.asdict(self.chip),
        "devices": int(self.setup.mesh.devices.size),
        "mesh": self.setup.axis_sizes,
        "hbm_bytes_per_chip": self.chip.hbm_bytes,
        "usable_hbm_bytes": self.usable_hbm_bytes,
        "fits": self.fits,
        "run_peak_bytes": self.run_peak_bytes,
        "student": self.setup.student_cfg.name,
        "teacher": self.setup.teacher_cfg.name,
        "student_rules": str(self.setup.student_rules),
        "teacher_rules": str(self.setup.teacher_rules),
        "batch_size": self.setup.batch_size,
        "remat": bool(self.setup.loss_cfg.remat),
        "functions": {r.name: {**r.to_json(), "fits": r.error is None and
                               r.run_peak_bytes <= self.usable_hbm_bytes}
                      for r in self.results},
        "planner": self.planner_figures(),
    }

  def table(self) -> str:
    mesh = ",".join(f"{k}:{v}" for k, v in self.setup.axis_sizes.items())
    unit, scale = ("GiB", GiB) if self.run_peak_bytes >= GiB / 4 else ("MiB", 2 ** 20)
    m = lambda x: f"{x / scale:8.2f}"
    lines = [f"{self.setup.student_cfg.name} <- {self.setup.teacher_cfg.name} on "
             f"{self.topology}: {self.setup.mesh.devices.size} x {self.chip.name} "
             f"({self.chip.hbm_gib:g} GiB HBM, {self.usable_hbm_bytes / GiB:.2f} usable; "
             f"{self.chip.bf16_tflops:g} TFLOP/s bf16; {self.chip.hbm_gbps:g} GB/s), "
             f"mesh {mesh}, batch {self.setup.batch_size}",
             f"{unit} per chip. peak = arg + out + temp - alias; run = peak + driver arrays "
             "held meanwhile; XLA TFLOP/GB: cost_analysis (loop bodies counted once); "
             "roofline from analytic TFLOP/GB",
             f"{'function':<16s}{'arg':>8s}{'out':>8s}{'temp':>8s}{'alias':>8s}{'peak':>8s}"
             f"{'run':>8s}{'planner':>8s}{'XLA TF':>8s}{'XLA GB':>8s}{'TFLOP':>8s}"
             f"{'GB':>8s}{'roofline':>9s}{'tok/s':>8s}{'compile':>8s}"]
    for r, phase in zip(self.results, self.phases):
      planned = self._planned(phase)
      tok = f"{r.tokens_per_second:8.0f}" if r.tokens_per_second else f"{'-':>8s}"
      mem = (f"{m(r.argument_bytes)}{m(r.output_bytes)}{m(r.temp_bytes)}{m(r.alias_bytes)}"
             f"{m(r.peak_bytes)}{m(r.run_peak_bytes)}")
      if r.error and not r.measured_on:
        mem = f"{m(r.argument_bytes)}{'-':>8s}{m(r.temp_bytes)}{'-':>8s}{'OOM':>8s}{'OOM':>8s}"
      lines.append(
          f"{r.name:<16s}{mem}{m(planned) if planned is not None else f'{chr(45):>8s}'}"
          f"{r.xla_flops / 1e12:8.2f}{r.xla_bytes_accessed / 1e9:8.1f}"
          f"{r.flops / 1e12:8.2f}{r.bytes_accessed / 1e9:8.1f}{r.roofline_seconds:8.3f}s"
          f"{tok}{r.compile_seconds:7.0f}s")
    for r in self.results:
      if r.error:
        where = (f"; its figures above are compiled on {r.measured_on} (same mesh)"
                 if r.measured_on else "")
        lines.append(f"  {r.name} OUT OF HBM: {r.error[:200]}{where}")
    err = self.planner_figures().get("error")
    if self.compiled:
      verdict = "fits" if self.fits else "DOES NOT FIT"
      lines.append(f"run peak {self.run_peak_bytes / scale:.2f} {unit} of "
                   f"{self.usable_hbm_bytes / GiB:.2f} GiB usable: {verdict}; planner peak "
                   f"{self.planner.peak / scale:.2f} {unit} ({err:+.1%})")
    else:
      lines.append(f"DOES NOT FIT: {', '.join(r.name for r in self.results if r.error)} ran out "
                   f"of HBM; run peak {self.run_peak_bytes / GiB:.2f} GiB of "
                   f"{self.usable_hbm_bytes / GiB:.2f} usable; planner peak "
                   f"{self.planner.peak / GiB:.2f} GiB"
                   + (f" ({err:+.1%})" if err is not None else ""))
    return "\n".join(lines)
