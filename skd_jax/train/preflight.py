"""Preflight: every input of a run checked in one pass, before any weights load.

    problems = preflight.check(config, workdir, mode)   # [] when all is well
    preflight.raise_if_any(problems)                    # one ConfigError listing them all

Checked (each problem comes with its fix):

* the config itself (`validate.validate_config`: methods, K, beta, mesh vs devices, ...);
* student / teacher / tokenizer: a preset, a local checkpoint (config.json and
  weights, or a .gguf file) or a hub id; offline, a hub id is a problem and the
  fix is the `hf download REPO --local-dir DIR` command (huggingface_hub's CLI);
* the task's raw data files (local copy, packaged, or on the hub when online);
* the workdir: a writable directory (or creatable), and whether it holds
  another run (`workdir.mismatch`, skipped with ``--overwrite``);
* prompt + new tokens + gamma vs each model's max positions (config.json or preset).

Only configs and files are read: no tokenizer beyond the tiny testing ones, no weights.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable

import jax

from skd_jax.models import config as model_config
from skd_jax.train import validate
from skd_jax.train import workdir as workdir_lib
from skd_jax.train.validate import ConfigError


@dataclasses.dataclass(frozen=True)
class Problem:
  """One bad input: `key` (config key or "workdir"), what is wrong, how to fix it."""
  key: str
  message: str
  fix: str = ""

  def __str__(self) -> str:
    return f"{self.message} Fix: {self.fix}" if self.fix else self.message


class PreflightError(ConfigError):
  """Every problem preflight found (`problems`); the message lists them all."""

  def __init__(self, problems: list[Problem]):
    self.problems = list(problems)
    if len(problems) == 1:
      text = str(problems[0])
    else:
      text = (f"{len(problems)} problems (found before loading any weights):\n" +
              "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1)))
    super().__init__(text)


def _offline() -> bool:
  return any(os.environ.get(v, "") not in ("", "0") for v in
             ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _download_fix(repo: str, key: str, *, dataset: str = "", filename: str = "",
                  folder: str = "") -> str:
  """The `hf download` command that fetches `repo` (run where the hub is reachable)."""
  if dataset:
    return (f"hf download {repo} {filename} --repo-type dataset --local-dir {folder} "
            "(or place the file there yourself)")
  local = os.path.join("~", "models", repo.rstrip("/").split("/")[-1])
  return f"hf download {repo} --local-dir {local}, then --config.{key}={local}"


def _looks_local(path: str) -> bool:
  return path.startswith(("/", ".", "~")) or path.endswith(".gguf")


def check_model_path(role: str, path: str) -> list[Problem]:
  """A model path: preset, local checkpoint, or a hub id (offline = a problem)."""
  key = f"{role}.path"
  if not path:
    return [Problem(key, f"{key} is empty.", "give a local HF directory, a .gguf file, a "
                    "preset name or a hub id.")]
  if path in model_config.PRESETS:
    return []
  expanded = os.path.expanduser(path)
  if os.path.isfile(expanded):
    if expanded.endswith(".gguf"):
      return []
    return [Problem(key, f"{key}={path!r} is a file but not a .gguf.",
                    "pass a checkpoint directory (config.json + *.safetensors) or a .gguf.")]
  if os.path.isdir(expanded):
    names = os.listdir(expanded)
    if "config.json" not in names:
      return [Problem(key, f"{key}={path!r} has no config.json.",
                      "pass an HF checkpoint directory (config.json + *.safetensors).")]
    if not any(n.endswith(".safetensors") for n in names):
      return [Problem(key, f"{key}={path!r} has no *.safetensors weights.",
                      f"copy the weights into {path}, or convert .bin weights to safetensors.")]
    return []
  if _looks_local(path):
    return [Problem(key, f"{key}={path!r}: no such file or directory (a checkpoint path "
                    "must exist).", f"check the path, or pass a hub id / preset to --config.{key}.")]
  if _offline():
    return [Problem(key, f"{key}={path!r} is neither a local path nor a preset, and the hub "
                    "is offline (HF_HUB_OFFLINE=1).", _download_fix(path, key))]
  return []   # A hub id, downloaded when the run starts.


def check_tokenizer(config) -> list[Problem]:
  spec = str(config.get("tokenizer", "") or "")
  if spec.startswith("testing:"):
    return []
  if not spec:
    if config.student.path in model_config.PRESETS:
      return [Problem("tokenizer", f"student.path={config.student.path!r} is a preset without "
                      "a tokenizer.", "set --config.tokenizer (e.g. testing:gemma or a "
                      "checkpoint directory).")]
    return []   # The student's own: checked with student.path.
  if spec in model_config.PRESETS:
    return [Problem("tokenizer", f"tokenizer={spec!r} is a preset name, not a tokenizer.",
                    "pass a checkpoint directory, a .gguf, a hub id or testing:gemma.")]
  if os.path.exists(os.path.expanduser(spec)):
    return []
  if _looks_local(spec):
    return [Problem("tokenizer", f"tokenizer={spec!r}: no such file or directory.",
                    "check the path, or pass a hub id / testing:gemma.")]
  if _offline():
    return [Problem("tokenizer", f"tokenizer={spec!r} is not a local path and the hub is "
                    "offline (HF_HUB_OFFLINE=1).", _download_fix(spec, "tokenizer"))]
  return []


def check_data(config) -> list[Problem]:
  """The task's raw files: packaged, local, or (online) on the hub."""
  from skd_jax.data import get_task, sources  # pylint: disable=g-import-not-at-top
  raw_dir = config.task.get("raw_dir") or None
  try:
    task = get_task(config.task.name, **({"raw_dir": raw_dir} if raw_dir else {}))
  except (ValueError, KeyError) as e:
    return [Problem("task.name", f"task.name={config.task.name!r}: {e}")]
  problems = []
  for raw in task.source.files.values():
    if raw.packaged or workdir_lib._local_raw(task.source.name, raw, raw_dir):  # pylint: disable=protected-access
      continue
    if raw.hub_repo and not _offline():
      continue
    folder = os.path.join(raw_dir or sources.default_raw_dir(), raw.folder or task.source.name)
    where = ("the hub is offline (HF_HUB_OFFLINE=1)" if raw.hub_repo
             else "no hub location is known")
    fix = (_download_fix(raw.hub_repo, "task.raw_dir", dataset=raw.hub_repo,
                         filename=raw.hub_path or raw.name, folder=folder) if raw.hub_repo
           else f"place {raw.name} in {folder}")
    problems.append(Problem("task.raw_dir", f"data file {raw.name!r} of task "
                            f"{config.task.name!r} is not in {folder}, and {where}.",
                            fix + "; or point --config.task.raw_dir / $SKD_RAW_DATA_DIR at a "
                            "folder holding it (docs/DATA.md)."))
  return problems


