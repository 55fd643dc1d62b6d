"""Writes the small offline tasks shipped in `data/offline/` (reproducible bytes).

Each shipped task is one file of `skd_jax/data/tasks/` that registers its
generator (`@register_task(name, generate=...)`): `numbers_en_fr` /
`numbers_en_de` (number words, `tasks/numbers.py`), `arithmetic` (word problems,
`tasks/arithmetic.py`) and `aclsum` (real ACLSum summaries, `tasks/aclsum.py`).
Every record has the fields of `skd_jax.data.sources.Record` ({"id", "input",
"target", "answer"}) plus task-specific provenance fields.

Files are gzip-compressed JSON lines written with a zero mtime and no file name
in the header, so the same seed gives the same bytes
(`python scripts/make_offline_tasks.py` regenerates them).
"""

from __future__ import annotations

import gzip
import io
import json
import os
from typing import Iterable, Sequence

from skd_jax.data import tasks as tasks_lib

DEFAULT_SEED = 1234  # The shipped files' seed.


def encode_jsonl_gz(records: Iterable[dict]) -> bytes:
  """Gzipped JSON lines with a fixed header (mtime 0, no name): reproducible."""
  buffer = io.BytesIO()
  with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as f:
    for record in records:
      f.write((json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode())
  return buffer.getvalue()


def write_offline_tasks(out_dir: str, seed: int = DEFAULT_SEED,
                        tasks: Sequence[str] | None = None) -> list[str]:
  """Writes `<out_dir>/<task>/<split>.jsonl.gz`; returns the written paths.

  Args:
    out_dir: destination folder, normally `skd_jax/data/offline`.
    seed: generation seed; the shipped files use `DEFAULT_SEED`.
    tasks: task names to write (default: every registered offline task).
  """
  generators = tasks_lib.offline_generators()
  unknown = sorted(set(tasks or ()) - set(generators))
  if unknown:
    raise ValueError(f"No offline generator for tasks {unknown}; known: {sorted(generators)}.")
  paths = []
  for name, generate in generators.items():
    if tasks is not None and name not in tasks:
      continue
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    for split, records in generate(seed).items():
      path = os.path.join(out_dir, name, f"{split}.jsonl.gz")
      with open(path, "wb") as f:
        f.write(encode_jsonl_gz(records))
      paths.append(path)
  return paths
