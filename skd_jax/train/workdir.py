"""Workdirs that never lie: a run's fingerprint, checked before it resumes.

A workdir holds checkpoints, metrics and results of ONE run. `fingerprint(config)`
is everything that changes those results:

* ``config``: the experiment config, flattened to dotted keys, minus the purely
  cosmetic keys of `COSMETIC_KEYS` (names, logging, how often checkpoints are
  written or how many are kept: a resumed run ends bit-identical whatever they are);
* ``code``: the package version and a hash of the skd_jax sources (minus the
  modules of `_NOT_RESULTS`, which only draw, print or check);
* ``data``: the task's raw files (name, size, content hash) and the files of the
  student / teacher / tokenizer checkpoints named by path (name, size, a hash
  of config.json and of each weight file's first and last MiB).

`check(config, workdir, mode)` compares it with `WORKDIR/fingerprint.json`:

* train: every key must match, else `WorkdirMismatch` (one line naming the
  differing keys and the two ways on: a new ``--workdir``, or ``--overwrite``);
* eval / sample: only what decides the checkpoints' model (`MODEL_KEYS`), so a
  trained workdir can be scored with other eval settings;
* a workdir made before fingerprints (config.json only) is compared by config.

`record(...)` writes config.json and fingerprint.json once the check has passed
(eval / sample never rewrite them), so config.json always describes the
checkpoints beside it. `clear(workdir)` is ``--overwrite``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from typing import Any, Mapping

from skd_jax.train.validate import ConfigError

FINGERPRINT = "fingerprint.json"
CONFIG = "config.json"
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
# In eval / sample mode only these must match: they decide what the checkpoints are.
MODEL_KEYS = ("student.path", "student.overrides.", "student.keep_layers", "tokenizer")
# Modules that only draw, print, compile for other hardware or check inputs
# (experiments/ is skipped too: the configs it builds are fingerprinted).
_NOT_RESULTS = ("plot.py", "train/logger.py", "train/workdir.py",
                "train/preflight.py", "train/interrupt.py", "main.py")
_NOT_RESULTS_DIRS = ("experiments/", "compile/", "plan/")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MIB = 1 << 20


class WorkdirMismatch(ConfigError):
  """The workdir holds a run with another fingerprint (message: one line)."""


def default_workdir(config) -> str:
  """`config.workdir`, else /tmp/skd_jax/<config.name> (absolute)."""
  return os.path.abspath(config.get("workdir", "") or os.path.join("/tmp/skd_jax", config.name))


# ----------------------------------------------------------------------------
# Fingerprints.
# ----------------------------------------------------------------------------


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


def _short(value: Any) -> str:
  text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
  return text if len(text) <= 40 else text[:37] + "..."


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
  """[(key, old value, new value)] of two fingerprints (or their "config" parts)."""
  def flat(fp):
    if "config" in fp and isinstance(fp["config"], Mapping):
      items = {f"config:{k}": v for k, v in fp["config"].items()}
      items.update({f"code:{k}": v for k, v in fp.get("code", {}).items()})
      items.update({f"data:{k}": v for k, v in fp.get("data", {}).items()})
      return items
    return {f"config:{k}": v for k, v in fp.items()}
  a, b = flat(old), flat(new)
  keys = sorted(set(a) | set(b))
  missing = "(unset)"
  return [(k, a.get(k, missing), b.get(k, missing)) for k in keys
          if a.get(k, missing) != b.get(k, missing)]


def _describe(diffs: list[tuple[str, Any, Any]], limit: int = 6, model: bool = False) -> str:
  parts = []
  for key, old, new in diffs[:limit]:
    kind, name = key.split(":", 1)
    if model and name.startswith("student.overrides."):
      name = name[len("student.overrides."):]   # "num_layers 1 vs 2".
    if kind == "code":
      parts.append(f"code {name} {old} vs {new}")
    elif kind == "data":
      parts.append(f"data {name} changed")
    else:
      parts.append(f"{name} {_short(old)} vs {_short(new)}")
  if len(diffs) > limit:
    parts.append(f"and {len(diffs) - limit} more")
  return ", ".join(parts)


def _model_diffs(diffs) -> list[tuple[str, Any, Any]]:
  return [(k, a, b) for k, a, b in diffs if k.startswith("config:") and any(
      k[7:] == m or (m.endswith(".") and k[7:].startswith(m)) for m in MODEL_KEYS)]


ALLOW_CODE_CHANGE = "SKD_ALLOW_CODE_CHANGE"


def code_change_allowed() -> bool:
  """`SKD_ALLOW_CODE_CHANGE=1`: a run may continue under other skd_jax sources
  (fingerprint.json then records the code it continued with, and the earlier)."""
  return os.environ.get(ALLOW_CODE_CHANGE, "") not in ("", "0")


def ways_on(workdir: str) -> str:
  return (f"use a new --workdir, or --overwrite to delete {workdir} and start over")


def read_json(path: str) -> dict | None:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def has_checkpoints(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(d.isdigit() for d in os.listdir(directory))


def stored(workdir: str) -> dict | None:
  """The workdir's fingerprint: fingerprint.json, else (older runs) config.json's keys."""
  fp = read_json(os.path.join(workdir, FINGERPRINT))
  if fp is not None:
    return fp
  config = read_json(os.path.join(workdir, CONFIG))
  if config is None:
    return None
  return {"config": {k: v for k, v in flatten(config).items() if not _cosmetic(k)}}


def mismatch(config, workdir: str, mode: str = "train",
             fp: Mapping[str, Any] | None = None, root: str | None = None) -> str | None:
  """None when `config` may run in `workdir` with `mode`, else the one-line refusal.

  root: the folder --overwrite deletes when it is not `workdir` itself (a
  comparison's run folders live in it).
  """
  old = stored(workdir)
  if old is None:
    return None
  new = dict(fp or fingerprint(config))
  if "code" not in old:   # An old config.json only: compare what it can tell.
    new = {"config": new["config"]}
  diffs = differences(old, new)
  if code_change_allowed():
    diffs = [d for d in diffs if not d[0].startswith("code:")]
  model = _model_diffs(diffs)
  if mode != "train":
    if not model or not has_checkpoints(workdir):
      return None
    diffs = model
  if not diffs:
    return None
  if model:
    return (f"this workdir ({workdir}) holds a different model ({_describe(model, model=True)}); "
            f"{ways_on(root or workdir)}.")
  if all(k.startswith("code:") for k, _, _ in diffs):
    return (f"this workdir ({workdir}) holds a run made with other code ({_describe(diffs)}); "
            f"{ways_on(root or workdir)}, or {ALLOW_CODE_CHANGE}=1 to continue it with this "
            "code.")
  return (f"this workdir ({workdir}) holds a run with a different "
          f"{'setup' if any(not k.startswith('config:') for k, _, _ in diffs) else 'config'} "
          f"({_describe(diffs)}); {ways_on(root or workdir)}.")


def check(config, workdir: str, mode: str = "train") -> dict[str, Any]:
  """The run's fingerprint if `workdir` may hold it; raises WorkdirMismatch otherwise."""
  fp = fingerprint(config)
  problem = mismatch(config, workdir, mode, fp)
  if problem:
    raise WorkdirMismatch(problem)
  return fp


def record(workdir: str, config, fp: Mapping[str, Any], mode: str = "train") -> None:
  """Writes config.json and fingerprint.json (process 0 only; after `check`).

  Train writes both; eval / sample write them only into a workdir that has
  none (they never redescribe another run's checkpoints).
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  if mode != "train" and stored(workdir) is not None:
    return
  info = {"git_commit": git_commit(), "digest": digest(fp)}
  old = read_json(os.path.join(workdir, FINGERPRINT)) or {}
  earlier = list(old.get("info", {}).get("earlier_code", []))
  if old.get("code") and old["code"] != fp.get("code"):   # SKD_ALLOW_CODE_CHANGE=1.
    earlier.append(old["code"])
  if earlier:
    info["earlier_code"] = earlier
  body = dict(fp, info=info)
  for name, text in ((FINGERPRINT, json.dumps(body, indent=2, sort_keys=True)),
                     (CONFIG, config.to_json_best_effort(indent=2))):
    tmp = os.path.join(workdir, f".{name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, os.path.join(workdir, name))   # Atomic: never half a file.


# What marks a folder as a skd_jax workdir (--overwrite refuses anything else).
_MARKERS = (FINGERPRINT, CONFIG, "metrics.jsonl", "checkpoints", "result.json",
            "comparison.json")


def clear(workdir: str) -> bool:
  """`--overwrite`: deletes `workdir` if it is a skd_jax workdir (True if deleted).

  Raises:
    ConfigError: `workdir` is a file, or a non-empty folder without any of a
      workdir's files (nothing else is ever deleted).
  """
  if not os.path.lexists(workdir):
    return False
  if not os.path.isdir(workdir) or os.path.islink(workdir):
    raise ConfigError(f"--overwrite: workdir={workdir!r} is not a directory; "
                      "pass a directory.")
  entries = os.listdir(workdir)
  if entries and not set(entries) & set(_MARKERS):
    raise ConfigError(f"--overwrite: {workdir!r} does not look like a skd_jax workdir (no "
                      f"{', '.join(_MARKERS[:3])}, ...); refusing to delete it. "
                      "Pass another --workdir.")
  shutil.rmtree(workdir)
  return True
