"""Training curves of a run: ``python -m skd_jax.plot WORKDIR``.

Reads WORKDIR/metrics.jsonl (written by the driver) and writes PNGs into
WORKDIR/plots/: loss.png, eval.png (every eval metric per split) and
replacement_rate.png (fraction of sampled tokens the teacher chose, and the
acceptance rate of student drafts), all against the step.
"""
from __future__ import annotations

import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

_SKIP = {"kind", "step", "split", "num_examples"}


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _series(rows: list[dict], name: str) -> tuple[list[int], list[float]]:
  points = [(r["step"], r[name]) for r in rows
            if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
  return [p[0] for p in points], [p[1] for p in points]


def _figure(path: str, title: str, curves: list[tuple[str, list[int], list[float]]],
            ylabel: str) -> str | None:
  curves = [c for c in curves if c[1]]
  if not curves:
    return None
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, steps, values in curves:
    ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=label)
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_run(workdir: str) -> list[str]:
  """Writes the PNGs; returns their paths."""
  rows = read_metrics(workdir)
  train = [r for r in rows if r.get("kind") == "train"]
  evals = [r for r in rows if r.get("kind") == "eval"]
  out = os.path.join(workdir, "plots")
  os.makedirs(out, exist_ok=True)
  written = [
      _figure(os.path.join(out, "loss.png"), "training loss",
              [("loss", *_series(train, "loss"))], "loss"),
      _figure(os.path.join(out, "replacement_rate.png"), "teacher replacement rate",
              [("replacement rate", *_series(train, "replacement_rate")),
               ("acceptance rate", *_series(train, "acceptance_rate"))], "fraction"),
  ]
  curves = []
  for split in sorted({r.get("split", "") for r in evals}):
    rows_split = [r for r in evals if r.get("split", "") == split]
    names = sorted({k for r in rows_split for k in r} - _SKIP)
    curves += [(f"{split}/{name}", *_series(rows_split, name)) for name in names]
  written.append(_figure(os.path.join(out, "eval.png"), "evaluation", curves, "score"))
  return [p for p in written if p]


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print("usage: python -m skd_jax.plot WORKDIR", file=sys.stderr)
    return 2
  try:
    paths = plot_run(argv[1])
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for path in paths:
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
