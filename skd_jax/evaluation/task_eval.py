"""Task evaluation independent of the sampler, and teacher-student agreement.

    metrics = evaluate_task(task, generate_fn, tokenizer, "test", out_dir)

`generate_fn(prompt_ids: list[list[int]]) -> list[list[int]]` returns one
completion (token ids, stop token optional) per prompt; the training code
passes the student's greedy sampler. Completions are cut at the first stop id,
decoded, cut at the task's stop strings, then scored. `out_dir` receives
`predictions.jsonl` (one row per example) and `metrics.json`.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Sequence

import numpy as np

from skd_jax import losses
from skd_jax.data import pipeline
from skd_jax.data import templates
from skd_jax.evaluation import metrics as metrics_lib

GenerateFn = Callable[[list[list[int]]], list[list[int]]]
LogitsFn = Callable[[np.ndarray], np.ndarray]


def _references_for(metric: str, batch_refs: list[str], batch_answers: list[str]) -> list[str]:
  """Full reference completions, except \\boxed{} accuracy, which compares answers."""
  if metric == "boxed_accuracy":
    return [a or r for r, a in zip(batch_refs, batch_answers)]
  return batch_refs


def evaluate_task(task, generate_fn: GenerateFn, tokenizer, split: str = "test",
                  out_dir: str | None = None, *, batch_size: int = 32,
                  limit: int | None = None, metric_names: Sequence[str] | None = None,
                  shard_index: int = 0, shard_count: int = 1,
                  encoded: pipeline.EncodedSplit | None = None) -> dict[str, float]:
  """Generates for every example of `split`, scores, and writes the results.

  Args:
    task: a `tasks.Task`.
    generate_fn: prompt id lists -> completion id lists (same order).
    tokenizer: renders prompts and decodes completions.
    split: "validation" or "test" (or "train").
    out_dir: where to write predictions.jsonl and metrics.json (None: nowhere).
    batch_size: prompts per generate_fn call.
    limit: evaluate only the first `limit` examples.
    metric_names: default task.metrics.
    shard_index, shard_count: evaluate one shard (default: everything on this
      host; metrics are only meaningful over the whole split).
    encoded: `split` already tokenised (`limit` is then not applied): callers
      that evaluate a split repeatedly tokenise it once.

  Returns:
    {metric: score} plus "num_examples".
  """
  if encoded is None:
    encoded = pipeline.encode_split(task, tokenizer, split, limit=limit)
  dataset = pipeline.batch_dataset(encoded, batch_size=batch_size, shuffle=False,
                                   num_epochs=1, shard_index=shard_index,
                                   shard_count=shard_count)
  stop_ids = task.stop_ids(tokenizer)
  rows = []
  for batch in dataset:
    completions = generate_fn([list(p) for p in batch.prompt_ids])
    if len(completions) != len(batch):
      raise ValueError(f"generate_fn returned {len(completions)} completions for "
                       f"{len(batch)} prompts.")
    for i, completion in enumerate(completions):
      text = templates.decode_completion(tokenizer, completion, task.stop_strings, stop_ids)
      rows.append({"id": batch.ids[i], "input": batch.inputs[i],
                   "prompt": batch.prompt_texts[i], "prediction": text,
                   "reference": batch.references[i], "answer": batch.answers[i],
                   "completion_ids": [int(t) for t in completion]})
  names = list(metric_names or task.metrics)
  predictions = [r["prediction"] for r in rows]
  references = [r["reference"] for r in rows]
  answers = [r["answer"] for r in rows]
  scores = {}
  for name in names:
    scores.update(metrics_lib.compute_metrics(
        [name], predictions, _references_for(name, references, answers),
        sources=[r["input"] for r in rows]))
  scores["num_examples"] = len(rows)
  if out_dir is not None:
    write_results(out_dir, rows, scores)
  return scores


def write_results(out_dir: str, rows: Sequence[dict], scores: dict) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "predictions.jsonl"), "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
    json.dump(scores, f, indent=2, sort_keys=True)


def top1_agreement(teacher_logits_fn: LogitsFn, student_logits_fn: LogitsFn,
                   batch: pipeline.Batch, pad_id: int = 0, *,
                   vocab_size: int | None = None) -> tuple[float, int]:
  """Fraction of reference-completion tokens where teacher and student argmax agree.

  Both models are teacher-forced on prompt + reference completion. The logit
  at position t predicts token t+1, so a completion token at position t is
  scored by the logits at t-1; positions inside the prompt and padding are
  ignored.

  Args:
    teacher_logits_fn, student_logits_fn: int32 tokens [B, L] -> logits [B, L, V].
    batch: a `pipeline.Batch` (its prompt_ids and target_ids are used).
    pad_id: id used for right padding (masked out either way).
    vocab_size: compare the argmax over the first `vocab_size` ids of both models
      (vocabularies that differ by padding rows, e.g. Qwen2-7B vs 0.5B: the
      driver's `sampler.shared_vocab_size`). None: the logit widths must match.

  Returns:
    (agreement in [0, 1], number of scored tokens). (nan, 0) when empty.

  Raises:
    ValueError: logits that do not fit the tokens, or widths that differ
      without `vocab_size`.
  """
  tokens, completion_mask = pipeline.concat_prompt_and_target(batch, pad_id)
  # predicts[b, t] is True when logits[b, t] predict a completion token.
  predicts = np.zeros_like(completion_mask)
  predicts[:, :-1] = completion_mask[:, 1:]
  teacher = np.asarray(teacher_logits_fn(tokens))
  student = np.asarray(student_logits_fn(tokens))
  if teacher.shape[:2] != tokens.shape or student.shape[:2] != tokens.shape:
    raise ValueError(f"Logits shapes {teacher.shape} / {student.shape} do not start "
                     f"with the token shape {tokens.shape}.")
  vocab = losses.shared_vocab(teacher.shape[-1], student.shape[-1], vocab_size)
  agree = (np.argmax(teacher[..., :vocab], axis=-1)
           == np.argmax(student[..., :vocab], axis=-1))
  count = int(predicts.sum())
  if count == 0:
    return float("nan"), 0
  return float((agree & predicts).sum() / count), count
