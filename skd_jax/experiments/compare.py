"""Method comparison: fine-tune a teacher, then distil one student per method.

The README's main job (`configs/demo.py`) and the small-scale reproduction
(`scripts/reproduce.py`, docs/RESULTS.md) are this experiment:

1. teacher: SFT of the larger model on the task (or `compare.teacher_path`);
2. optionally the student is first fine-tuned on a related task
   (`compare.student_init_task`, `student_init_steps` SFT updates): every method
   then starts from it, a competent student with a knowledge gap;
3. the starting student is evaluated once (untrained: the "weak start");
4. for each method of `compare.methods`, the same student init is trained with
   that method against the teacher, and evaluated on the test split;
5. a table (stdout, `comparison.md`, `comparison.json`) and plots
   (`plots/comparison.png` plus each run's own curves).

Every run is an ordinary driver run in WORKDIR/<name>, so it resumes after a
crash and keeps its metrics.jsonl, checkpoints and samples. A finished run is
reused only when its fingerprint (`skd_jax.train.workdir`: config, code, data)
matches the run this config asks for; a run folder holding another run is
refused before anything trains (`planned_runs` lets preflight check them all).
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any

import ml_collections

from skd_jax.train import logger as logger_lib
from skd_jax.train import loop
from skd_jax.train import methods as methods_lib
from skd_jax.train import workdir as workdir_lib

# Labels of the table and plots (the paper's Table 1 names), from the registry.
LABELS = {name: method.label for name, method in methods_lib.METHODS.items()}


def _run_config(config, method: str, name: str | None = None) -> ml_collections.ConfigDict:
  """The driver config of one student run, named "<experiment>/<name or method>"."""
  c = copy.deepcopy(config)
  with c.unlocked():
    del c["compare"]
  c.method = method
  c.name = f"{config.name}/{name or method}"   # Cosmetic: bars and lines say which run.
  return c


def _teacher_config(config, cmp) -> ml_collections.ConfigDict:
  """SFT of the teacher architecture on the task (it plays the student's role)."""
  c = _run_config(config, "sft", "teacher")
  c.student = copy.deepcopy(config.teacher)
  c.student.rules = "student"
  c.max_steps = int(cmp.teacher_steps)
  c.num_epochs = int(cmp.teacher_epochs)
  c.optimizer.learning_rate = float(cmp.teacher_learning_rate)
  c.task.train_size = int(cmp.teacher_train_size)
  return c


def _student_init_config(config, cmp) -> ml_collections.ConfigDict:
  """SFT of the student on `compare.student_init_task`: every method's starting point."""
  c = _run_config(config, "sft", "student_init")
  c.task.name = str(cmp.student_init_task)
  c.max_steps = int(cmp.student_init_steps)
  c.eval.every_steps = 0
  return c


def start_label(config) -> str:
  """The table's name of the student every method starts from."""
  cmp = config.compare
  if cmp.get("student_init_task", ""):
    return f"student, {cmp.student_init_task} SFT (start)"
  return "student, SFT init" if config.checkpoint.restore_from else "student, untrained"


def reusable(config, workdir: str) -> dict | None:
  """WORKDIR's result.json when it holds exactly the run `config` asks for
  (same fingerprint), else None."""
  result = workdir_lib.read_json(os.path.join(workdir, "result.json"))
  stored = workdir_lib.read_json(os.path.join(workdir, workdir_lib.FINGERPRINT))
  if result is None or stored is None:
    return None
  expected = workdir_lib.digest(workdir_lib.fingerprint(config))
  if workdir_lib.digest(stored) != expected or result.get("fingerprint", expected) != expected:
    return None
  return result


def _announce(config, result: dict, reused: bool) -> None:
  line = logger_lib.format_scores(logger_lib.run_label(config), result.get("split", "test"),
                                  int(result.get("step", 0)), result["final"])
  print(line + (" (finished earlier, same fingerprint: reused)" if reused else ""), flush=True)


def _train_once(config, workdir: str) -> dict:
  """A driver training run, skipped when WORKDIR already holds its finished
  result (result.json, written at the end of the run) with the same fingerprint."""
  cached = reusable(config, workdir)
  if cached is not None:
    _announce(config, cached, True)
    return cached
  out = loop.run(config, workdir, "train")   # Prints its own labelled score line.
  return {"final": out["final"], "step": out["step"], "split": config.eval.final_split}


def _evaluate_once(config, workdir: str) -> dict:
  cached = reusable(config, workdir)
  if cached is not None:
    _announce(config, cached, True)
    return cached
  scores = loop.run(config, workdir, "eval")
  return {"final": scores, "step": 0, "split": config.eval.final_split}


def planned_runs(config, workdir: str) -> list[tuple[Any, str, str, tuple[str, ...]]]:
  """[(driver config, run folder, mode, roles made by an earlier run)] of the comparison.

  The last item names model paths that do not exist yet (the teacher the first
  run fine-tunes), so preflight skips them.
  """
  cmp = config.compare
  runs = []
  teacher_path, made = cmp.teacher_path, ()
  if not teacher_path:
    teacher_dir = os.path.join(workdir, "teacher")
    runs.append((_teacher_config(config, cmp), teacher_dir, "train", ()))
    teacher_path, made = os.path.join(teacher_dir, "export"), ("teacher",)
  base = copy.deepcopy(config)
  base.teacher.path = teacher_path
  if cmp.get("student_init_task", ""):
    init_dir = os.path.join(workdir, "student_init")
    runs.append((_student_init_config(base, cmp), init_dir, "train", made))
    base.checkpoint.restore_from = os.path.join(init_dir, "checkpoints")
    made = made + ("restore_from",)
  runs.append((_run_config(base, "sft", "untrained"), os.path.join(workdir, "untrained"),
               "eval", made))
  for method in cmp.methods:
    runs.append((_run_config(base, method), os.path.join(workdir, method), "train", made))
  return runs


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
  """plots/comparison.png (`skd_jax.plot.plot_comparison`): each run's validation metric
  vs step with its final test score as a separate marker, and the SKD runs' replacement rate."""
  from skd_jax import plot as plot_lib
  skd_runs = [n for n in names if methods_lib.METHODS.get(n) is not None
              and methods_lib.SKD in methods_lib.METHODS[n].sources]
  return plot_lib.plot_comparison(workdir, names, metric, LABELS, rate_names=skd_runs)


def run_comparison(config, workdir: str | None = None) -> dict[str, Any]:
  """Runs the comparison of `config.compare`; returns {label: test metrics}."""
  cmp = config.compare
  workdir = os.path.abspath(workdir or workdir_lib.default_workdir(config))
  plan = planned_runs(config, workdir)
  for run_config, run_dir, mode, _ in plan:   # Refuse before anything trains.
    problem = workdir_lib.mismatch(run_config, run_dir, mode, root=workdir)
    if problem:
      raise workdir_lib.WorkdirMismatch(problem)
  os.makedirs(workdir, exist_ok=True)
  rows: list[tuple[str, dict]] = []
  for run_config, run_dir, mode, _ in plan:
    name = os.path.basename(run_dir)
    if mode == "eval":
      rows.append((start_label(config), _evaluate_once(run_config, run_dir)["final"]))
    elif name == "student_init":   # Scored on its own task: not a row of this table.
      _train_once(run_config, run_dir)
    elif name == "teacher":
      rows.append(("teacher (SFT)", _train_once(run_config, run_dir)["final"]))
    else:
      rows.append((LABELS.get(name, name), _train_once(run_config, run_dir)["final"]))

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
