"""Raw data sources: where each dataset's files live and how rows become Records.

A `Record` is a plain dict with string fields:

    id      unique within the task
    input   the text substituted into the task's prompt template
    target  the reference completion (what supervised training imitates)
    answer  the short final answer metrics compare against ("" if unused)

A `Source` names its raw files and a `make_splits(read)` function that turns
them into {"train", "validation", "test"} lists of Records (carving a seeded
validation split when the dataset has none); `generated_source` wraps a
function that makes the Records itself (no files). Each task's own source is
in its file of `skd_jax/data/tasks/`; this module is the shared machinery.

Raw files are resolved in order:

1. `<raw_dir>/<source name>/<file name>` on local disk, where `raw_dir` is the
   `raw_dir=` argument, else `$SKD_RAW_DATA_DIR`, else `~/.cache/skd_jax/raw`;
2. the Hugging Face hub with `huggingface_hub.hf_hub_download`, unless
   `HF_HUB_OFFLINE=1`; offline, a `FileNotFoundError` names the file to place
   and where.

Hub repositories/paths are the best-known public locations; each can also be
given locally under the documented name (see docs/DATA.md).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import json
import os
from typing import Callable, Mapping, Sequence

import numpy as np

SPLITS = ("train", "validation", "test")
OFFLINE_DIR = os.path.join(os.path.dirname(__file__), "offline")

Record = dict  # {"id", "input", "target", "answer"} -> str (plus extras).


@dataclasses.dataclass(frozen=True)
class RawFile:
  """One raw file: its local name and (optionally) where it lives on the hub.

  Attributes:
    name: file name under `<raw_dir>/<source>/`; its extension picks the reader
      (.jsonl, .jsonl.gz, .json, .csv, .parquet, anything else = text lines).
    hub_repo: HF dataset repo id, or None when the file only exists locally.
    hub_path: path of the file inside `hub_repo`.
    packaged: absolute path of a file shipped inside this package (offline tasks).
    folder: folder under `raw_dir` when it is not the source's own name (a
      source borrowing another source's file).
  """
  name: str
  hub_repo: str | None = None
  hub_path: str | None = None
  packaged: str | None = None
  folder: str | None = None


@dataclasses.dataclass(frozen=True)
class Source:
  """A dataset: named raw files plus the function that splits them into Records."""
  name: str
  files: Mapping[str, RawFile]
  make_splits: Callable[[Callable[[str], list[dict]]], dict[str, list[Record]]]
  description: str = ""


# ----------------------------------------------------------------------------
# File resolution and reading.
# ----------------------------------------------------------------------------


def default_raw_dir() -> str:
  return os.environ.get("SKD_RAW_DATA_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "skd_jax", "raw"))


def _hub_offline() -> bool:
  from skd_jax import hub  # pylint: disable=import-outside-toplevel
  return hub.offline()


def resolve_raw_file(source: str, raw: RawFile, raw_dir: str | None = None) -> str:
  """Local path of `raw`: packaged, local copy, or a hub download (online only).

  Raises:
    FileNotFoundError: offline (or no hub location) and no local copy; the
      message names the exact path to create and where the file comes from.
  """
  if raw.packaged is not None:
    return raw.packaged
  source = raw.folder or source
  folder = os.path.join(raw_dir or default_raw_dir(), source)
  local = os.path.join(folder, raw.name)
  # The hub layout is accepted too: `hf download <repo>
  # --repo-type dataset --local-dir <folder>` puts files at <folder>/<hub_path>.
  for candidate in (raw.name, raw.hub_path):
    if candidate and os.path.exists(os.path.join(folder, candidate)):
      return os.path.join(folder, candidate)
  if raw.hub_repo is None or _hub_offline():
    reason = "HF_HUB_OFFLINE=1" if raw.hub_repo else "no hub location is known"
    hub_hint = (f" (or the hub dataset {raw.hub_repo!r}'s file {raw.hub_path!r} "
                f"at that relative path)" if raw.hub_repo else "")
    raise FileNotFoundError(
        f"Data file for source {source!r} not found ({reason}). Place "
        f"{raw.name!r} in {folder!r}{hub_hint}. Or point raw_dir= / "
        f"$SKD_RAW_DATA_DIR at a folder containing {source}/. See docs/DATA.md.")
  from huggingface_hub import hf_hub_download  # pylint: disable=g-import-not-at-top
  try:
    return hf_hub_download(repo_id=raw.hub_repo, filename=raw.hub_path,
                           repo_type="dataset")
  except Exception as e:  # pylint: disable=broad-except  # Network, auth, 404.
    raise FileNotFoundError(
        f"Could not download {raw.hub_path!r} from {raw.hub_repo!r} ({e}). Place "
        f"the file at {local!r} instead (or point raw_dir= / $SKD_RAW_DATA_DIR "
        f"at a folder containing {source}/{raw.name}).") from e


def read_rows(path: str) -> list[dict]:
  """Rows of a JSONL(.gz) / JSON / CSV / Parquet file; text files give {"text"}."""
  lower = path.lower()
  if lower.endswith((".jsonl", ".jsonl.gz")):
    opener = gzip.open if lower.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
      return [json.loads(line) for line in f if line.strip()]
  if lower.endswith(".json"):
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}-style.
      lists = [v for v in data.values() if isinstance(v, list)]
      if len(lists) != 1:
        raise ValueError(f"{path}: expected a JSON list of rows or a dict holding "
                         f"exactly one list; got keys {sorted(data)}.")
      data = lists[0]
    return list(data)
  if lower.endswith(".csv"):
    with open(path, newline="", encoding="utf-8") as f:
      return list(csv.DictReader(f))
  if lower.endswith(".parquet"):
    try:
      import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(f"Reading {path} needs pyarrow (`pip install pyarrow`), or "
                        "convert it to JSONL and place it under the same name "
                        "with a .jsonl extension.") from e
    return pq.read_table(path).to_pylist()
  with open(path, encoding="utf-8") as f:
    return [{"text": line.rstrip("\n")} for line in f]


def make_reader(source: Source, raw_dir: str | None = None) -> Callable[[str], list[dict]]:
  """`read(key)` for `source.make_splits`: resolves and reads `source.files[key]`."""
  def read(key: str) -> list[dict]:
    if key not in source.files:
      raise KeyError(f"Source {source.name!r} has no file {key!r}; "
                     f"known: {sorted(source.files)}.")
    return read_rows(resolve_raw_file(source.name, source.files[key], raw_dir))
  return read


def fingerprint_source(source: Source, raw_dir: str | None = None) -> str:
  """Short hash of the resolved files' bytes; changes when the data changes."""
  paths, missing = {}, []
  for key in sorted(source.files):
    try:
      paths[key] = resolve_raw_file(source.name, source.files[key], raw_dir)
    except FileNotFoundError as e:
      missing.append(str(e))
  if missing:  # Name every missing file at once, not one per attempt.
    raise FileNotFoundError(f"{len(missing)} data file(s) missing:\n" + "\n".join(missing))
  digest = hashlib.sha256(source.name.encode())
  if not source.files:  # A generated source: its records are its data.
    splits = source.make_splits(make_reader(source, raw_dir))
    digest.update(json.dumps(splits, sort_keys=True, ensure_ascii=False).encode())
  for key, path in paths.items():
    digest.update(key.encode())
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
  return digest.hexdigest()[:12]


