"""Run logging: a tqdm bar, TensorBoard events (tensorboardX) and metrics.jsonl.

`WORKDIR/metrics.jsonl` holds one JSON object per logged train step
(``{"kind": "train", "step": ..., "loss": ...}``) or evaluation
(``{"kind": "eval", "split": ..., "step": ..., <metric>: ...}``);
`skd_jax.plot` draws its curves. Only process 0 writes.

Reading a run: one `header` line per run (config name, method, mode, devices,
workdir); bars named by phase and method ("skd train", "skd eval") with ETA;
while a bar is shown, Python warnings and `logging` records are written above
it (tqdm's logging redirect) instead of through it; scores are printed as one
labelled line (`format_scores`). On resume, `drop_rows_after` removes the rows
a stopped run logged past its restored checkpoint, so no step appears twice.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import warnings
from typing import Any, Callable, Mapping, Sequence

import tqdm


def _finite(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_label(config) -> str:
  """What a run is called in bars and lines: the comparison's sub-run name
  ("teacher", "skd", ...; `config.name` "demo/teacher"), else the method."""
  name = str(config.get("name", "") or "")
  return name.rsplit("/", 1)[1] if "/" in name else str(config.method)


def header(config, workdir: str, mode: str, devices: Sequence[Any] | None = None) -> str:
  """"skd_jax demo/skd: method skd, train, 1 process, 1 of 8 cpu devices, workdir DIR"."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = list(devices if devices is not None else jax.devices())
  used = int(config.get("num_devices", 0) or 0) or len(devices)
  platform = devices[0].platform if devices else "?"
  count = (f"{used} of {len(devices)}" if used != len(devices) else f"{used}")
  processes = jax.process_count()
  return (f"skd_jax {config.name}: method {config.method}, {mode}, "
          f"{processes} process{'es' if processes > 1 else ''}, {count} {platform} "
          f"device{'s' if len(devices) != 1 else ''}, workdir {workdir}")


def format_scores(label: str, split: str, step: int, scores: Mapping[str, Any]) -> str:
  """"skd test scores (step 12, 100 examples): chrf 45.10, exact_match 0.120, ..."."""
  n = scores.get("num_examples")
  cells = [f"{k} {_number(v)}" for k, v in scores.items() if k != "num_examples"]
  where = f"step {step}" + (f", {int(n)} examples" if n is not None else "")
  return f"{label} {split} scores ({where}): " + ", ".join(cells)


def _number(value: Any) -> str:
  if not _finite(value):
    return str(value)
  return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"


def drop_rows_after(workdir: str, step: int, rerun: Callable[[dict], bool] | None = None) -> int:
  """Removes metrics.jsonl rows past `step` (and those `rerun(row)` says will be
  logged again); returns how many. Called on resume from checkpoint `step`."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path, encoding="utf-8") as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue   # A line cut by a kill.
    if int(row.get("step", 0)) > step or (rerun is not None and rerun(row)):
      continue
    kept.append(json.dumps(row) + "\n")
  if len(kept) != len(lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(kept)
    os.replace(tmp, path)
  return len(lines) - len(kept)


class _AboveBars:
  """A file-like stream writing through `tqdm.write` (lines appear above the bars)."""

  def write(self, text: str) -> None:
    if text.strip():
      tqdm.tqdm.write(text.rstrip("\n"), file=sys.__stderr__)

  def flush(self) -> None:
    pass


def _console_handlers() -> list[logging.StreamHandler]:
  """Stream handlers of the root and absl loggers that write to the terminal
  (absl's own handler wraps one)."""
  found = []
  for logger in (logging.getLogger(), logging.getLogger("absl")):
    for handler in logger.handlers:
      inner = getattr(handler, "python_handler", handler)   # absl.logging.ABSLHandler.
      if isinstance(inner, logging.StreamHandler) and inner not in found and getattr(
          inner, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__):
        found.append(inner)
  return found


@contextlib.contextmanager
def messages_above_bars():
  """Python warnings and logging records go through `tqdm.write` (above the bars)."""
  shown = warnings.showwarning

  def show(message, category, filename, lineno, file=None, line=None):
    del file
    tqdm.tqdm.write(warnings.formatwarning(message, category, filename, lineno, line).rstrip(),
                    file=sys.stderr)
  warnings.showwarning = show
  handlers = [(h, h.stream) for h in _console_handlers()]
  stream = _AboveBars()
  for handler, _ in handlers:
    handler.setStream(stream)
  try:
    yield
  finally:
    warnings.showwarning = shown
    for handler, old in handlers:
      handler.setStream(old)


def progress(total: int | None, desc: str, unit: str = "example", enabled: bool = True):
  """A tqdm bar (with ETA when `total` is known) on stderr; a no-op when disabled."""
  off = {} if enabled else {"disable": True}   # unset when enabled, so TQDM_DISABLE=1 applies
  return tqdm.tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False,
                   file=sys.stderr, **off)


def counting(generate_fn: Callable[[list], list], bar) -> Callable[[list], list]:
  """`generate_fn` that advances `bar` by the prompts it completed."""
  def generate(prompts):
    out = generate_fn(prompts)
    bar.update(len(prompts))
    return out
  return generate


class RunLogger:
  """Writes train/eval scalars to TensorBoard and metrics.jsonl; drives the bar."""

  def __init__(self, workdir: str, *, total_steps: int, initial_step: int = 0,
               enabled: bool = True, progress: bool = True, desc: str = "train"):
    self.enabled = enabled
    self._jsonl = None
    self._writer = None
    self._bar = None
    self._redirect = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
    if progress:
      self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, desc=desc,
                            unit="step", dynamic_ncols=True, file=sys.stderr)
      self._redirect = messages_above_bars()
      self._redirect.__enter__()

  def _write(self, kind: str, step: int, values: Mapping[str, Any]) -> None:
    row = {"kind": kind, "step": int(step)}
    row.update({k: (float(v) if _finite(v) else v) for k, v in values.items()})
    self._jsonl.write(json.dumps(row, default=str) + "\n")
    self._jsonl.flush()
    prefix = kind if kind == "train" else f"{kind}/{values.get('split', '')}".rstrip("/")
    for name, value in values.items():
      if _finite(value):
        self._writer.add_scalar(f"{prefix}/{name}", float(value), int(step))
    self._writer.flush()

  def advance(self, steps: int, postfix: Mapping[str, Any] | None = None) -> None:
    """Moves the bar by `steps`; `postfix` shows the latest loss, tokens/s, ..."""
    if self._bar is None:
      return
    if postfix:
      self._bar.set_postfix({k: (f"{v:.4g}" if _finite(v) else v) for k, v in postfix.items()},
                            refresh=False)
    self._bar.update(steps)

  def train(self, step: int, values: Mapping[str, Any]) -> None:
    if self.enabled:
      self._write("train", step, values)

  def eval(self, step: int, split: str, values: Mapping[str, Any]) -> None:
    if self.enabled:
      self._write("eval", step, dict(values, split=split))

  def message(self, text: str) -> None:
    if self._bar is not None:
      self._bar.write(text, file=sys.stderr)
    elif self.enabled:
      print(text, flush=True)

  def close(self) -> None:
    if self._redirect is not None:
      self._redirect.__exit__(None, None, None)
      self._redirect = None
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    if self._writer is not None:
      self._writer.close()
      self._writer = None
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
