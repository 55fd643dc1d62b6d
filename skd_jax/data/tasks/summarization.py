"""DialogSum dialogue summarisation: its source and the "summarization" task."""

from __future__ import annotations

from skd_jax.data import sources
from skd_jax.data.task import Task, make_task, register_task


def dialogsum_source() -> sources.Source:
  """DialogSum: dialogue -> summary (train 12460 / validation 500 / test 1500).

  Local files: `dialogsum/{train,validation,test}.csv` (columns id, dialogue,
  summary) or `.jsonl` with fields dialogue and summary/summary1.
  """
  files = {s: sources.RawFile(f"{s}.csv", "knkarthick/dialogsum", f"{s}.csv")
           for s in sources.SPLITS}

  def make_splits(read):
    out = {}
    for split in sources.SPLITS:
      out[split] = [{
          "id": str(sources.first_field(row, "id", "fname",
                                        default=f"dialogsum-{split}-{i}")),
          "input": row["dialogue"],
          "target": sources.first_field(row, "summary", "summary1"),
          "answer": sources.first_field(row, "summary", "summary1"),
      } for i, row in enumerate(read(split))]
    return out

  return sources.Source("dialogsum", files, make_splits, "DialogSum dialogue summarisation")


@register_task("summarization")
def summarization_task(**kw) -> Task:
  """DialogSum; the prompt is the dialogue alone; ROUGE-L."""
  return make_task("summarization", dialogsum_source(), "{input}", ("\n",), ("rougeL",),
                   1024, 128, **kw)
