"""Training methods as data-source policies over one sampler and one train step.

A method decides, for every row of a training batch, where its completion comes
from: the dataset's reference (ground truth), the student alone ("student"),
the teacher alone ("teacher") or the interleaved SKD sampler ("skd"); and which
objective trains on it: cross-entropy ("sft": SFT on references, SeqKD on
teacher samples) or the divergence to the teacher ("distill"). Rows from
different sources share one batch layout (`assemble_batch`): prompt then
completion, right-padded to a common length.

Sampling settings: SKD and teacher rows use `sampler.temperature`, `top_p`,
`sampling_top_k` for both models; student-only rows use the method's own knobs
`sampler.<Method.student_sampling>_{temperature,top_p,sampling_top_k}`, each
defaulting to the official code's value (docs/DRIVER.md, "Sampling settings").

Every coin flip comes from `jax.random` with a key derived from the run key and
the step (`source_key`), identical on every host; never from Python's `random`.

A method is a registry entry that carries its behaviour (`Method`): its
objective, its row-source function (`rows`, e.g. a per-sequence coin between
two sources) and the `config.mix` knobs it reads with their defaults (`Knob`;
configs/base.py builds `config.mix` from them and validation checks them). A
new method is one `register(Method(...))` here (docs/EXTENDING.md).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from skd_jax import buckets as buckets_lib
from skd_jax.sampling.config import SamplerConfig, acceptance_settings

# Row sources (int codes of `row_sources`).
GROUND_TRUTH, STUDENT, TEACHER, SKD = 0, 1, 2, 3
SOURCE_NAMES = {GROUND_TRUTH: "ground_truth", STUDENT: "student", TEACHER: "teacher",
                SKD: "skd"}
# fold_in streams of the per-step key: the coin flips, then one per sampler.
SOURCE_STREAM = 0
SAMPLE_STREAM = 1  # + source code


def source_key(run_key: jax.Array, step: int) -> jax.Array:
  """The key of step `step`'s coin flips (same on every host)."""
  return jax.random.fold_in(jax.random.fold_in(run_key, step), SOURCE_STREAM)


def sample_key(run_key: jax.Array, step: int, source: int) -> jax.Array:
  """The key of step `step`'s rollout from `source` (rows fold in their index)."""
  return jax.random.fold_in(jax.random.fold_in(run_key, step), SAMPLE_STREAM + source)


def coins(key: jax.Array, p: float, batch_size: int, per_sequence: bool = True) -> np.ndarray:
  """[B] bool, True with probability p: one coin per row, or one for the batch."""
  shape = (batch_size,) if per_sequence else ()
  flips = np.asarray(jax.random.bernoulli(key, p, shape))
  return np.broadcast_to(flips, (batch_size,)).copy()


def either(key: jax.Array, p: float, batch_size: int, yes: int, no: int,
           per_sequence: bool = True) -> np.ndarray:
  """int32 [B]: source `yes` with probability p, else `no` (coins as `coins`)."""
  return np.where(coins(key, p, batch_size, per_sequence), yes, no).astype(np.int32)


# ----------------------------------------------------------------------------
# The registry: a method is an entry carrying its behaviour.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Knob:
  """One `config.mix` setting a method reads (configs/base.py builds `mix` from these).

  Attributes:
    name: key in `config.mix`.
    default: its default value.
    doc: one line for the config tree.
    probability: validated in [0, 1] (False for flags).
  """
  name: str
  default: float | bool
  doc: str
  probability: bool = True


