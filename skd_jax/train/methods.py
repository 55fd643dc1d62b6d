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
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from skd_jax.sampling.config import SamplerConfig

# Row sources (int codes of `row_sources`).
GROUND_TRUTH, STUDENT, TEACHER, SKD = 0, 1, 2, 3
SOURCE_NAMES = {GROUND_TRUTH: "ground_truth", STUDENT: "student", TEACHER: "teacher",
                SKD: "skd"}
# fold_in streams of the per-step key: the coin flips, then one per sampler.
SOURCE_STREAM = 0
SAMPLE_STREAM = 1  # + source code


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method.

  Attributes:
    name: config name.
    objective: "sft" (cross-entropy on the completion) or "distill" (D(teacher || student)).
    sources: the row sources it may use (documentation and tests).
    doc: one line for the methods table.
    student_sampling: prefix of its student-only sampling knobs in `config.sampler`
      ("" = it never samples the student alone).
  """
  name: str
  objective: str
  sources: tuple[int, ...]
  doc: str
  student_sampling: str = ""


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sft", "sft", (GROUND_TRUTH,), "cross-entropy on the reference"),
    Method("supervised_kd", "distill", (GROUND_TRUTH,), "divergence on the reference"),
    Method("seq_kd", "sft", (TEACHER,),
           "cross-entropy on teacher samples (SeqKD, Kim & Rush 2016; the paper's baseline)"),
    Method("seq_kd_divergence", "distill", (TEACHER,),
           "divergence on teacher samples (SKD with K = 0)"),
    Method("on_policy", "distill", (STUDENT,), "student samples (SKD with K = vocab)",
           "on_policy"),
    Method("gkd", "distill", (STUDENT, GROUND_TRUTH, TEACHER),
           "with prob. lmbda student samples, else reference (or teacher samples if "
           "mix.gkd_seq_kd); per batch or per sequence", "gkd"),
    Method("imitkd", "distill", (STUDENT, GROUND_TRUTH),
           "per sequence: student sample with prob. mix.imitkd_fraction, else reference",
           "imitkd"),
    Method("two_stage", "distill", (GROUND_TRUTH, STUDENT),
           "supervised KD for mix.two_stage_fraction of the steps, then on-policy KD",
           "two_stage"),
    Method("skd", "distill", (SKD,), "interleaved SKD samples (K = sampler.top_k)"),
    Method("skd_mixed", "distill", (SKD, GROUND_TRUTH),
           "per sequence: SKD sample with prob. mix.skd_fraction, else reference"),
)}


def source_key(run_key: jax.Array, step: int) -> jax.Array:
  """The key of step `step`'s coin flips (same on every host)."""
  return jax.random.fold_in(jax.random.fold_in(run_key, step), SOURCE_STREAM)


def sample_key(run_key: jax.Array, step: int, source: int) -> jax.Array:
  """The key of step `step`'s rollout from `source` (rows fold in their index)."""
  return jax.random.fold_in(jax.random.fold_in(run_key, step), SAMPLE_STREAM + source)


def _coins(key: jax.Array, p: float, batch_size: int, per_sequence: bool = True) -> np.ndarray:
  """[B] bool, True with probability p: one coin per row, or one for the batch."""
  shape = (batch_size,) if per_sequence else ()
  coins = np.asarray(jax.random.bernoulli(key, p, shape))
  return np.broadcast_to(coins, (batch_size,)).copy()


def two_stage_switch(mix: Any, total_steps: int) -> int:
  """First on-policy step of "two_stage"."""
  return int(round(float(mix.two_stage_fraction) * total_steps))


def row_sources(method: str, mix: Any, key: jax.Array, batch_size: int, step: int,
                total_steps: int) -> np.ndarray:
  """Where each row of the GLOBAL batch of step `step` comes from.

  Args:
    method: a name in METHODS.
    mix: the config's `mix` block (lmbda, gkd_per_sequence, gkd_seq_kd,
      imitkd_fraction, skd_fraction, two_stage_fraction).
    key: `source_key(run_key, step)`.
    batch_size: global batch size B.
    step: optimizer step (0-based) this batch trains.
    total_steps: steps in the run (for "two_stage").

  Returns:
    int32 [B] of GROUND_TRUTH / STUDENT / TEACHER / SKD.
  """
  full = lambda source: np.full((batch_size,), source, np.int32)
  if method in METHODS and len(METHODS[method].sources) == 1:  # The table decides.
    return full(METHODS[method].sources[0])
  if method == "two_stage":
    return full(GROUND_TRUTH if step < two_stage_switch(mix, total_steps) else STUDENT)
  if method == "gkd":
    # TRL GKD: with probability lmbda on-policy student outputs; otherwise the
    # dataset's (or, with seq_kd, the teacher's) sequences.
    on_policy = _coins(key, float(mix.lmbda), batch_size, bool(mix.gkd_per_sequence))
    other = TEACHER if mix.gkd_seq_kd else GROUND_TRUTH
    return np.where(on_policy, STUDENT, other).astype(np.int32)
  if method == "imitkd":
    sampled = _coins(key, float(mix.imitkd_fraction), batch_size)
    return np.where(sampled, STUDENT, GROUND_TRUTH).astype(np.int32)
  if method == "skd_mixed":
    sampled = _coins(key, float(mix.skd_fraction), batch_size)
    return np.where(sampled, SKD, GROUND_TRUTH).astype(np.int32)
  raise ValueError(f"unknown method {method!r}; use one of {sorted(METHODS)}.")


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
                acceptance=sampler.acceptance)
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


def length_bucket(length: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= length (the last one if none: callers cap lengths)."""
  for b in sorted(buckets):
    if b >= length:
      return b
  return max(length, max(buckets))


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
  length = length_bucket(max(len(r) for r in rows), buckets)
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
