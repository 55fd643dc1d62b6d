"""English number words -> French / German words (0-999), shipped offline.

`numbers_en_fr`, `numbers_en_de`: translate an English number in words into
French / German words, with `num2words` as the oracle. The 1000 numbers are
split 800/100/100 by a seeded permutation, so test numbers are never seen in
training (the task measures compositional generalisation, not memorisation).
Records carry the provenance fields "number" and "lang".
"""

from __future__ import annotations

import functools

import numpy as np

from skd_jax.data import sources
from skd_jax.data.task import Task, make_task, register_task

NUMBER_LANGS = {"fr": "French", "de": "German"}
NUMBER_SPLIT_SIZES = {"train": 800, "validation": 100, "test": 100}


def number_records(lang: str, seed: int) -> dict[str, list[dict]]:
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


def _numbers_task(lang: str, **kw) -> Task:
  return make_task(f"numbers_en_{lang}", sources.offline_source(f"numbers_en_{lang}"),
                   f"Translate English to {NUMBER_LANGS[lang]}: {{input}}", ("\n",),
                   ("exact_match", "chrf", "bleu"), 64, 32, **kw)


@register_task("numbers_en_fr", generate=functools.partial(number_records, "fr"))
def numbers_en_fr_task(**kw) -> Task:
  """English number words (0-999) -> French words; exact match, chrF, BLEU."""
  return _numbers_task("fr", **kw)


@register_task("numbers_en_de", generate=functools.partial(number_records, "de"))
def numbers_en_de_task(**kw) -> Task:
  """English number words (0-999) -> German words; exact match, chrF, BLEU."""
  return _numbers_task("de", **kw)
