"""`Report`: bytes per device of every component and the peak of every phase."""
from __future__ import annotations

import dataclasses
import math

from skd_jax.plan.activations import Activations
from skd_jax.plan.sizes import GiB

HEADROOM = 0.9
# Name -> HBM per chip (GiB).
ACCELERATORS: tuple[tuple[str, float], ...] = (
    ("TPU v5e", 16),
    ("TPU v4", 32),
    ("A100/H100", 80),
    ("TPU v5p", 95),
)


@dataclasses.dataclass(frozen=True)
class Report:
  """Bytes per device of every component, and the peak of every phase of a run."""
  student: str
  teacher: str
  mesh: dict[str, int]
  batch: int
  seq_len: int
  student_params: int
  optimizer_state: int
  gradients: int
  teacher_params: int
  student_cache: int
  teacher_cache: int
  sampling_params: int
  activations: Activations
  initial_student: int = 0      # the loaded student weights the driver keeps
  accumulator: int = 0          # float32 gradient sum of micro-batched steps
  decode_work: int = 0          # an SKD rollout's transient values (prefill, gathers)
  student_decode_work: int = 0  # the same of a student-only rollout
  eval_student_cache: int = 0   # cache of the greedy evaluation decode
  teacher_scoring: int = 0      # teacher-forced logits of the agreement metric
  student_scoring: int = 0

  @property
  def resident(self) -> int:
    """Held for the whole run: params, optimizer state, teacher (and the
    driver's copy of the loaded student)."""
    return (self.student_params + self.optimizer_state + self.teacher_params
            + self.initial_student)

  @property
  def sampling_peak(self) -> int:
    return (self.resident + self.student_cache + self.teacher_cache + self.sampling_params
            + self.decode_work)

  @property
  def train_peak(self) -> int:
    return (self.resident + self.gradients + self.accumulator + self.sampling_params
            + self.activations.total)

  @property
  def peak(self) -> int:
    return max(self.phase_peaks().values())

  def phase_peaks(self) -> dict[str, int]:
    """Peak bytes per device of each phase of the run, by name.

    "train" (the train step), "sampling" (the SKD rollout), "student_sampling",
    "eval_decode" (greedy student rollouts of the evaluations),
    "teacher_scoring" / "student_scoring" (teacher-forced logits of the top-1
    agreement); the last four only when planned with `eval_batch`.
    """
    phases = {"train": self.train_peak, "sampling": self.sampling_peak}
    if self.eval_student_cache:
      phases.update(
          student_sampling=(self.resident + self.student_cache + self.sampling_params
                            + self.student_decode_work),
          eval_decode=(self.resident + self.eval_student_cache + self.sampling_params
                       + self.student_decode_work),
          teacher_scoring=self.resident + self.teacher_scoring,
          student_scoring=self.resident + self.student_scoring)
    return phases

  def fits(self, hbm_gib: float, headroom: float = HEADROOM) -> bool:
    return self.peak <= headroom * hbm_gib * GiB

  def table(self) -> str:
    """A human-readable table (GiB per device) with the accelerator verdicts."""
    mesh = ",".join(f"{k}:{v}" for k, v in self.mesh.items())
    a = self.activations
    rows = [
        ("student params (fp32)", self.student_params),
        ("optimizer state (AdamW, fp32)", self.optimizer_state),
        ("teacher params", self.teacher_params),
        ("loaded student kept by the driver", self.initial_student),
        ("  = resident", self.resident),
        ("student KV cache", self.student_cache),
        ("teacher KV cache", self.teacher_cache),
        ("student params in compute dtype", self.sampling_params),
        ("prefill values, gathered weights", self.decode_work),
        ("  = sampling peak", self.sampling_peak),
        ("gradients (fp32)", self.gradients + self.accumulator),
        ("activations: saved layer values", a.saved_layer_inputs),
        ("activations: hidden states", a.hidden_states),
        ("activations: one layer backward", a.layer_backward),
        ("activations: chunked loss", a.chunked_loss),
        ("activations: teacher layer gathered", a.teacher_layer),
        ("  = train-step peak", self.train_peak),
    ]
    rows += [(f"  = {name} peak", value) for name, value in self.phase_peaks().items()
             if name not in ("train", "sampling")]
    rows.append(("PEAK", self.peak))
    lines = [f"{self.student} <- {self.teacher}  mesh {mesh} ({math.prod(self.mesh.values())} "
             f"devices)  batch {self.batch}  seq {self.seq_len}"]
    lines += [f"  {name:<34s}{value / GiB:9.2f} GiB" for name, value in rows]
    verdicts = [f"{name} {'fits' if self.fits(hbm) else 'NO'}" for name, hbm in ACCELERATORS]
    lines.append(f"  fits ({HEADROOM:.0%} of HBM): " + ", ".join(verdicts))
    return "\n".join(lines)
