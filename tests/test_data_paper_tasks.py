"""The paper tasks load at real scale from fixture files in the real formats.

`skd_jax.data.fixtures` writes Flores-200 / DialogSum / GSM8K / UltraInteract /
MATH-500 raw files with the real names, fields and row counts; every paper task
must then give the paper's 1K training subset and the documented split sizes.
"""
import csv
import json
import os
import time

import pytest

from skd_jax.data import fixtures
from skd_jax.data import tasks
from skd_jax.evaluation import metrics


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("paper")
  raw = str(root / "raw")
  start = time.perf_counter()
  counts = fixtures.write_paper_fixtures(raw)
  seconds = time.perf_counter() - start
  return {"raw": raw, "data": str(root / "tfds"), "counts": counts, "seconds": seconds}


def _task(dirs, name, **kw):
  return tasks.get_task(name, train_size=1000, raw_dir=dirs["raw"], data_dir=dirs["data"],
                        **kw)


def _splits(task):
  return {s: task.records(s) for s in tasks.SPLITS}


def test_fixture_files_have_real_names_and_sizes(dirs):
  assert dirs["counts"] == {
      "flores200/asm_Beng.dev": 997, "flores200/eng_Latn.dev": 997,
      "flores200/asm_Beng.devtest": 1012, "flores200/eng_Latn.devtest": 1012,
      "dialogsum/train.csv": 12460, "dialogsum/validation.csv": 500,
      "dialogsum/test.csv": 1500,
      "gsm8k/train.jsonl": 7473, "gsm8k/test.jsonl": 1319,
      "ultrainteract/ultrainteract_sft.jsonl": 2100,
      "math500/test.jsonl": 500}
  assert dirs["seconds"] < 10  # ~0.6 s alone; generous for a shared CPU.
  raw = dirs["raw"]
  with open(os.path.join(raw, "dialogsum", "test.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ["id", "dialogue", "summary", "topic"]
  assert [r["id"] for r in rows[:4]] == ["test_0_1", "test_0_2", "test_0_3", "test_1_1"]
  assert rows[0]["dialogue"] == rows[2]["dialogue"] != rows[3]["dialogue"]
  assert rows[0]["dialogue"].startswith("#Person1#: ") and "\n#Person2#: " in rows[0]["dialogue"]
  with open(os.path.join(raw, "math500", "test.jsonl")) as f:
    row = json.loads(f.readline())
  assert set(row) == {"problem", "solution", "answer", "subject", "level", "unique_id"}
  assert f"\\boxed{{{row['answer']}}}" in row["solution"]
  assert row["unique_id"].startswith("test/") and isinstance(row["level"], int)
  with open(os.path.join(raw, "flores200", "asm_Beng.dev"), encoding="utf-8") as f:
    line = f.readline()
  assert line.endswith("।\n") and any("\u0980" <= c <= "\u09ff" for c in line)


def test_fixtures_are_deterministic(tmp_path):
  for name in ("a", "b"):
    fixtures.write_math500(str(tmp_path / name), seed=3)
  fixtures.write_math500(str(tmp_path / "c"), seed=4)
  read = lambda d: (tmp_path / d / "math500" / "test.jsonl").read_bytes()
  assert read("a") == read("b") != read("c")


def test_translation_trains_on_1k_pairs_disjoint_from_test(dirs):
  # Old split (train = dev minus 100 = 897 pairs) raised "train_size=1000 but
  # task 'translation' has only 897 training records".
  splits = _splits(_task(dirs, "translation"))
  assert {s: len(r) for s, r in splits.items()} == {
      "train": 1000, "validation": 100, "test": 897}
  ids = {s: {r["id"] for r in rs} for s, rs in splits.items()}
  assert all(i.startswith("flores-devtest-") for i in ids["train"])
  assert all(i.startswith("flores-dev-") for i in ids["validation"] | ids["test"])
  assert not ids["validation"] & ids["test"]
  assert len(ids["validation"] | ids["test"]) == 997
  texts = {s: {r["target"] for r in rs} for s, rs in splits.items()}
  assert not texts["train"] & (texts["validation"] | texts["test"])
  record = splits["train"][0]
  assert record["input"].endswith("।") and record["target"].endswith(".")
  assert record["answer"] == record["target"]
  # The 100-pair low-data subset lies inside the 1000-pair one.
  small = tasks.get_task("translation", train_size=100, raw_dir=dirs["raw"],
                         data_dir=dirs["data"])
  assert {r["id"] for r in small.records("train")} <= ids["train"]


def test_summarization_from_dialogsum_csv(dirs):
  splits = _splits(_task(dirs, "summarization"))
  assert {s: len(r) for s, r in splits.items()} == {
      "train": 1000, "validation": 500, "test": 1500}
  with open(os.path.join(dirs["raw"], "dialogsum", "train.csv"), newline="") as f:
    by_id = {r["id"]: r for r in csv.DictReader(f)}
  for record in splits["train"][:50]:
    row = by_id[record["id"]]
    assert record["input"] == row["dialogue"] and "\n#Person2#: " in record["input"]
    assert record["target"] == record["answer"] == row["summary"]
  assert splits["validation"][0]["id"] == "dev_0"
  assert splits["test"][0]["id"] == "test_0_1"


def test_gsm8k_answers_are_the_number_after_hashes(dirs):
  splits = _splits(_task(dirs, "gsm8k"))
  assert {s: len(r) for s, r in splits.items()} == {
      "train": 1000, "validation": 200, "test": 1319}
  for split in tasks.SPLITS:
    for record in splits[split]:
      assert record["answer"] == record["target"].rsplit("#### ", 1)[1]
      assert record["answer"].lstrip("-").isdigit()
  targets = [r["target"] for r in splits["test"]]
  assert metrics.gsm8k_accuracy(targets, [r["answer"] for r in splits["test"]]) == 100.0
  questions = {s: {r["input"] for r in rs} for s, rs in splits.items()}
  assert not questions["test"] & (questions["train"] | questions["validation"])


def test_math_trains_on_math_cot_and_tests_on_math500(dirs):
  splits = _splits(_task(dirs, "math"))
  assert {s: len(r) for s, r in splits.items()} == {
      "train": 1000, "validation": 200, "test": 500}
  for record in splits["train"] + splits["validation"]:  # Other tasks filtered out.
    assert record["input"].startswith(fixtures.MATH_COT_PREAMBLE)
    assert "\n\nAnswer:\n\\boxed{" in record["target"]
  assert fixtures.MATH_COT_PREAMBLE == tasks.MATH_INSTRUCTION
  with open(os.path.join(dirs["raw"], "math500", "test.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  test = splits["test"]
  assert [r["answer"] for r in test] == [r["answer"] for r in rows]
  assert [r["target"] for r in test] == [r["solution"] for r in rows]
  assert all(r["input"] == tasks.MATH_INSTRUCTION + row["problem"]
             for r, row in zip(test, rows))
  sample = test[:40]
  assert metrics.boxed_accuracy([r["target"] for r in sample],
                                [r["answer"] for r in sample]) == 100.0


def test_cli_writes_one_task(tmp_path, capsys):
  fixtures.main(["--out", str(tmp_path), "--task", "gsm8k"])
  assert sorted(os.listdir(tmp_path)) == ["gsm8k"]
  assert "gsm8k/test.jsonl: 1319 rows" in capsys.readouterr().out
  with pytest.raises(ValueError, match="No fixtures"):
    fixtures.write_paper_fixtures(str(tmp_path), tasks=["aclsum"])


def test_paper_task_encodes_with_qwen2_layout(dirs):
  """The 1K GSM8K subset tokenised with the Qwen2-shaped tokenizer."""
  from skd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from skd_jax.data import testing  # pylint: disable=g-import-not-at-top
  tokenizer = testing.make_chat_tokenizer("qwen2-real")
  encoded = pipeline.encode_split(_task(dirs, "gsm8k"), tokenizer, "train")
  assert len(encoded.examples) == 1000 and encoded.dropped == 0
  assert encoded.pad_id == 151643
  for example in encoded.examples[:100]:
    assert example.prompt_ids[0] == 151644 and example.prompt_text.endswith(
        "<|im_start|>assistant\n")
    assert example.target_ids[-1] == 151645 and max(example.target_ids) < 151646
