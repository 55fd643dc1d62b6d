"""evaluate_task with a scripted generator; top-1 agreement on completion positions."""
import json
import os

import numpy as np
import pytest

from skd_jax.data import pipeline
from skd_jax.data import tasks
from skd_jax.data import templates
from skd_jax.data import testing
from skd_jax.evaluation import task_eval


@pytest.fixture(scope="module")
def tokenizer():
  return testing.make_chat_tokenizer("gemma")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  return tasks.get_task("arithmetic", data_dir=str(tmp_path_factory.mktemp("tfds")))


def test_evaluate_task_writes_predictions_and_scores(task, tokenizer, tmp_path):
  records = {r["input"]: r for r in task.records("test")[:20]}
  end = templates.completion_end_id(tokenizer)
  by_prompt = {}
  for r in records.values():
    _, ids = templates.encode_prompt(tokenizer, task.format_prompt(r))
    by_prompt[tuple(ids)] = r

  def generate(prompts):  # Right answer for even numbered ids, wrong for odd.
    out = []
    for p in prompts:
      r = by_prompt[tuple(p)]
      right = int(r["id"].split("-")[1]) % 2 == 0
      text = r["target"] if right else "#### 100000"
      # After the answer: a blank line (stop string), then junk.
      out.append(tokenizer.encode(text + "\n\nQ: junk", add_special_tokens=False) + [end])
    return out

  scores = task_eval.evaluate_task(task, generate, tokenizer, "test", str(tmp_path),
                                   batch_size=6, limit=20)
  expected = 100 * sum(int(r["id"].split("-")[1]) % 2 == 0 for r in records.values()) / 20
  assert scores["gsm8k_accuracy"] == pytest.approx(expected)
  assert scores["num_examples"] == 20
  rows = [json.loads(l) for l in open(os.path.join(tmp_path, "predictions.jsonl"))]
  assert len(rows) == 20 and all("junk" not in r["prediction"] for r in rows)
  assert json.load(open(os.path.join(tmp_path, "metrics.json"))) == scores


def test_top1_agreement_counts_completion_positions_only(task, tokenizer):
  encoded = pipeline.encode_split(task, tokenizer, "validation", limit=4)
  batch = next(iter(pipeline.batch_dataset(encoded, batch_size=4, shuffle=False,
                                           shard_index=0, shard_count=1)))
  vocab = len(tokenizer)

  def teacher(tokens):  # Predicts the next token exactly (one-hot at t -> t+1).
    nxt = np.concatenate([tokens[:, 1:], tokens[:, -1:]], axis=1)
    return np.eye(vocab, dtype=np.float32)[nxt]

  def student_wrong_on_first(tokens):  # Agrees except when predicting the first
    logits = teacher(tokens)            # completion token of each row.
    for row, p in enumerate(batch.prompt_ids):
      logits[row, len(p) - 1] = np.roll(logits[row, len(p) - 1], 1)
    return logits

  total = sum(len(t) for t in batch.target_ids)
  agreement, count = task_eval.top1_agreement(teacher, teacher, batch,
                                              pad_id=encoded.pad_id)
  assert (agreement, count) == (1.0, total)
  agreement, count = task_eval.top1_agreement(teacher, student_wrong_on_first, batch,
                                              pad_id=encoded.pad_id)
  assert count == total and agreement == pytest.approx((total - 4) / total)

  def student_wrong_in_prompt(tokens):  # Disagreement inside prompts is ignored.
    logits = teacher(tokens)
    logits[:, 0] = np.roll(logits[:, 0], 1, axis=-1)
    return logits

  assert task_eval.top1_agreement(teacher, student_wrong_in_prompt, batch)[0] == 1.0
