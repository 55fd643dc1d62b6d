"""Run fingerprints: everything that changes a run's checkpoints, metrics and scores.

    fp = fingerprint(config)   # {"config": {key: value}, "code": {...}, "data": {...}}
    digest(fp)                 # 16 hex: what result.json and the comparison compare

* ``config``: the experiment config flattened to dotted keys, minus the purely
  cosmetic keys of `COSMETIC_KEYS` and the keys the run's method never reads
  (`_unread`: other methods' sampling / mix knobs, ...);
* ``code``: the package version and a hash of the skd_jax sources (minus the
  modules of `_NOT_RESULTS`, which only draw, print or check);
* ``data``: the task's raw files (name, size, content hash) and the files of the
  student / teacher / tokenizer checkpoints named by path (name, size, a hash
  of config.json and of each weight file, or of its first and last MiB when larger
  than 64 MiB).

`skd_jax.train.workdir` compares them with a workdir's fingerprint.json.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from typing import Any, Mapping


# Keys that cannot change a run's checkpoints, metrics or scores.
COSMETIC_KEYS = (
    "name",                    # Display name (and the default workdir's suffix).
    "workdir",                 # Where, not what.
    "log_every_steps",         # metrics.jsonl / TensorBoard window, not the updates.
    "num_sample_prompts",      # --mode=sample only prints.
    "eval.num_samples",        # Copies of predictions into samples/step_N.jsonl.
    "export",                  # Whether the final student is also written as HF.
    "checkpoint.every_steps",  # Resume is exact from any checkpoint.
    "checkpoint.max_to_keep",  # Which old checkpoints are deleted.
    "compare.table_metrics",   # Columns of the comparison table.
)
# Modules that only draw, print, compile for other hardware or check inputs
# (experiments/ is skipped too: the configs it builds are fingerprinted).
_NOT_RESULTS = ("plot.py", "train/logger.py", "train/workdir.py", "train/fingerprints.py",
                "train/preflight.py", "train/interrupt.py", "main.py")
_NOT_RESULTS_DIRS = ("experiments/", "compile/", "plan/")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MIB = 1 << 20


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"a": {"b": 1}} -> {"a.b": 1}; values made JSON-plain (tuples -> lists)."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      inner = flatten(value, name + ".")
      flat.update(inner if inner else {name: {}})
    else:
      flat[name] = json.loads(json.dumps(value, default=str))
  return flat


def _cosmetic(key: str) -> bool:
  return key in COSMETIC_KEYS


# Sampler knobs of the SKD / teacher sampler, read only by methods with such rows.
_SKD_KNOBS = ("top_k", "temperature", "top_p", "sampling_top_k", "acceptance")
# Sampler knobs every run reads (evaluation's greedy decoding included).
_ALWAYS_KNOBS = ("prompt_buckets", "shared_vocab_size", "cache_length")


def _unread(key: str, method) -> bool:
  """Whether `method` (a `methods.Method`) never reads the sampler / mix `key`:
  another method's student-sampling or mix knobs, the SKD sampler's knobs
  without SKD or teacher rows, any sampling knob without sampled rows."""
  from skd_jax.train import methods  # pylint: disable=g-import-not-at-top
  section, _, name = key.partition(".")
  if section == "mix":
    return name not in {knob.name for knob in method.mix}
  if section != "sampler" or name in _ALWAYS_KNOBS:
    return False
  sampled = set(method.sources) - {methods.GROUND_TRUTH}
  if not sampled:
    return True
  prefixes = {m.student_sampling for m in methods.METHODS.values() if m.student_sampling}
  prefix = next((p for p in prefixes if name.startswith(p + "_")), None)
  if prefix is not None and name[len(prefix) + 1:] in ("temperature", "top_p",
                                                        "sampling_top_k"):
    return prefix != method.student_sampling or methods.STUDENT not in sampled
  if name in _SKD_KNOBS:
    return not sampled & {methods.SKD, methods.TEACHER}
  return False


def config_keys(config) -> dict[str, Any]:
  """The config's result-changing keys, flattened: not cosmetic, and read by its method."""
  from skd_jax.train import methods  # pylint: disable=g-import-not-at-top
  tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  method = methods.METHODS.get(str(tree.get("method", "")))
  return {k: v for k, v in sorted(flatten(tree).items()) if not _cosmetic(k)
          and (method is None or not _unread(k, method))}


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, str]:
  """{"package": version, "sources": sha256 of the skd_jax .py files (12 hex)}."""
  digest = hashlib.sha256()
  for root, dirs, files in os.walk(_PACKAGE):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for name in sorted(files):
      rel = os.path.relpath(os.path.join(root, name), _PACKAGE).replace(os.sep, "/")
      if not name.endswith(".py") or rel in _NOT_RESULTS or rel.startswith(_NOT_RESULTS_DIRS):
        continue
      digest.update(rel.encode() + b"\0")
      with open(os.path.join(root, name), "rb") as f:
        digest.update(f.read() + b"\0")
  try:
    from importlib import metadata  # pylint: disable=g-import-not-at-top
    version = metadata.version("skd_jax")
  except Exception:  # pylint: disable=broad-except  # Not installed (a bare checkout).
    version = "unknown"
  return {"package": version, "sources": digest.hexdigest()[:12]}


