"""Method comparison: fine-tune a teacher, then distil one student per method.

The README's main job (`configs/demo.py`) and the small-scale reproduction
(`scripts/reproduce.py`, docs/RESULTS.md) are this experiment:

1. teacher: SFT of the larger model on the task (or `compare.teacher_path`);
2. the untrained student is evaluated once (the "weak start");
3. for each method of `compare.methods`, the same student init is trained with
   that method against the teacher, and evaluated on the test split;
4. a table (stdout, `comparison.md`, `comparison.json`) and plots
   (`plots/comparison.png` plus each run's own curves).

Every run is an ordinary driver run in WORKDIR/<name>, so it resumes after a
crash and keeps its metrics.jsonl, checkpoints and samples.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any

import ml_collections

from skd_jax.train import loop
from skd_jax.train import run_setup
from skd_jax.train import methods as methods_lib

# Labels of the table and plots (the paper's Table 1 names), from the registry.
LABELS = {name: method.label for name, method in methods_lib.METHODS.items()}


def _run_config(config, method: str) -> ml_collections.ConfigDict:
  """The driver config of one student run."""
  c = copy.deepcopy(config)
  with c.unlocked():
    del c["compare"]
  c.method = method
  return c


def _teacher_config(config, cmp) -> ml_collections.ConfigDict:
  """SFT of the teacher architecture on the task (it plays the student's role)."""
  c = _run_config(config, "sft")
  c.student = copy.deepcopy(config.teacher)
  c.student.rules = "student"
  c.max_steps = int(cmp.teacher_steps)
  c.num_epochs = int(cmp.teacher_epochs)
  c.optimizer.learning_rate = float(cmp.teacher_learning_rate)
  c.task.train_size = int(cmp.teacher_train_size)
  return c


def _done(workdir: str) -> dict | None:
  path = os.path.join(workdir, "result.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return None


def _train_once(config, workdir: str) -> dict:
  """A driver training run, skipped when WORKDIR already holds its result.json
  (which the driver writes at the end of the run)."""
  cached = _done(workdir)
  if cached is not None:
    return cached
  out = loop.run(config, workdir, "train")
  return {"final": out["final"], "step": out["step"]}


def _evaluate_once(config, workdir: str) -> dict:
  cached = _done(workdir)
  if cached is not None:
    return cached
  scores = loop.run(config, workdir, "eval")
  return {"final": scores, "step": 0}


def format_table(rows: list[tuple[str, dict]], metrics: list[str]) -> str:
  """A Markdown table: one row per model, one column per metric."""
  head = "| model | " + " | ".join(metrics) + " |"
  rule = "|---|" + "---:|" * len(metrics)
  lines = [head, rule]
  for label, scores in rows:
    cells = [f"{scores.get(m, float('nan')):.1f}" for m in metrics]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_comparison(workdir: str, names: list[str], metric: str) -> str:
  """One PNG: the validation metric and replacement rate of every run vs step."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from skd_jax import plot as plot_lib

  fig, (ax_metric, ax_rate) = plt.subplots(1, 2, figsize=(11, 4))
  for name in names:
    rows = plot_lib.read_metrics(os.path.join(workdir, name))
    steps, values = plot_lib._series([r for r in rows if r.get("kind") == "eval"], metric)
    if steps:
      ax_metric.plot(steps, values, marker="o", label=LABELS.get(name, name))
    steps, values = plot_lib._series([r for r in rows if r.get("kind") == "train"],
                                     "replacement_rate")
    method = methods_lib.METHODS.get(name)
    if steps and method is not None and methods_lib.SKD in method.sources:
      ax_rate.plot(steps, values, label=LABELS.get(name, name))
  ax_metric.set(xlabel="step", ylabel=f"validation {metric}", title="student quality")
  ax_rate.set(xlabel="step", ylabel="fraction of tokens from the teacher",
              title="SKD teacher-replacement rate")
  for ax in (ax_metric, ax_rate):
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend()
  path = os.path.join(workdir, "plots", "comparison.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def run_comparison(config, workdir: str | None = None) -> dict[str, Any]:
  """Runs the comparison of `config.compare`; returns {label: test metrics}."""
  cmp = config.compare
  workdir = workdir or run_setup.default_workdir(config)
  os.makedirs(workdir, exist_ok=True)
  teacher_path = cmp.teacher_path
  rows: list[tuple[str, dict]] = []
  if not teacher_path:
    teacher_dir = os.path.join(workdir, "teacher")
    result = _train_once(_teacher_config(config, cmp), teacher_dir)
    teacher_path = os.path.join(teacher_dir, "export")
    rows.append(("teacher (SFT)", result["final"]))
  base = copy.deepcopy(config)
  base.teacher.path = teacher_path
  untrained = _evaluate_once(_run_config(base, "sft"), os.path.join(workdir, "untrained"))
  start = "SFT init" if base.checkpoint.restore_from else "untrained"
  rows.append((f"student, {start}", untrained["final"]))
  for method in cmp.methods:
    result = _train_once(_run_config(base, method), os.path.join(workdir, method))
    rows.append((LABELS.get(method, method), result["final"]))

  from skd_jax import plot as plot_lib
  for method in cmp.methods:
    plot_lib.plot_run(os.path.join(workdir, method))
  metrics = list(cmp.table_metrics)
  table = format_table(rows, metrics)
  plot_path = plot_comparison(workdir, list(cmp.methods), config.eval.metric or metrics[0])
  with open(os.path.join(workdir, "comparison.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(workdir, "comparison.json"), "w") as f:
    json.dump({label: scores for label, scores in rows}, f, indent=2, default=float)
  print(f"\nTest-set scores ({config.task.name}); runs in {workdir}:\n\n{table}\n\n"
        f"plots: {plot_path}", flush=True)
  return dict(rows)
