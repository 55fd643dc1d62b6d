"""Workdirs that never lie: a run's fingerprint, checked before it resumes.

A workdir holds checkpoints, metrics and results of ONE run.
`fingerprint(config)` (`skd_jax.train.fingerprints`) is everything that changes
those results: the config minus cosmetic and unread keys, the code, the data.

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

import json
import os
import shutil
from typing import Any, Mapping

# The fingerprint itself (re-exported: callers use workdir.fingerprint / digest).
from skd_jax.train.fingerprints import (  # pylint: disable=unused-import
    COSMETIC_KEYS, _cosmetic, _local_raw, code_version, config_keys, data_fingerprint,
    digest, file_fingerprint, fingerprint, flatten, git_commit, path_fingerprint)
from skd_jax.train.validate import ConfigError

FINGERPRINT = "fingerprint.json"
CONFIG = "config.json"
# In eval / sample mode only these must match: they decide what the checkpoints are.
MODEL_KEYS = ("student.path", "student.overrides.", "student.keep_layers", "tokenizer")


class WorkdirMismatch(ConfigError):
  """The workdir holds a run with another fingerprint (message: one line)."""


def default_workdir(config) -> str:
  """`config.workdir`, else /tmp/skd_jax/<config.name> (absolute)."""
  return os.path.abspath(config.get("workdir", "") or os.path.join("/tmp/skd_jax", config.name))


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