def git_commit() -> str:
  """The checkout's commit (informational; not compared), or ""."""
  try:
    out = subprocess.run(["git", "-C", _PACKAGE, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, timeout=5, check=False)
    return out.stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return ""


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int, whole: bool) -> str:
  """sha256 (12 hex) of a file, or of its first and last MiB (+ size) when large."""
  del mtime_ns  # Cache key only: a rewritten file is read again.
  digest = hashlib.sha256(str(size).encode())
  with open(path, "rb") as f:
    if whole or size <= 64 * _MIB:
      for chunk in iter(lambda: f.read(_MIB), b""):
        digest.update(chunk)
    else:
      digest.update(f.read(_MIB))
      f.seek(size - _MIB)
      digest.update(f.read(_MIB))
  return digest.hexdigest()[:12]


def file_fingerprint(path: str, whole: bool = False) -> str:
  st = os.stat(path)
  return _file_digest(os.path.abspath(path), st.st_size, st.st_mtime_ns, whole)


_CHECKPOINT_FILES = (".json", ".safetensors", ".gguf", ".model", ".txt", ".jinja", ".bin")


def path_fingerprint(path: str) -> dict[str, str] | str:
  """A checkpoint file or directory: {file name: digest}; a non-local spec as is."""
  expanded = os.path.expanduser(str(path))
  if os.path.isfile(expanded):
    return {os.path.basename(expanded): file_fingerprint(expanded)}
  if os.path.isdir(expanded):
    return {name: file_fingerprint(os.path.join(expanded, name), name.endswith(".json"))
            for name in sorted(os.listdir(expanded))
            if name.endswith(_CHECKPOINT_FILES) and os.path.isfile(os.path.join(expanded, name))}
  return str(path)   # A preset (its overrides are config keys) or a hub id.


def data_fingerprint(config) -> dict[str, Any]:
  """The task's raw files and the model / tokenizer files named by path.

  Missing data files are recorded as "missing" (preflight reports them).
  """
  from skd_jax.data import get_task, sources  # pylint: disable=g-import-not-at-top
  out: dict[str, Any] = {}
  task_kw = {"raw_dir": config.task.raw_dir} if config.task.get("raw_dir") else {}
  try:
    task = get_task(config.task.name, **task_kw)
    raw_dir = task_kw.get("raw_dir")
    for key, raw in sorted(task.source.files.items()):
      try:
        local = sources.resolve_raw_file(task.source.name, raw, raw_dir) \
            if (raw.packaged or _local_raw(task.source.name, raw, raw_dir)) else None
      except FileNotFoundError:
        local = None
      out[f"task.{key}"] = (f"{raw.name} {file_fingerprint(local)}" if local
                            else f"{raw.name} missing")
  except (ValueError, KeyError) as e:   # An unknown task: preflight / setup report it.
    out["task"] = f"unavailable ({e})"
  for role in ("student", "teacher"):
    out[f"{role}.path"] = path_fingerprint(config[role].path)
  if config.get("tokenizer") and not str(config.tokenizer).startswith("testing:"):
    out["tokenizer"] = path_fingerprint(config.tokenizer)
  return flatten(out)


def _local_raw(source_name: str, raw, raw_dir: str | None) -> bool:
  """Whether `raw` resolves locally (never downloads)."""
  from skd_jax.data import sources  # pylint: disable=g-import-not-at-top
  folder = os.path.join(raw_dir or sources.default_raw_dir(), raw.folder or source_name)
  return any(c and os.path.exists(os.path.join(folder, c)) for c in (raw.name, raw.hub_path))


def fingerprint(config) -> dict[str, Any]:
  """{"config": {key: value}, "code": {...}, "data": {...}} (see the module doc)."""
  return {"config": config_keys(config), "code": code_version(),
          "data": data_fingerprint(config)}


def digest(fp: Mapping[str, Any]) -> str:
  """A short hash of a fingerprint (what result.json and compare.py compare)."""
  body = {k: fp[k] for k in ("config", "code", "data") if k in fp}
  return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------
# Checking a workdir.
# ----------------------------------------------------------------------------
