"""GSM8K (grade-school math): its source and task."""

from __future__ import annotations

from skd_jax.data import sources
from skd_jax.data.task import Task, make_task, register_task


def gsm8k_source(validation_size: int = 200, seed: int = 0) -> sources.Source:
  """GSM8K: train (7473) minus a seeded validation carve; test (1319).

  Local files: `gsm8k/train.jsonl`, `gsm8k/test.jsonl` (the official
  grade-school-math release; fields question, answer).
  """
  files = {
      "train": sources.RawFile("train.jsonl", "openai/gsm8k", "main/train-00000-of-00001.parquet"),
      "test": sources.RawFile("test.jsonl", "openai/gsm8k", "main/test-00000-of-00001.parquet"),
  }

  def to_record(i, row, split):
    solution = row["answer"]
    return {"id": f"gsm8k-{split}-{i}", "input": row["question"], "target": solution,
            "answer": sources.gsm8k_final_answer(solution)}

  def make_splits(read):
    train = [to_record(i, r, "train") for i, r in enumerate(read("train"))]
    train, validation = sources.carve_validation(train, validation_size, seed)
    test = [to_record(i, r, "test") for i, r in enumerate(read("test"))]
    return {"train": train, "validation": validation, "test": test}

  return sources.Source("gsm8k", files, make_splits, "GSM8K grade-school math")


@register_task("gsm8k")
def gsm8k_task(validation_size: int = 200, **kw) -> Task:
  """GSM8K; "Q: {question} \\n\\nA:"; accuracy of the number after "####"."""
  return make_task("gsm8k", gsm8k_source(validation_size), "Q: {input} \n\nA:",
                   ("\n\n",), ("gsm8k_accuracy",), 256, 512, **kw)