# rows(mix, key, batch_size, step, total_steps) -> int32 [B] of row sources.
RowsFn = Callable[[Any, jax.Array, int, int, int], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method: where each row comes from and which objective trains on it.

  Attributes:
    name: config name (`config.method`).
    objective: "sft" (cross-entropy on the completion) or "distill" (D(teacher || student)).
    sources: the row sources it may use (the first sampled one is `--mode=sample`'s).
    doc: one line for the methods table.
    label: name in plots and comparison tables.
    rows: `rows(mix, key, batch_size, step, total_steps)` -> int32 [B], the
      row sources of one GLOBAL batch; None = every row from `sources[0]`.
    student_sampling: prefix of its student-only sampling knobs in `config.sampler`
      ("" = it never samples the student alone).
    mix: the `config.mix` knobs it reads, with their defaults.
  """
  name: str
  objective: str
  sources: tuple[int, ...]
  doc: str
  label: str
  rows: RowsFn | None = None
  student_sampling: str = ""
  mix: tuple[Knob, ...] = ()

  @property
  def sample_source(self) -> int:
    """The sampler `--mode=sample` shows: the first sampled source, else the student's."""
    return next((s for s in self.sources if s != GROUND_TRUTH), STUDENT)

  def row_sources(self, mix: Any, key: jax.Array, batch_size: int, step: int,
                  total_steps: int) -> np.ndarray:
    """int32 [B] row sources of the GLOBAL batch of step `step` (see `rows`)."""
    if self.rows is None:
      return np.full((batch_size,), self.sources[0], np.int32)
    return np.asarray(self.rows(mix, key, batch_size, step, total_steps), np.int32)


METHODS: dict[str, Method] = {}
OBJECTIVES = ("sft", "distill")


def register(method: Method) -> Method:
  """Adds `method` to METHODS (its name must be new); returns it."""
  if method.name in METHODS:
    raise ValueError(f"method {method.name!r} is already registered.")
  if method.objective not in OBJECTIVES:
    raise ValueError(f"method {method.name!r}: objective={method.objective!r}; use one of "
                     f"{OBJECTIVES}.")
  if method.rows is None and len(method.sources) != 1:
    raise ValueError(f"method {method.name!r} has sources {method.sources} but no rows "
                     "function to choose between them.")
  METHODS[method.name] = method
  return method


def mix_defaults() -> dict[str, float | bool]:
  """The `config.mix` block: every registered method's knobs and defaults."""
  return {knob.name: knob.default for m in METHODS.values() for knob in m.mix}


def mix_knobs() -> list[Knob]:
  """Every registered `config.mix` knob (validation reads their `probability`)."""
  return [knob for m in METHODS.values() for knob in m.mix]


def two_stage_switch(mix: Any, total_steps: int) -> int:
  """First on-policy step of "two_stage"."""
  return int(round(float(mix.two_stage_fraction) * total_steps))


def _two_stage_rows(mix, key, batch_size, step, total_steps):
  del key
  source = GROUND_TRUTH if step < two_stage_switch(mix, total_steps) else STUDENT
  return np.full((batch_size,), source, np.int32)


def _gkd_rows(mix, key, batch_size, step, total_steps):
  # TRL GKD: with probability lmbda on-policy student outputs; otherwise the
  # dataset's (or, with seq_kd, the teacher's) sequences.
  del step, total_steps
  other = TEACHER if mix.gkd_seq_kd else GROUND_TRUTH
  return either(key, float(mix.lmbda), batch_size, STUDENT, other,
                bool(mix.gkd_per_sequence))


def _imitkd_rows(mix, key, batch_size, step, total_steps):
  del step, total_steps
  return either(key, float(mix.imitkd_fraction), batch_size, STUDENT, GROUND_TRUTH)


def _skd_mixed_rows(mix, key, batch_size, step, total_steps):
  del step, total_steps
  return either(key, float(mix.skd_fraction), batch_size, SKD, GROUND_TRUTH)


for _method in (
    Method("sft", "sft", (GROUND_TRUTH,), "cross-entropy on the reference", "supervised FT"),
    Method("supervised_kd", "distill", (GROUND_TRUTH,), "divergence on the reference",
           "supervised KD"),
    Method("seq_kd", "sft", (TEACHER,),
           "cross-entropy on teacher samples (SeqKD, Kim & Rush 2016; the paper's baseline)",
           "SeqKD"),
    Method("seq_kd_divergence", "distill", (TEACHER,),
           "divergence on teacher samples (SKD with K = 0)", "SeqKD (divergence)"),
    Method("on_policy", "distill", (STUDENT,), "student samples (SKD with K = vocab)",
           "on-policy KD", student_sampling="on_policy"),
    Method("gkd", "distill", (STUDENT, GROUND_TRUTH, TEACHER),
           "with prob. lmbda student samples, else reference (or teacher samples if "
           "mix.gkd_seq_kd); per batch or per sequence", "GKD", _gkd_rows, "gkd",
           (Knob("lmbda", 0.5, "gkd: probability of student samples."),
            Knob("gkd_per_sequence", False,
                 "gkd: one coin per sequence (else per batch, as TRL).", False),
            Knob("gkd_seq_kd", False,
                 "gkd: non-student rows from the teacher (TRL seq_kd).", False))),
    Method("imitkd", "distill", (STUDENT, GROUND_TRUTH),
           "per sequence: student sample with prob. mix.imitkd_fraction, else reference",
           "ImitKD", _imitkd_rows, "imitkd",
           (Knob("imitkd_fraction", 0.5,
                 "imitkd: probability of a student sample per sequence."),)),
    Method("two_stage", "distill", (GROUND_TRUTH, STUDENT),
           "supervised KD for mix.two_stage_fraction of the steps, then on-policy KD",
           "two-stage", _two_stage_rows, "two_stage",
           (Knob("two_stage_fraction", 0.5,
                 "two_stage: fraction of steps of supervised KD first."),)),
    Method("skd", "distill", (SKD,), "interleaved SKD samples (K = sampler.top_k)", "SKD"),
    Method("skd_mixed", "distill", (SKD, GROUND_TRUTH),
           "per sequence: SKD sample with prob. mix.skd_fraction, else reference",
           "SKD (mixed)", _skd_mixed_rows,
           mix=(Knob("skd_fraction", 0.5,
                     "skd_mixed: probability of an SKD sample per sequence."),)),
):
  register(_method)
del _method


def get_method(name: str) -> Method:
  """The registered method `name` (ValueError naming the known ones)."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; use one of {sorted(METHODS)}.")
  return METHODS[name]


def row_sources(method: str, mix: Any, key: jax.Array, batch_size: int, step: int,
                total_steps: int) -> np.ndarray:
  """Where each row of the GLOBAL batch of step `step` comes from.

  Args:
    method: a name in METHODS.
    mix: the config's `mix` block (see `mix_defaults`).
    key: `source_key(run_key, step)`.
    batch_size: global batch size B.
    step: optimizer step (0-based) this batch trains.
    total_steps: steps in the run (for "two_stage").

  Returns:
    int32 [B] of GROUND_TRUTH / STUDENT / TEACHER / SKD.
  """
  return get_method(method).row_sources(mix, key, batch_size, step, total_steps)


def sampler_config(source: int, sampler: Any, *, max_new_tokens: int,
                   stop_ids: Sequence[int], method: str | None = None) -> SamplerConfig:
  """The SamplerConfig of a sampled source, from the config's `sampler` block.

  SKD and teacher sampling use the SKD settings for both models (official code:
  T 0.2, top-p 0.5, top-k 50). Student sampling uses `method`'s own knobs
  `sampler.<prefix>_temperature / _top_p / _sampling_top_k` (prefix
  `METHODS[method].student_sampling`); the on-policy ones when `method` is None
  or never samples the student alone (e.g. `--mode=sample` of "sft").
  """
  common = dict(max_new_tokens=int(max_new_tokens), stop_ids=tuple(int(s) for s in stop_ids),
                prompt_buckets=tuple(sampler.prompt_buckets) or None,
                cache_length=int(sampler.cache_length) or None,
                shared_vocab_size=int(sampler.shared_vocab_size) or None,
                **acceptance_settings(sampler))
  if source == STUDENT:
    prefix = (METHODS[method].student_sampling if method in METHODS else "") or "on_policy"
    return SamplerConfig(method="student",
                         student_temperature=float(sampler[f"{prefix}_temperature"]),
                         top_p=float(sampler[f"{prefix}_top_p"]),
                         sampling_top_k=int(sampler[f"{prefix}_sampling_top_k"]), **common)
  kind = {SKD: "skd", TEACHER: "teacher"}[source]
  return SamplerConfig(method=kind, top_k=int(sampler.top_k), gamma=int(sampler.gamma),
                       student_temperature=sampler.temperature,
                       teacher_temperature=sampler.temperature, top_p=sampler.top_p,
                       sampling_top_k=int(sampler.sampling_top_k), **common)


def assemble_batch(prompt_ids: Sequence[Sequence[int]], target_ids: Sequence[Sequence[int]],
                   sources: np.ndarray, rollouts: Mapping[int, Any], *, pad_id: int,
                   buckets: Sequence[int]) -> dict[str, np.ndarray]:
  """One training batch from reference rows and sampled rows.

  Args:
    prompt_ids, target_ids: this host's rows: prompt and reference completion ids.
    sources: int [B] this host's row sources.
    rollouts: source -> host `Rollout` (numpy leaves, rows aligned with the
      batch) for every sampled source present in `sources`.
    pad_id: right-padding id (masked out of the loss).
    buckets: allowed padded lengths (fewer train-step compilations).

  Returns:
    tokens int32 [B, L], loss_mask bool [B, L] (completion tokens), from_teacher
    bool [B, L] (sampled tokens the teacher chose), sampled bool [B].
  """
  rows, spans, flags = [], [], []
  for b, source in enumerate(np.asarray(sources).tolist()):
    if source == GROUND_TRUTH:
      prompt, target = list(prompt_ids[b]), list(target_ids[b])
      rows.append(prompt + target)
      spans.append((len(prompt), len(prompt) + len(target)))
      flags.append(np.zeros(len(rows[-1]), bool))
    else:
      out = rollouts[source]
      start, end = int(out.prompt_length[b]), int(out.length[b])
      rows.append(np.asarray(out.tokens[b, :end]).tolist())
      spans.append((start, end))
      flags.append(np.asarray(out.from_teacher[b, :end], bool))
  length = buckets_lib.bucket(max(len(r) for r in rows), buckets, what="training row length",
                              fix="rows are capped at max_prompt_tokens + max_new_tokens")
  batch = len(rows)
  tokens = np.full((batch, length), pad_id, np.int32)
  loss_mask = np.zeros((batch, length), bool)
  from_teacher = np.zeros((batch, length), bool)
  for b, (row, (start, end), flag) in enumerate(zip(rows, spans, flags)):
    tokens[b, :len(row)] = row
    loss_mask[b, start:end] = True
    from_teacher[b, :len(flag)] = flag
  return dict(tokens=tokens, loss_mask=loss_mask, from_teacher=from_teacher,
              sampled=np.asarray(sources) != GROUND_TRUTH)
