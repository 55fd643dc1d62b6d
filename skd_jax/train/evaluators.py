"""Evaluators, declared in the config and loaded by name (big_vision style).

    evaluation = Evaluation(run)                   # reads config.eval.evaluators
    scores = evaluation(params, step, split, limit)

`config.eval.evaluators` is a comma-separated list of names from `EVALUATORS`,
run in that order on the same `EvalContext`; each returns the scores it adds:

* "task_metrics": the greedy student's completions scored by the task's
  metrics (+ "num_examples"); writes WORKDIR/eval/<split>_step_<step>/
  predictions.jsonl and metrics.json (process 0).
* "top1_agreement": teacher-student argmax agreement on the reference
  completions of the first `eval.agreement_batches` batches (nan when 0).
* "samples": the first `eval.num_samples` predictions (id, prompt, prediction,
  reference) to WORKDIR/samples/step_<step>.jsonl (process 0; after
  "task_metrics").

Each split is tokenised once per run: `Evaluation` keeps the encoded split,
covering the most examples any evaluation of that split asks for, and hands
each evaluator the prefix it needs.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import numpy as np

from skd_jax import distributed
from skd_jax import sharding
from skd_jax.data import pipeline
from skd_jax.evaluation import task_eval
from skd_jax.models.model import Model, logits as model_logits
from skd_jax.train import logger as logger_lib
from skd_jax.train import rollout
from skd_jax.train.validate import ConfigError

DEFAULT_EVALUATORS = "task_metrics,top1_agreement,samples"


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """What one evaluation's evaluators see.

  Attributes:
    run: the `run_setup.RunSetup`.
    params: the student params evaluated.
    step: the training step they come from (names the output files).
    split: the task split.
    encoded: the split tokenised once (`Evaluation.encoded`).
    limit: examples scored by "task_metrics" (None = the whole split).
    out_dir: WORKDIR/eval/<split>_step_<step>.
  """
  run: Any
  params: Any
  step: int
  split: str
  encoded: pipeline.EncodedSplit
  limit: int | None
  out_dir: str

  @property
  def main(self) -> bool:
    return jax.process_index() == 0


def _prefix(encoded: pipeline.EncodedSplit, n: int | None) -> pipeline.EncodedSplit:
  """The first `n` examples (all for None). Evaluation encodes with "truncate",
  so example i is record i and a prefix equals encoding with `limit=n`."""
  return encoded if n is None else dataclasses.replace(encoded, examples=encoded.examples[:n])


def greedy_generate_fn(run, params) -> task_eval.GenerateFn:
  """prompt id lists -> greedy student completions (the student's own sampler)."""
  scfg = rollout.eval_sampler_config(run)

  def generate(prompt_ids):
    # Every process generates the same prompts (replicated): metrics need them all.
    out = rollout.rollout(run, params, scfg, prompt_ids, jax.random.PRNGKey(0), 0,
                          replicated=True)
    return [out.tokens[i, out.prompt_length[i]:out.length[i]].tolist()
            for i in range(len(prompt_ids))]
  return generate


def task_metrics(ctx: EvalContext, scores: dict) -> dict:
  """The task's metrics of the greedy student on `ctx.limit` examples."""
  del scores
  config = ctx.run.config
  encoded = _prefix(ctx.encoded, ctx.limit)
  desc = f"{logger_lib.run_label(config)} eval {ctx.split}"   # e.g. "skd eval validation".
  with logger_lib.progress(len(encoded.examples), desc, enabled=ctx.main) as bar:
    return task_eval.evaluate_task(
        ctx.run.task, logger_lib.counting(greedy_generate_fn(ctx.run, ctx.params), bar),
        ctx.run.tokenizer, ctx.split, ctx.out_dir if ctx.main else None,
        batch_size=int(config.eval.batch_size), encoded=encoded)


def _replicated_logits_fn(run, model: Model):
  def fn(tokens):  # Same tokens on every process; logits gathered to each.
    with jax.set_mesh(run.mesh):
      return distributed.to_host(model_logits(
          model, distributed.replicated_batch(np.asarray(tokens), sharding.replicated(run.mesh))))
  return fn


def top1_agreement(ctx: EvalContext, scores: dict) -> dict:
  """Teacher-student top-1 agreement on reference completions of the split."""
  del scores
  run = ctx.run
  n, batch_size = int(run.config.eval.agreement_batches), int(run.config.eval.batch_size)
  if n <= 0:
    return {"top1_agreement": float("nan")}
  dataset = pipeline.batch_dataset(_prefix(ctx.encoded, n * batch_size), batch_size=batch_size,
                                   shuffle=False, num_epochs=1, shard_index=0, shard_count=1)
  teacher = _replicated_logits_fn(run, run.teacher)
  student = _replicated_logits_fn(run, Model(run.student.config, ctx.params))
  agree, count = 0.0, 0
  for batch in dataset:
    value, tokens = task_eval.top1_agreement(teacher, student, batch, pad_id=run.pad_id,
                                             vocab_size=run.loss_cfg.shared_vocab_size)
    if tokens:
      agree, count = agree + value * tokens, count + tokens
  return {"top1_agreement": agree / count if count else float("nan")}


def samples(ctx: EvalContext, scores: dict) -> dict:
  """A few of "task_metrics"' predictions to WORKDIR/samples/step_<step>.jsonl."""
  del scores
  predictions = os.path.join(ctx.out_dir, "predictions.jsonl")
  if not ctx.main or not os.path.exists(predictions):
    return {}
  out_path = os.path.join(ctx.run.workdir, "samples", f"step_{ctx.step}.jsonl")
  os.makedirs(os.path.dirname(out_path), exist_ok=True)
  n = int(ctx.run.config.eval.num_samples)
  with open(predictions, encoding="utf-8") as src, open(out_path, "w", encoding="utf-8") as dst:
    for i, line in enumerate(src):
      if i >= n:
        break
      row = json.loads(line)
      dst.write(json.dumps({k: row[k] for k in ("id", "prompt", "prediction", "reference")},
                           ensure_ascii=False) + "\n")
  return {}


Evaluator = Callable[[EvalContext, dict], dict]
EVALUATORS: dict[str, Evaluator] = {
    "task_metrics": task_metrics,
    "top1_agreement": top1_agreement,
    "samples": samples,
}


def evaluator_names(config) -> tuple[str, ...]:
  """The evaluators `config.eval.evaluators` declares, checked against `EVALUATORS`."""
  text = config.eval.get("evaluators", DEFAULT_EVALUATORS)
  names = tuple(n.strip() for n in text.split(",") if n.strip())
  unknown = [n for n in names if n not in EVALUATORS]
  if unknown:
    raise ConfigError(f"eval.evaluators={text!r}: unknown {unknown}; use names from "
                      f"{sorted(EVALUATORS)}.")
  return names


class Evaluation:
  """The run's evaluators over its splits; each split tokenised once."""

  def __init__(self, run):
    self.run = run
    self.evaluators = [EVALUATORS[n] for n in evaluator_names(run.config)]
    self._encoded: dict[str, tuple[int | None, pipeline.EncodedSplit]] = {}

  def _needed(self, limit: int | None) -> int | None:
    """Examples any evaluator reads for a task limit (None = the whole split)."""
    eval_cfg = self.run.config.eval
    agreement = int(eval_cfg.agreement_batches) * int(eval_cfg.batch_size)
    return None if limit is None else max(limit, agreement)

  def encoded(self, split: str, limit: int | None) -> pipeline.EncodedSplit:
    """`split` tokenised with at least the examples `limit` needs (cached)."""
    needed = self._needed(limit)
    cached = self._encoded.get(split)
    if cached is None or (cached[0] is not None and (needed is None or needed > cached[0])):
      self._encoded[split] = (needed, pipeline.encode_split(
          self.run.task, self.run.tokenizer, split, limit=needed))
    return self._encoded[split][1]

  def __call__(self, params, step: int, split: str, limit: int | None) -> dict:
    """Scores of every declared evaluator; limit: task examples, None = all."""
    ctx = EvalContext(run=self.run, params=params, step=step, split=split,
                      encoded=self.encoded(split, limit), limit=limit,
                      out_dir=os.path.join(self.run.workdir, "eval", f"{split}_step_{step}"))
    scores: dict = {}
    for evaluator in self.evaluators:
      scores.update(evaluator(ctx, scores))
    return scores
