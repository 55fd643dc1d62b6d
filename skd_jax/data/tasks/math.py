"""Competition math: UltraInteract Math_CoT training, MATH-500 / GSMplus / ASDiv /
SVAMP tests; the "math" and "math_eval" tasks."""

from __future__ import annotations

import dataclasses
import re

from skd_jax.data import sources
from skd_jax.data.task import Task, make_task, register_task

MATH_INSTRUCTION = ("Solve the following math problem step-by-step.\n"
                    "Simplify your answer as much as possible. Present your final "
                    "answer as \\boxed{Your Answer}.\n")


def ultrainteract_math_source(validation_size: int = 200, seed: int = 0,
                              test_source: sources.Source | None = None) -> sources.Source:
  """UltraInteract Math_CoT (instruction -> CoT with \\boxed{}) for training.

  Local file: `ultrainteract/ultrainteract_sft.jsonl` (fields task,
  instruction, response; rows with task == "Math_CoT" are kept). The test split
  comes from `test_source` (default MATH-500).
  """
  test_source = test_source or math_eval_source("math500")
  files = {"train": sources.RawFile("ultrainteract_sft.jsonl", "openbmb/UltraInteract_sft",
                                    "0000_sft.parquet", folder="ultrainteract")}
  for key, raw in test_source.files.items():  # The test split's own files.
    files[f"test/{key}"] = dataclasses.replace(raw, folder=raw.folder or test_source.name)

  def make_splits(read):
    rows = [r for r in read("train") if r.get("task", "Math_CoT") == "Math_CoT"]
    # answer "" : the \boxed{} grader reads the answer from the full response
    # (and the data layer stays below evaluation/).
    train = [{"id": str(sources.first_field(r, "id", default=f"ultrainteract-{i}")),
              "input": r["instruction"], "target": r["response"], "answer": ""}
             for i, r in enumerate(rows)]
    train, validation = sources.carve_validation(train, validation_size, seed)
    test = test_source.make_splits(lambda key: read(f"test/{key}"))["test"]
    return {"train": train, "validation": validation, "test": test}

  return sources.Source(f"ultrainteract+{test_source.name}", files, make_splits,
                        "UltraInteract math CoT")


_MATH_EVAL_SETS = {
    # name: (raw file, hub repo, hub path, question fields, answer fields)
    "math500": ("test.jsonl", "HuggingFaceH4/MATH-500", "test.jsonl",
                ("problem",), ("answer",)),
    "gsmplus": ("test.jsonl", "qintongli/GSM-Plus", "test.jsonl",
                ("question",), ("answer",)),
    "asdiv": ("test.jsonl", "EleutherAI/asdiv", "asdiv.jsonl",
              ("question",), ("answer",)),
    "svamp": ("test.json", "ChilleD/SVAMP", "test.json",
              ("question_concat", "Question"), ("Answer", "answer")),
}


def math_eval_source(name: str, instruction: str = "") -> sources.Source:
  """A test-only math set (MATH-500, GSMplus, ASDiv, SVAMP); answers for \\boxed{}.

  Local file: `<name>/test.jsonl` (SVAMP: `svamp/test.json`). ASDiv/SVAMP rows
  with separate Body/Question fields are joined; ASDiv answers such as
  "9 (apples)" keep the leading number. `instruction` is prepended to every
  question (the UltraInteract "Solve ... \\boxed{}" preamble).
  """
  if name not in _MATH_EVAL_SETS:
    raise ValueError(f"Unknown math eval set {name!r}; known: {sorted(_MATH_EVAL_SETS)}.")
  file_name, repo, hub_path, q_keys, a_keys = _MATH_EVAL_SETS[name]
  files = {"test": sources.RawFile(file_name, repo, hub_path)}

  def question(row):
    body = row.get("Body") or row.get("body") or ""
    q = sources.first_field(row, *q_keys, "question", "Question")
    return f"{body.strip()} {q.strip()}".strip() if body and body not in q else q

  def answer(row):
    text = str(sources.first_field(row, *a_keys))
    match = re.match(r"\s*(-?[\d,.]+)\s*\(", text)  # ASDiv "9 (apples)".
    return match.group(1) if match else sources.gsm8k_final_answer(text) or text.strip()

  def make_splits(read):
    test = [{"id": f"{name}-{i}", "input": instruction + question(r),
             "target": str(sources.first_field(r, "solution", default=answer(r))),
             "answer": answer(r)} for i, r in enumerate(read("test"))]
    return {"train": [], "validation": [], "test": test}

  return sources.Source(name, files, make_splits, f"{name} (test only)")


@register_task("math")
def math_task(test_set: str = "math500", validation_size: int = 200, **kw) -> Task:
  """UltraInteract math CoT for training; `test_set` (math500, gsmplus, asdiv,
  svamp) for test; accuracy of the last \\boxed{} answer."""
  test_source = math_eval_source(test_set, instruction=MATH_INSTRUCTION)
  source = ultrainteract_math_source(validation_size, test_source=test_source)
  return make_task("math", source, "{input}", (), ("boxed_accuracy",), 1024, 1024, **kw)


@register_task("math_eval")
def math_eval_task(test_set: str = "math500", **kw) -> Task:
  """A test-only math set with the UltraInteract instruction prepended."""
  source = math_eval_source(test_set, instruction=MATH_INSTRUCTION)
  return make_task("math_eval", source, "{input}", (), ("boxed_accuracy",), 1024, 1024,
                   **kw)
