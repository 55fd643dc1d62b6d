"""ACLSum: abstract -> one-sentence aspect summary, shipped offline (real data).

`aclsum`: built from the `aclsum` package's bundled ACLSum data: "Summarize the
{aspect} of this paper in one sentence. {abstract}" -> the paper's one-sentence
summary of that aspect (challenge, approach or outcome); 300/150/300 records
from 100/50/100 papers. Records carry the provenance field "aspect".
"""

from __future__ import annotations

import re

from skd_jax.data import sources
from skd_jax.data.task import Task, make_task, register_task

ACLSUM_ASPECTS = ("challenge", "approach", "outcome")
ACLSUM_SPLITS = {"train": "train", "validation": "val", "test": "test"}


def detokenize(text: str) -> str:
  """Undoes the space-before-punctuation tokenisation of ACLSum sentences."""
  text = re.sub(r"\s+([.,;:!?%)\]])", r"\1", text)
  text = re.sub(r"([(\[])\s+", r"\1", text)
  return text


def aclsum_records(seed: int) -> dict[str, list[dict]]:
  """Abstract -> aspect summary, one record per (paper, aspect); `seed` unused
  (the data is fixed).

  Raises:
    ImportError: the `aclsum` package (which bundles the data) is missing.
  """
  del seed
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


@register_task("aclsum", generate=aclsum_records)
def aclsum_task(**kw) -> Task:
  """ACLSum abstract -> one-sentence aspect summary; ROUGE-L."""
  return make_task("aclsum", sources.offline_source("aclsum"), "{input}", ("\n",),
                   ("rougeL",), 512, 96, **kw)