def check_workdir(workdir: str) -> list[Problem]:
  """A directory we can write (or create)."""
  if os.path.lexists(workdir) and not os.path.isdir(workdir):
    return [Problem("workdir", f"workdir={workdir!r} is a file, not a directory.",
                    "pass another --workdir (a directory), or move the file.")]
  probe = workdir
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if os.path.exists(probe) and not os.path.isdir(probe):
    return [Problem("workdir", f"workdir={workdir!r}: {probe!r} is a file.",
                    "pass another --workdir.")]
  if not os.access(probe, os.W_OK | os.X_OK):
    return [Problem("workdir", f"workdir={workdir!r}: {probe!r} is not writable.",
                    "pass a --workdir you can write to.")]
  return []


def _position_limit(spec) -> tuple[int | None, str]:
  """(max positions, model name) of a preset or a local config.json, without weights."""
  path = os.path.expanduser(str(spec.path))
  try:
    if spec.path in model_config.PRESETS:
      overrides = dict(spec.overrides.to_dict()) if spec.overrides else {}
      cfg = model_config.get_config(spec.path, **overrides)
      return cfg.max_position_embeddings, cfg.name
    config_json = os.path.join(path, "config.json")
    if os.path.isdir(path) and os.path.exists(config_json):
      with open(config_json, encoding="utf-8") as f:
        cfg = model_config.from_hf_config(json.load(f))
      return cfg.max_position_embeddings, cfg.name
  except (ValueError, KeyError, TypeError, NotImplementedError, OSError):
    pass   # setup reports unreadable configs with their own message.
  return None, ""


