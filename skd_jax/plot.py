"""Training curves of a run: ``python -m skd_jax.plot WORKDIR``.

Reads WORKDIR/metrics.jsonl (written by the driver) and writes PNGs into
WORKDIR/plots/: loss.png, eval.png and replacement_rate.png (fraction of sampled
tokens the teacher chose, and the acceptance rate of student drafts), all
against the step. `plot_comparison` draws the method comparison
(`plots/comparison.png` of `skd_jax.experiments.compare`).

Two conventions keep the plots honest:

* Task scores (chrF, BLEU, exact match: 0-100) and fractions (top-1 agreement:
  0-1) are on separate y axes of eval.png, and legends sit outside the axes.
* A validation curve is only periodic evaluations; the final test score (one
  number, on another split and often more examples) is a separate star marker,
  never a point joined onto the curve.
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
FINAL_MARKER = "*"


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def read_result(workdir: str) -> dict | None:
  """WORKDIR/result.json ({"final": {...}, "step": S, "split": ...}) or None."""
  try:
    with open(os.path.join(workdir, "result.json"), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def is_fraction(name: str) -> bool:
  """Metrics in [0, 1] (plotted on their own axis), as opposed to 0-100 task scores."""
  return "agreement" in name or name.endswith("_rate")


def _series(rows: list[dict], name: str) -> tuple[list[int], list[float]]:
  points = [(r["step"], r[name]) for r in rows
            if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
  return [p[0] for p in points], [p[1] for p in points]


def split_final(evals: list[dict], result: dict | None) -> tuple[list[dict], dict | None]:
  """(periodic evaluation rows, the final-score row or None).

  The final row is the last eval row of result.json's split at its step (the
  driver's final evaluation); without result.json, the last "test" row.
  """
  split = (result or {}).get("split", "test")
  step = (result or {}).get("step")
  final_idx = None
  for i, r in enumerate(evals):
    if r.get("split") == split and (step is None or r.get("step") == step):
      final_idx = i
  if final_idx is None:
    return evals, None
  return evals[:final_idx] + evals[final_idx + 1:], evals[final_idx]


def validation_rows(periodic: list[dict], final: dict | None) -> list[dict]:
  """The periodic rows of one curve: those not on the final split, if any are."""
  other = [r for r in periodic if final is None or r.get("split") != final.get("split")]
  return other or periodic


def _finish(fig, axes, path: str | None):
  """Outside legend (below the axes, never over a curve), save, close."""
  handles, labels = [], []
  for ax in axes:
    ax.grid(alpha=0.3)
    h, l = ax.get_legend_handles_labels()
    handles += h
    labels += l
  if handles:
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), 3), frameon=False, fontsize="small")
  fig.tight_layout()
  if path is None:
    return fig
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)
  return path


def _figure(path: str, title: str, curves: list[tuple[str, list[int], list[float]]],
            ylabel: str) -> str | None:
  curves = [c for c in curves if c[1]]
  if not curves:
    return None
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, steps, values in curves:
    ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=label)
  ax.set(xlabel="step", ylabel=ylabel, title=title)
  return _finish(fig, [ax], path)


def eval_figure(evals: list[dict], result: dict | None = None, path: str | None = None):
  """Every eval metric per split vs step: scores on the left axis, fractions on the right.

  Returns the figure (path None) or the written path; None without eval rows.
  """
  periodic, final = split_final(evals, result)
  names = sorted({k for r in evals for k in r} - _SKIP)
  if not any(_series(evals, n)[0] for n in names):
    return None
  fig, ax_score = plt.subplots(figsize=(7, 4))
  ax_frac = ax_score.twinx()
  colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10)  # one cycle, both axes
  for name in names:
    ax = ax_frac if is_fraction(name) else ax_score
    style = "--" if ax is ax_frac else "-"
    color = next(colors)
    for split in sorted({r.get("split", "") for r in periodic}):
      steps, values = _series([r for r in periodic if r.get("split", "") == split], name)
      if steps:
        ax.plot(steps, values, style, color=color, marker="o" if len(steps) < 30 else None,
                label=f"{split}/{name}")
    if final is not None and _series([final], name)[0]:
      ax.plot(*_series([final], name), linestyle="none", marker=FINAL_MARKER, markersize=12,
              color=color, markeredgecolor="black",
              label=f"{final.get('split', 'test')}/{name} (final)")
  ax_score.set(xlabel="step", ylabel="score (0-100)", title="evaluation")
  ax_frac.set(ylabel="fraction (0-1)", ylim=(-0.03, 1.03))
  return _finish(fig, [ax_score, ax_frac], path)


def comparison_figure(runs: dict[str, tuple[list[dict], dict | None]], metric: str,
                      path: str | None = None, rate_runs: tuple[str, ...] = ()):
  """Validation `metric` of every run vs step, its final test score a star; SKD rates.

  Args:
    runs: {label: (metrics.jsonl rows, result.json or None)}.
    metric: the eval metric of the left panel.
    rate_runs: labels whose teacher-replacement rate is drawn in the right panel.
  """
  fig, (ax_metric, ax_rate) = plt.subplots(1, 2, figsize=(11, 4))
  for label, (rows, result) in runs.items():
    periodic, final = split_final([r for r in rows if r.get("kind") == "eval"], result)
    steps, values = _series(validation_rows(periodic, final), metric)
    color = None
    if steps:
      color = ax_metric.plot(steps, values, marker="o", label=f"{label}, validation")[0].get_color()
    final_steps, final_values = _series([final] if final else [], metric)
    if final_steps:
      ax_metric.plot(final_steps, final_values, linestyle="none", marker=FINAL_MARKER,
                     markersize=13, color=color, markeredgecolor="black",
                     label=f"{label}, {final.get('split', 'test')} (final)")
    steps, values = _series([r for r in rows if r.get("kind") == "train"], "replacement_rate")
    if steps and label in rate_runs:
      ax_rate.plot(steps, values, label=label)
  ax_metric.set(xlabel="step", ylabel=metric, title=f"student quality ({metric})")
  ax_rate.set(xlabel="step", ylabel="fraction of tokens from the teacher",
              title="SKD teacher-replacement rate")
  return _finish(fig, [ax_metric, ax_rate], path)


def plot_comparison(workdir: str, names: list[str], metric: str,
                    labels: dict[str, str] | None = None,
                    rate_names: list[str] | None = None) -> str:
  """Writes WORKDIR/plots/comparison.png from the runs WORKDIR/<name>; returns its path.

  labels: {name: legend label}; rate_names: runs whose replacement rate is drawn
  (default: names starting with "skd").
  """
  labels = labels or {}
  runs = {labels.get(n, n): (read_metrics(os.path.join(workdir, n)),
                             read_result(os.path.join(workdir, n))) for n in names}
  if rate_names is None:
    rate_names = [n for n in names if n.startswith("skd")]
  rate_runs = tuple(labels.get(n, n) for n in rate_names)
  path = os.path.join(workdir, "plots", "comparison.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return comparison_figure(runs, metric, path, rate_runs=rate_runs)


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
      eval_figure(evals, read_result(workdir), os.path.join(out, "eval.png")) if evals else None,
  ]
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
