"""Offline tasks: deterministic bytes, correct answers (recomputed independently)."""
import gzip
import json
import os
import re

import pytest

from skd_jax.data import offline_tasks
from skd_jax.data import sources

# Hand-written: template -> answer from the question's numbers, in order.
RECOMPUTE = {
    "buy_give": lambda a, b, c: a + b - c,
    "boxes": lambda a, b, c: a * b + c,
    "share": lambda a, b, c: a * b // c,
    "money": lambda m, a, p: m - a * p,
    "days": lambda a, d, b, e: a * d + b * e,
    "twice": lambda a, c: a + 2 * a + (2 * a - c),
    "rows": lambda r, s, t: r * s - t,
    "split_bill": lambda a, b, k: (a + b) // k,
}

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i >= 2}


def english_words_to_int(text):
  """Independent parser of British English number words below 1000."""
  total = 0
  for word in text.replace("-", " ").replace(" and ", " ").split():
    if word == "hundred":
      total *= 100
    elif word in _TENS:
      total += _TENS[word]
    else:
      total += _UNITS[word]
  return total


def read(task, split):
  path = os.path.join(sources.OFFLINE_DIR, task, f"{split}.jsonl.gz")
  with gzip.open(path, "rt", encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_generation_is_deterministic_and_matches_shipped_files(tmp_path):
  first = offline_tasks.write_offline_tasks(str(tmp_path / "a"), seed=7,
                                            tasks=["arithmetic", "numbers_en_de"])
  second = offline_tasks.write_offline_tasks(str(tmp_path / "b"), seed=7,
                                             tasks=["arithmetic", "numbers_en_de"])
  assert len(first) == 6
  for p, q in zip(first, second):
    assert open(p, "rb").read() == open(q, "rb").read()
  other = offline_tasks.write_offline_tasks(str(tmp_path / "c"), seed=8,
                                            tasks=["arithmetic"])
  assert open(other[0], "rb").read() != open(first[0], "rb").read()
  # The shipped files are what the default seed produces.
  shipped = offline_tasks.write_offline_tasks(str(tmp_path / "d"))
  for path in shipped:
    rel = os.path.relpath(path, str(tmp_path / "d"))
    with open(os.path.join(sources.OFFLINE_DIR, rel), "rb") as f:
      assert f.read() == open(path, "rb").read(), rel


def test_arithmetic_answers_are_correct():
  sizes = {"train": 2000, "validation": 200, "test": 200}
  questions = set()
  for split, size in sizes.items():
    records = read("arithmetic", split)
    assert len(records) == size
    for r in records:
      numbers = [int(x) for x in re.findall(r"\d+", r["input"])]
      expected = RECOMPUTE[r["template"]](*numbers)
      assert r["answer"] == str(expected)
      assert r["target"].endswith(f"\n#### {expected}")
      assert "\n\n" not in r["target"]  # The GSM8K stop never cuts a reference.
      equations = re.findall(r"((?:\d+ [-+*/] )+\d+) = (\d+)", r["target"])
      assert len(equations) == r["target"].count("\n")  # One per CoT line.
      for expression, result in equations:  # Only digits and operators: safe.
        assert eval(expression) == int(result), r["target"]  # pylint: disable=eval-used
      assert 0 <= expected < 1000 and max(numbers) < 200  # Small numbers.
      questions.add(r["input"])
  assert len(questions) == sum(sizes.values())  # No question in two splits.


@pytest.mark.parametrize("lang", ["fr", "de"])
def test_number_translations_round_trip(lang):
  seen = set()
  for split, size in {"train": 800, "validation": 100, "test": 100}.items():
    records = read(f"numbers_en_{lang}", split)
    assert len(records) == size
    for r in records:
      assert english_words_to_int(r["input"]) == r["number"]
      seen.add(r["number"])
  assert seen == set(range(1000))  # Splits partition 0..999.


@pytest.mark.parametrize("lang, number, words", [
    ("fr", 21, "vingt et un"), ("fr", 80, "quatre-vingts"), ("fr", 312, "trois cent douze"),
    ("fr", 999, "neuf cent quatre-vingt-dix-neuf"), ("de", 21, "einundzwanzig"),
    ("de", 312, "dreihundertzwölf"), ("de", 101, "einhunderteins"),
])
def test_number_translations_hand_checked(lang, number, words):
  records = [r for s in ("train", "validation", "test")
             for r in read(f"numbers_en_{lang}", s)]
  assert {r["number"]: r["target"] for r in records}[number] == words


def test_aclsum_ships_real_data():
  pytest.importorskip("aclsum")
  import aclsum  # pylint: disable=g-import-not-at-top
  test = read("aclsum", "test")
  assert len(test) == 3 * len(aclsum.ACLSum("test"))
  doc = aclsum.ACLSum("test")[0]
  mine = {r["id"]: r for r in test}[f"aclsum-{doc.id}-outcome"]
  assert mine["input"].startswith("Summarize the outcome of this paper in one sentence.")
  assert mine["target"].split()[:3] == doc.summaries["outcome"].split()[:3]
  total = sum(os.path.getsize(os.path.join(dp, f))
              for dp, _, fs in os.walk(sources.OFFLINE_DIR) for f in fs)
  assert total < 600_000  # Small enough to ship.


def test_custom_config_warning_silenced_only_for_our_builders():
  """tfds warns on every per-source config; ours are expected, others still warn."""
  import logging

  import tensorflow_datasets as tfds

  from skd_jax.data import tasks, tfds_builder
  source = tasks.get_task("numbers_en_fr").source
  ours = tfds_builder.SkdTextRecords(source=source).builder_config
  other = tfds.core.BuilderConfig(name="someone_elses_config")
  seen = []
  handler = logging.Handler()
  handler.emit = seen.append
  absl_logger = logging.getLogger("absl")
  absl_logger.addHandler(handler)
  try:
    for config in (ours, other):
      absl_logger.warning("Using custom data configuration: %s", config)
  finally:
    absl_logger.removeHandler(handler)
  assert [r.args[0].name for r in seen] == ["someone_elses_config"]
