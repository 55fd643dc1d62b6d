"""Paper tasks prepare from local files offline; missing files give a clear error."""
import json
import os

import pytest

from skd_jax.data import tasks


def _write_jsonl(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")


def test_gsm8k_from_local_files(tmp_path):
  raw = str(tmp_path / "raw")
  train = [{"question": f"q{i}?", "answer": f"step\n#### {i}"} for i in range(30)]
  test = [{"question": "t?", "answer": "#### 1,000"}]
  _write_jsonl(os.path.join(raw, "gsm8k", "train.jsonl"), train)
  _write_jsonl(os.path.join(raw, "gsm8k", "test.jsonl"), test)
  task = tasks.get_task("gsm8k", validation_size=5, raw_dir=raw,
                        data_dir=str(tmp_path / "tfds"))
  tr, va, te = (task.records(s) for s in ("train", "validation", "test"))
  assert (len(tr), len(va), len(te)) == (25, 5, 1)
  assert {r["input"] for r in tr + va} == {r["question"] for r in train}
  assert te[0]["answer"] == "1,000" and te[0]["target"] == "#### 1,000"
  assert task.stop_strings == ("\n\n",)


def test_flores_pair_from_local_lines(tmp_path):
  """Train = devtest; validation and test are disjoint parts of dev."""
  raw = tmp_path / "raw" / "flores200"
  raw.mkdir(parents=True)
  for code, word in (("asm_Beng", "অসম"), ("eng_Latn", "english")):
    (raw / f"{code}.dev").write_text("".join(f"{word} {i}\n" for i in range(12)))
    (raw / f"{code}.devtest").write_text("".join(f"{word} t{i}\n" for i in range(3)))
  task = tasks.get_task("translation", validation_size=2, raw_dir=str(tmp_path / "raw"),
                        data_dir=str(tmp_path / "tfds"))
  assert [(r["input"], r["target"]) for r in task.records("train")] == [
      (f"অসম t{i}", f"english t{i}") for i in range(3)]
  validation, test = task.records("validation"), task.records("test")
  assert (len(validation), len(test)) == (2, 10)
  assert sorted(r["target"] for r in validation + test) == sorted(
      f"english {i}" for i in range(12))


def test_offline_missing_file_names_path(tmp_path, monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  task = tasks.get_task("summarization", raw_dir=str(tmp_path / "raw"),
                        data_dir=str(tmp_path / "tfds"))
  with pytest.raises(FileNotFoundError) as error:
    task.records("test")
  message = str(error.value)
  assert os.path.join(str(tmp_path / "raw"), "dialogsum") in message
  assert "train.csv" in message and "knkarthick/dialogsum" in message


def test_unknown_names_are_rejected():
  with pytest.raises(ValueError, match="Unknown task"):
    tasks.get_task("nope")
  with pytest.raises(TypeError, match="Unknown arguments"):
    tasks.get_task("arithmetic", bogus=1)
  with pytest.raises(ValueError, match="split"):
    tasks.get_task("arithmetic").split_indices("dev", 3)
  assert {"translation", "summarization", "gsm8k", "math", "arithmetic",
          "numbers_en_fr", "numbers_en_de", "aclsum"} <= set(tasks.list_tasks())
