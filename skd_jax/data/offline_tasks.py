"""Deterministic generation of the small offline tasks shipped in `data/offline/`.

Three task families that need no network, small enough for tiny models on CPU:

* `numbers_en_fr`, `numbers_en_de`: translate an English number in words (0-999)
  into French / German words, with `num2words` as the oracle. The 1000 numbers are
  split 800/100/100 by a seeded permutation, so test numbers are never seen in
  training (the task measures compositional generalisation, not memorisation).
* `arithmetic`: templated 2-3 step word problems with small numbers and a
  chain-of-thought answer ending in GSM8K's "#### N" line (2000/200/200).
* `aclsum`: a real (tiny) summarisation set built from the `aclsum` package's
  bundled ACLSum data: "Summarize the {aspect} of this paper in one sentence.
  {abstract}" -> the paper's one-sentence summary of that aspect (challenge,
  approach or outcome); 300/150/300 records from 100/50/100 papers.

Every record has the fields of `skd_jax.data.sources.Record`:
{"id", "input", "target", "answer"} plus task-specific provenance fields
("number", "lang", "template", "aspect").

Files are gzip-compressed JSON lines written with a zero mtime and no file name
in the header, so the same seed gives the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
from typing import Callable, Iterable, Sequence

import numpy as np

DEFAULT_SEED = 1234
NUMBER_LANGS = {"fr": "French", "de": "German"}
NUMBER_SPLIT_SIZES = {"train": 800, "validation": 100, "test": 100}
ARITHMETIC_SPLIT_SIZES = {"train": 2000, "validation": 200, "test": 200}
ACLSUM_ASPECTS = ("challenge", "approach", "outcome")
ACLSUM_SPLITS = {"train": "train", "validation": "val", "test": "test"}

# ----------------------------------------------------------------------------
# Numbers in words.
# ----------------------------------------------------------------------------


def number_records(lang: str, seed: int = DEFAULT_SEED) -> dict[str, list[dict]]:
  """English words -> `lang` words for 0..999, split 800/100/100 (seeded)."""
  from num2words import num2words  # pylint: disable=g-import-not-at-top

  if lang not in NUMBER_LANGS:
    raise ValueError(f"lang={lang!r}; expected one of {sorted(NUMBER_LANGS)}.")
  order = np.random.default_rng([seed, 0, ord(lang[0]), ord(lang[1])]).permutation(1000)
  splits, start = {}, 0
  for split, size in NUMBER_SPLIT_SIZES.items():
    records = []
    for number in order[start:start + size].tolist():
      target = num2words(number, lang=lang)
      records.append({
          "id": f"numbers_en_{lang}-{number}",
          "input": num2words(number, lang="en"),
          "target": target,
          "answer": target,
          "number": number,
          "lang": lang,
      })
    splits[split] = records
    start += size
  return splits


# ----------------------------------------------------------------------------
# Multi-step arithmetic word problems.
# ----------------------------------------------------------------------------

_NAMES = ("Ava", "Ben", "Chloe", "Dan", "Ella", "Finn", "Grace", "Hugo", "Ivy",
          "Jack", "Kara", "Leo", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sam")
_ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books",
          "stamps", "shells", "cards", "balloons")


def _problem_buy_give(rng) -> tuple[str, list[str], int]:
  """a + b - c."""
  name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
  a, b = int(rng.integers(5, 40)), int(rng.integers(2, 30))
  c = int(rng.integers(1, a + b))
  q = (f"{name} has {a} {item}. {name} buys {b} more {item} and then gives {c} "
       f"{item} to a friend. How many {item} does {name} have now?")
  steps = [f"{name} starts with {a} {item} and buys {b} more, so {a} + {b} = {a + b}.",
           f"After giving away {c}, {name} has {a + b} - {c} = {a + b - c}."]
  return q, steps, a + b - c


def _problem_boxes(rng) -> tuple[str, list[str], int]:
  """a * b + c."""
  name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
  a, b, c = int(rng.integers(2, 10)), int(rng.integers(2, 13)), int(rng.integers(1, 20))
  q = (f"{name} has {a} boxes with {b} {item} in each box and {c} loose {item}. "
       f"How many {item} does {name} have in total?")
  steps = [f"The boxes hold {a} * {b} = {a * b} {item}.",
           f"With the loose ones, {name} has {a * b} + {c} = {a * b + c}."]
  return q, steps, a * b + c


def _problem_share(rng) -> tuple[str, list[str], int]:
  """(a * b) / c, exact."""
  name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
  c = int(rng.integers(2, 7))
  b = int(rng.integers(2, 10))
  a = c * int(rng.integers(1, 8))  # a * b divisible by c.
  q = (f"{name} buys {a} packs of {item} with {b} {item} in each pack and shares "
       f"them equally among {c} friends. How many {item} does each friend get?")
  steps = [f"{name} buys {a} * {b} = {a * b} {item}.",
           f"Each friend gets {a * b} / {c} = {a * b // c}."]
  return q, steps, a * b // c


def _problem_money(rng) -> tuple[str, list[str], int]:
  """m - a * p."""
  name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
  a, p = int(rng.integers(2, 10)), int(rng.integers(2, 10))
  m = a * p + int(rng.integers(0, 50))
  q = (f"{name} has {m} dollars and buys {a} {item} that cost {p} dollars each. "
       f"How many dollars does {name} have left?")
  steps = [f"The {item} cost {a} * {p} = {a * p} dollars.",
           f"{name} has {m} - {a * p} = {m - a * p} dollars left."]
  return q, steps, m - a * p


def _problem_days(rng) -> tuple[str, list[str], int]:
  """a * d + b * e."""
  name = rng.choice(_NAMES)
  a, d = int(rng.integers(2, 12)), int(rng.integers(2, 8))
  b, e = int(rng.integers(2, 12)), int(rng.integers(2, 8))
  q = (f"{name} reads {a} pages a day for {d} days and then {b} pages a day for "
       f"{e} days. How many pages does {name} read in total?")
  steps = [f"First {name} reads {a} * {d} = {a * d} pages.",
           f"Then {name} reads {b} * {e} = {b * e} pages.",
           f"In total {name} reads {a * d} + {b * e} = {a * d + b * e} pages."]
  return q, steps, a * d + b * e


def _problem_twice(rng) -> tuple[str, list[str], int]:
  """a + 2a + (2a - c)."""
  n1, n2, n3 = rng.choice(_NAMES, size=3, replace=False)
  item = rng.choice(_ITEMS)
  a = int(rng.integers(2, 25))
  c = int(rng.integers(1, 2 * a))
  q = (f"{n1} has {a} {item}. {n2} has twice as many {item} as {n1}. {n3} has {c} "
       f"fewer {item} than {n2}. How many {item} do they have together?")
  steps = [f"{n2} has 2 * {a} = {2 * a} {item}.",
           f"{n3} has {2 * a} - {c} = {2 * a - c} {item}.",
           f"Together they have {a} + {2 * a} + {2 * a - c} = {5 * a - c}."]
  return q, steps, 5 * a - c


def _problem_rows(rng) -> tuple[str, list[str], int]:
  """r * s - t."""
  name = rng.choice(_NAMES)
  r, s = int(rng.integers(2, 12)), int(rng.integers(2, 12))
  t = int(rng.integers(1, r * s))
  q = (f"{name} plants {r} rows of trees with {s} trees in each row. {t} of the "
       f"trees die. How many trees are still alive?")
  steps = [f"{name} plants {r} * {s} = {r * s} trees.",
           f"{r * s} - {t} = {r * s - t} trees are still alive."]
  return q, steps, r * s - t


def _problem_split_bill(rng) -> tuple[str, list[str], int]:
  """(a + b) / k, exact."""
  k = int(rng.integers(2, 6))
  total = k * int(rng.integers(3, 30))
  a = int(rng.integers(1, total))
  b = total - a
  name = rng.choice(_NAMES)
  q = (f"{name} and friends order food for {a} dollars and drinks for {b} dollars. "
       f"They split the bill equally between {k} people. How many dollars does each "
       f"person pay?")
  steps = [f"The bill is {a} + {b} = {total} dollars.",
           f"Each person pays {total} / {k} = {total // k} dollars."]
  return q, steps, total // k


# Template name -> generator. The name is stored in each record so a test can
# recompute the answer from the question's numbers independently.
ARITHMETIC_TEMPLATES: dict[str, Callable] = {
    "buy_give": _problem_buy_give,
    "boxes": _problem_boxes,
    "share": _problem_share,
    "money": _problem_money,
    "days": _problem_days,
    "twice": _problem_twice,
    "rows": _problem_rows,
    "split_bill": _problem_split_bill,
}


def arithmetic_records(seed: int = DEFAULT_SEED) -> dict[str, list[dict]]:
  """GSM8K-style problems; targets are single-newline CoT ending in '#### N'.

  The target never contains a blank line, so the GSM8K stop string "\\n\\n"
  cannot cut a reference short. Questions are unique across all splits.
  """
  rng = np.random.default_rng([seed, 1])
  names = sorted(ARITHMETIC_TEMPLATES)
  total = sum(ARITHMETIC_SPLIT_SIZES.values())
  seen, records = set(), []
  while len(records) < total:
    template = names[int(rng.integers(len(names)))]
    question, steps, answer = ARITHMETIC_TEMPLATES[template](rng)
    if question in seen:
      continue
    seen.add(question)
    target = "\n".join(steps + [f"#### {answer}"])
    records.append({"id": f"arithmetic-{len(records)}", "input": question,
                    "target": target, "answer": str(answer), "template": template})
  splits, start = {}, 0
  for split, size in ARITHMETIC_SPLIT_SIZES.items():
    splits[split] = records[start:start + size]
    start += size
  return splits


# ----------------------------------------------------------------------------
# ACLSum.
# ----------------------------------------------------------------------------


def detokenize(text: str) -> str:
  """Undoes the space-before-punctuation tokenisation of ACLSum sentences."""
  text = re.sub(r"\s+([.,;:!?%)\]])", r"\1", text)
  text = re.sub(r"([(\[])\s+", r"\1", text)
  return text


def aclsum_records() -> dict[str, list[dict]]:
  """Abstract -> aspect summary, one record per (paper, aspect).

  Raises:
    ImportError: the `aclsum` package (which bundles the data) is missing.
  """
  try:
    import aclsum  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("The aclsum offline task needs `pip install aclsum>=0.1.2` "
                      "(it bundles the ACLSum data) to be regenerated.") from e
  splits = {}
  for split, source_split in ACLSUM_SPLITS.items():
    records = []
    for doc in aclsum.ACLSum(source_split):
      abstract = detokenize(" ".join(doc.sentences["abstract"]))
      for aspect in ACLSUM_ASPECTS:
        summary = detokenize(doc.summaries[aspect].strip())
        prompt = f"Summarize the {aspect} of this paper in one sentence. {abstract}"
        records.append({"id": f"aclsum-{doc.id}-{aspect}", "input": prompt,
                        "target": summary, "answer": summary, "aspect": aspect})
    splits[split] = records
  return splits


# ----------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------


def encode_jsonl_gz(records: Iterable[dict]) -> bytes:
  """Gzipped JSON lines with a fixed header (mtime 0, no name): reproducible."""
  buffer = io.BytesIO()
  with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as f:
    for record in records:
      f.write((json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode())
  return buffer.getvalue()


def all_offline_tasks(seed: int = DEFAULT_SEED,
                      include_aclsum: bool = True) -> dict[str, dict[str, list[dict]]]:
  """Task name -> split -> records, for every shipped offline task."""
  tasks = {f"numbers_en_{lang}": number_records(lang, seed) for lang in NUMBER_LANGS}
  tasks["arithmetic"] = arithmetic_records(seed)
  if include_aclsum:
    tasks["aclsum"] = aclsum_records()
  return tasks


def write_offline_tasks(out_dir: str, seed: int = DEFAULT_SEED,
                        tasks: Sequence[str] | None = None) -> list[str]:
  """Writes `<out_dir>/<task>/<split>.jsonl.gz`; returns the written paths.

  Args:
    out_dir: destination folder, normally `skd_jax/data/offline`.
    seed: generation seed; the shipped files use `DEFAULT_SEED`.
    tasks: task names to write (default: all).
  """
  wanted = set(tasks) if tasks is not None else None
  include_aclsum = wanted is None or "aclsum" in wanted
  paths = []
  for name, splits in all_offline_tasks(seed, include_aclsum).items():
    if wanted is not None and name not in wanted:
      continue
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    for split, records in splits.items():
      path = os.path.join(out_dir, name, f"{split}.jsonl.gz")
      with open(path, "wb") as f:
        f.write(encode_jsonl_gz(records))
      paths.append(path)
  return paths