def check_lengths(config) -> list[Problem]:
  prompt, new = int(config.task.max_prompt_tokens), int(config.task.max_new_tokens)
  need = prompt + new + int(config.sampler.gamma)
  short = []
  for role in ("student", "teacher"):
    limit, name = _position_limit(config[role])
    if limit is not None and need > limit:
      short.append(f"the {role} ({name}) supports {limit}")
  if not short:
    return []
  return [Problem("task.max_new_tokens", f"task.max_prompt_tokens {prompt} + "
                  f"task.max_new_tokens {new} + gamma needs {need} positions but "
                  f"{' and '.join(short)}.", "shorten --config.task.max_prompt_tokens or "
                  "--config.task.max_new_tokens.")]


def _same_key(problem_key: str, message: str) -> bool:
  head = message.split("=", 1)[0].split(":", 1)[0].split(" ", 1)[0]
  return head == problem_key


def check(config, workdir: str, mode: str = "train", *, overwrite: bool = False,
          skip_roles: Iterable[str] = (), root: str | None = None) -> list[Problem]:
  """Every problem of one run's inputs (see the module doc); [] when none.

  skip_roles: model roles whose path is produced earlier in the same job
  (the comparison's fine-tuned teacher), and "restore_from" for a start
  checkpoint it writes (the comparison's `student_init` run).
  root: the folder --overwrite would delete, when `workdir` is inside it.
  """
  problems: list[Problem] = []
  skip = set(skip_roles)
  for role in ("student", "teacher"):
    if role not in skip:
      problems += check_model_path(role, str(config[role].path))
  problems += check_tokenizer(config)
  problems += check_data(config)
  problems += check_workdir(workdir)
  if not overwrite and not any(p.key == "workdir" for p in problems):
    refusal = workdir_lib.mismatch(config, workdir, mode, root=root)
    if refusal:
      problems.append(Problem("workdir", refusal))
  problems += [p for p in check_lengths(config)
               if not any(q.message == p.message for q in problems)]
  try:   # The config alone; its first error only (the others are independent).
    validate.validate_config(_without(config, skip), len(jax.devices()))
  except ConfigError as e:
    if not any(_same_key(p.key, str(e)) or p.message in str(e) for p in problems):
      problems.append(Problem("config", str(e)))
  return problems


def _without(config, roles: set[str]):
  """`config` with the paths of `roles` set to a preset (checks that skip them)."""
  if not roles:
    return config
  import copy  # pylint: disable=g-import-not-at-top
  c = copy.deepcopy(config)
  for role in roles:
    if role == "restore_from":   # The start checkpoint an earlier run of the job writes.
      c.checkpoint.restore_from = ""
    else:
      c[role].path = next(iter(model_config.PRESETS))
  return c


def unique(problems: Iterable[Problem]) -> list[Problem]:
  seen, out = set(), []
  for p in problems:
    if str(p) not in seen:
      seen.add(str(p))
      out.append(p)
  return out


def raise_if_any(problems: list[Problem]) -> None:
  if problems:
    raise PreflightError(unique(problems))


def check_run(config, workdir: str, mode: str = "train", **kw: Any) -> None:
  """`check` then `raise_if_any` (a PreflightError, a ConfigError)."""
  raise_if_any(check(config, workdir, mode, **kw))
