"""Run logging: a tqdm bar, TensorBoard events (tensorboardX) and metrics.jsonl.

`WORKDIR/metrics.jsonl` holds one JSON object per logged train step
(``{"kind": "train", "step": ..., "loss": ...}``) or evaluation
(``{"kind": "eval", "split": ..., "step": ..., <metric>: ...}``);
`skd_jax.plot` draws its curves. Only process 0 writes.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Mapping

import tqdm


def _finite(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class RunLogger:
  """Writes train/eval scalars to TensorBoard and metrics.jsonl; drives the bar."""

  def __init__(self, workdir: str, *, total_steps: int, initial_step: int = 0,
               enabled: bool = True, progress: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._writer = None
    self._bar = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
    if progress:
      self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, desc="train",
                            unit="step", dynamic_ncols=True)

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
    if self._bar is not None:
      self._bar.close()
    if self._writer is not None:
      self._writer.close()
    if self._jsonl is not None:
      self._jsonl.close()
