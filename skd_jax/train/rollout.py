"""Rollouts and the training batch: sampler configs, host <-> global rows, `make_train_batch`.

One training batch (host side, no per-token round trip):

1. `methods.row_sources` flips the step's coins (JAX key from the run key and
   the step) and says where each row comes from;
2. one jitted `sampling.rollout` per sampled source present in the batch (the
   student, the teacher or SKD), rows keyed by `sample_key(run_key, step, source)`;
3. `methods.assemble_batch` lays reference and sampled rows out as
   prompt + completion, right-padded to a length bucket.

Host arrays are this process's rows; the jitted functions see global arrays
(`skd_jax.distributed`'s row convention: process i's rows are global rows
i * local .. (i+1) * local - 1). Functions
here take a `run_setup.RunSetup` (or anything with its `config`, `stop_ids`,
`stop_sequences`, `mesh`, models and `pad_id`).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from skd_jax import distributed
from skd_jax import buckets
from skd_jax.models.model import Model
from skd_jax.sampling import api as sampling_api
from skd_jax.sampling import sampler
from skd_jax.sampling.config import SamplerConfig
from skd_jax.train import methods
from skd_jax.train.state import TrainState


# ----------------------------------------------------------------------------
# Sampler configs.
# ----------------------------------------------------------------------------


def rollout_sampler_config(run, source: int, top_k: int | None = None) -> SamplerConfig:
  """The SamplerConfig of a training rollout of `source` (methods.STUDENT, ...);
  `top_k` overrides SKD's K (the acceptance-targeting controller's K of the step)."""
  scfg = methods.sampler_config(source, run.config.sampler,
                                max_new_tokens=int(run.config.task.max_new_tokens),
                                stop_ids=run.stop_ids, method=run.config.method)
  if top_k is not None and scfg.method == "skd":
    scfg = scfg.replace(top_k=int(top_k))
  return _with_run_settings(run, scfg)


def eval_sampler_config(run) -> SamplerConfig:
  """The student's greedy decoding of evaluations."""
  config = run.config
  scfg = SamplerConfig(method="student", student_temperature=0.0,
                       max_new_tokens=int(config.task.max_new_tokens), stop_ids=run.stop_ids,
                       prompt_buckets=tuple(config.sampler.prompt_buckets) or None,
                       shared_vocab_size=int(config.sampler.shared_vocab_size) or None)
  return _with_run_settings(run, scfg)


def _with_run_settings(run, scfg: SamplerConfig) -> SamplerConfig:
  """The run's stop strings (as id sequences) and each model's rule table."""
  return scfg.replace(stop_sequences=run.stop_sequences,
                      student_rules=run.config.student.rules,
                      teacher_rules=run.config.teacher.rules)


# ----------------------------------------------------------------------------
# Rollouts.
# ----------------------------------------------------------------------------


def sample_rows(run, params, source: int, prompt_ids, key: jax.Array,
                row_offset: int = 0, *, replicated: bool = False, top_k: int | None = None):
  """Host Rollout (numpy) of `source` for this process's prompts.

  Row i is keyed by row_offset + i. In a multi-process run every process calls
  this together: with replicated=False each passes its own rows (row_offset =
  its first global row) and the prompts are padded to the widest bucket any
  process needs; with replicated=True all pass the same prompts.
  """
  return rollout(run, params, rollout_sampler_config(run, source, top_k), prompt_ids, key,
                 row_offset, replicated)


