"""Templated 2-3 step arithmetic word problems in GSM8K's format, shipped offline.

`arithmetic`: small numbers, a chain-of-thought answer ending in GSM8K's
"#### N" line, 2000/200/200 records; each record names its "template" so a
test can recompute the answer from the question's numbers independently.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from skd_jax.data import sources
from skd_jax.data.task import Task, make_task, register_task

ARITHMETIC_SPLIT_SIZES = {"train": 2000, "validation": 200, "test": 200}

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


def arithmetic_records(seed: int) -> dict[str, list[dict]]:
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


@register_task("arithmetic", generate=arithmetic_records)
def arithmetic_task(**kw) -> Task:
  """Templated 2-3 step word problems, GSM8K format and metric."""
  return make_task("arithmetic", sources.offline_source("arithmetic"), "Q: {input} \n\nA:",
                   ("\n\n",), ("gsm8k_accuracy",), 128, 128, **kw)