# ----------------------------------------------------------------------------
# Split helpers.
# ----------------------------------------------------------------------------


def carve_validation(records: Sequence[Record], size: int,
                     seed: int) -> tuple[list[Record], list[Record]]:
  """Seeded split of `records` into (rest, validation of `size`), order kept."""
  if size >= len(records):
    raise ValueError(f"Cannot carve a validation split of {size} from "
                     f"{len(records)} records; lower validation_size.")
  chosen = set(np.random.default_rng(seed).permutation(len(records))[:size].tolist())
  rest = [r for i, r in enumerate(records) if i not in chosen]
  validation = [r for i, r in enumerate(records) if i in chosen]
  return rest, validation


def first_field(row: dict, *keys: str, default=None):
  """`row[key]` of the first of `keys` present and not None (else `default`, else KeyError)."""
  for key in keys:
    if key in row and row[key] is not None:
      return row[key]
  if default is not None:
    return default
  raise KeyError(f"None of the fields {keys} in row with fields {sorted(row)}.")


def gsm8k_final_answer(solution: str) -> str:
  """The text after the last '####' of a GSM8K solution, stripped."""
  return solution.rsplit("####", 1)[-1].strip() if "####" in solution else ""


# ----------------------------------------------------------------------------
# Offline (packaged) sources.
# ----------------------------------------------------------------------------


def offline_source(task: str) -> Source:
  """A task shipped in `data/offline/<task>/<split>.jsonl.gz`."""
  folder = os.path.join(OFFLINE_DIR, task)
  if not os.path.isdir(folder):
    known = sorted(os.listdir(OFFLINE_DIR)) if os.path.isdir(OFFLINE_DIR) else []
    raise ValueError(f"No offline task {task!r} in {OFFLINE_DIR}; known: {known}. "
                     "Regenerate with scripts/make_offline_tasks.py.")
  files = {s: RawFile(f"{s}.jsonl.gz", packaged=os.path.join(folder, f"{s}.jsonl.gz"))
           for s in SPLITS}

  def make_splits(read):
    return {s: [_as_record(r) for r in read(s)] for s in SPLITS}

  return Source(f"offline_{task}", files, make_splits, "shipped offline task")


def _as_record(row: dict) -> Record:
  return {"id": str(row["id"]), "input": row["input"], "target": row["target"],
          "answer": str(row.get("answer", ""))}


def generated_source(name: str, generate: Callable[[], dict[str, list[Record]]],
                     description: str = "") -> Source:
  """A source with no files: `generate()` returns {split: [Record]} (deterministic).

  Its tfds cache is keyed by a hash of the generated records, so changing the
  generator re-prepares it (see `fingerprint_source`).
  """
  def make_splits(read):
    del read  # Nothing to read.
    splits = generate()
    unknown = set(splits) - set(SPLITS)
    if unknown:
      raise ValueError(f"Source {name!r} generated splits {sorted(unknown)}; use {SPLITS}.")
    return {split: [dict(r) for r in splits.get(split, [])] for split in SPLITS}

  return Source(name, {}, make_splits, description or f"generated {name}")