def rollout(run, params, scfg: SamplerConfig, prompt_ids, key: jax.Array,
            row_offset: int = 0, replicated: bool = False):
  """`sample_rows` for any SamplerConfig (`params`: the student's)."""
  # Only the models the method runs (a student-only rollout never checks the
  # teacher's vocabulary, which may be padded: Qwen2-7B vs 0.5B).
  student = Model(run.student.config, params) if scfg.method != "teacher" else None
  teacher = run.teacher if scfg.method != "student" else None
  static, dyn, tokens, lengths = sampling_api.prepare(student, teacher, prompt_ids, scfg)
  if not replicated:  # One compiled shape on every process.
    tokens = distributed.pad_columns(tokens, int(distributed.across_processes(tokens.shape[1])))
  keys = np.asarray(jax.device_get(sampler.row_keys_for(key, len(prompt_ids), row_offset)))
  inputs = distributed.global_rows({"tokens": tokens, "lengths": lengths, "keys": keys}, run.mesh,
                                  replicated)
  with jax.set_mesh(run.mesh):
    out = sampling_api.run_rollout(student, teacher, inputs["tokens"], inputs["lengths"],
                                   inputs["keys"], dyn, static)
  host = distributed.to_host(out)
  if replicated:
    return host
  return distributed.local_rows(host, len(prompt_ids), jax.process_index() * len(prompt_ids))


# ----------------------------------------------------------------------------
# The training batch.
# ----------------------------------------------------------------------------


def length_buckets(config) -> tuple[int, ...]:
  """Padded lengths of training rows (prompt + completion): powers of two."""
  return buckets.power_of_two(int(config.task.max_prompt_tokens) + int(config.task.max_new_tokens))


def _rollouts(run, state: TrainState, data_batch, sources: np.ndarray, step: int,
              offset: int, top_k: int | None = None) -> tuple[dict[int, Any], int, int]:
  """(source -> host Rollout, tested drafts, accepted drafts) of this host's rows."""
  rollouts, tested, accepted = {}, 0, 0
  for source in sorted(set(sources.tolist()) - {methods.GROUND_TRUTH}):
    out = sample_rows(run, state.params, source, data_batch.prompt_ids,
                      methods.sample_key(state.rng, step, source), offset, top_k=top_k)
    rollouts[source] = out
    rows = sources == source
    tested += int(np.sum(out.tested[rows]))
    accepted += int(np.sum(out.accepted[rows]))
  return rollouts, tested, accepted


def _batch_stats(batch: dict[str, np.ndarray], tested: int, accepted: int,
                 batch_size: int) -> dict[str, float]:
  """Data statistics totalled over every process's rows (logged by process 0)."""
  sampled, sampled_tokens, from_teacher, completion_tokens, tested, accepted = (
      distributed.across_processes(np.asarray([
          np.sum(batch["sampled"]), np.sum(batch["loss_mask"][batch["sampled"]]),
          np.sum(batch["from_teacher"]), np.sum(batch["loss_mask"]), tested, accepted],
          np.int64), reduce=np.sum).tolist())
  return {
      "sampled_fraction": sampled / batch_size,
      "replacement_rate": from_teacher / sampled_tokens if sampled_tokens else float("nan"),
      "acceptance_rate": accepted / tested if tested else float("nan"),
      "completion_tokens": int(completion_tokens),
  }


def make_train_batch(run, state: TrainState, data_batch, step: int, total_steps: int,
                     top_k: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  """The step's training batch (numpy, this host's rows) and its data statistics.

  `top_k` overrides SKD's K for this step (`acceptance_control.Tracker`; None =
  `sampler.top_k`).

  Returns:
    ({"tokens": int32 [B_local, L], "loss_mask": bool [B_local, L]} with L the
    same on every process, {"sampled_fraction", "replacement_rate",
    "acceptance_rate", "completion_tokens"}).
  """
  config = run.config
  local = len(data_batch)
  offset = jax.process_index() * local
  sources = methods.row_sources(config.method, config.mix, methods.source_key(state.rng, step),
                                config.batch_size, step, total_steps)[offset:offset + local]
  rollouts, tested, accepted = _rollouts(run, state, data_batch, sources, step, offset, top_k)
  batch = methods.assemble_batch(data_batch.prompt_ids, data_batch.target_ids, sources,
                                 rollouts, pad_id=run.pad_id, buckets=length_buckets(config))
  stats = _batch_stats(batch, tested, accepted, config.batch_size)
  # Every process must hand the step the same shape.
  width = int(distributed.across_processes(batch["tokens"].shape[1]))
  return {"tokens": distributed.pad_columns(batch["tokens"], width, run.pad_id),
          "loss_mask": distributed.pad_columns(batch["loss_mask"], width, False)}, stats
