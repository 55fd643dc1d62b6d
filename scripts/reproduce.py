r"""Small-scale reproduction of the paper's Table 1 comparison (docs/RESULTS.md).

    python scripts/reproduce.py --task=numbers_en_fr --seeds=0,1,2 --out=/tmp/skd_repro
    python scripts/reproduce.py --task=arithmetic --seeds=0,1,2 --out=/tmp/skd_repro
    python scripts/reproduce.py --task=numbers_en_fr --seeds=0 --k_sweep=1,5,25,100,0 --out=/tmp/skd_repro

For each seed: the demo's comparison (`configs/demo.py`: teacher SFT once per task,
then one student per method from the same weak initialisation; the seed changes the
student init, the data order and every sampling key). `--student_init=sft` starts
every student from a short SFT of the student instead (the paper's "SFT init").
`--k_sweep` runs SKD for each K (0 in the list means K = vocabulary size).
Prints Markdown tables of mean ± std over seeds and writes `summary.json`.
Every run is resumable: finished runs are skipped.
"""
import argparse
import copy
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo_config(task: str, size: str):
  from skd_jax.config_files import sibling
  c = sibling(os.path.join(ROOT, "configs", "demo.py"), "demo").get_config(size)
  c.task.name = task
  if task == "arithmetic":   # longer prompts (<= 77 tokens) and chain-of-thought answers (<= 56)
    c.task.max_prompt_tokens = 96
    c.task.max_new_tokens = 64
    c.sampler.prompt_buckets = (96,)
    for model in (c.teacher, c.student):
      model.overrides.max_position_embeddings = 192
    c.eval.metric = "gsm8k_accuracy"
    c.compare.table_metrics = ("gsm8k_accuracy",)
  return c


def mean_std(values):
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--task", default="numbers_en_fr")
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--size", default="", help="'' (demo size) or 'tiny'")
  ap.add_argument("--student_init", default="weak", choices=["weak", "sft"])
  ap.add_argument("--sft_init_steps", type=int, default=50)
  ap.add_argument("--k_sweep", default="", help="comma-separated K values for SKD (0 = vocab)")
  ap.add_argument("--methods", default="")
  ap.add_argument("--out", default="/tmp/skd_repro")
  args = ap.parse_args()

  from skd_jax.experiments import compare

  base = demo_config(args.task, args.size)
  if args.methods:
    base.compare.methods = tuple(args.methods.split(","))
  root = os.path.join(args.out, args.task)
  # One teacher per task, shared by every seed and method.
  teacher_dir = os.path.join(root, "teacher")
  teacher = compare._train_once(compare._teacher_config(base, base.compare), teacher_dir)
  base.compare.teacher_path = os.path.join(teacher_dir, "export")
  base.teacher.path = base.compare.teacher_path   # the K sweep runs bypass run_comparison
  metric = base.eval.metric
  # The task metric, plus teacher-student top-1 agreement on the reference completions
  # (continuous: it still separates methods where the task metric is near zero).
  metrics = [metric, "top1_agreement"]

  results: dict[str, dict[str, list[float]]] = {}
  for seed in [int(s) for s in args.seeds.split(",")]:
    c = copy.deepcopy(base)
    c.seed = seed
    c.student.init_seed = 100 + seed
    run_root = os.path.join(root, f"{args.student_init}_seed{seed}")
    if args.student_init == "sft":
      init = compare._run_config(c, "sft")
      init.max_steps = args.sft_init_steps
      init.eval.every_steps = 0
      compare._train_once(init, os.path.join(run_root, "sft_init"))
      c.checkpoint.restore_from = os.path.join(run_root, "sft_init", "checkpoints")
    if args.k_sweep:
      for k in [int(x) for x in args.k_sweep.split(",")]:
        ck = compare._run_config(c, "skd")
        ck.sampler.top_k = k if k > 0 else 1 << 30
        label = f"SKD K={k if k > 0 else 'V'}"
        r = compare._train_once(ck, os.path.join(run_root, f"skd_k{k}"))
        for m in metrics:
          results.setdefault(label, {}).setdefault(m, []).append(r["final"][m])
    else:
      scores = compare.run_comparison(c, run_root)
      for label, s in scores.items():
        for m in metrics:
          results.setdefault(label, {}).setdefault(m, []).append(s[m])

  n = len(args.seeds.split(","))
  lines = [f"| model | {metric} (mean ± std over {n} seeds) | per seed "
           f"| top-1 agreement x 100 (mean ± std) |", "|---|---:|---|---:|"]
  summary = {}
  for label, by_metric in results.items():
    summary[label] = {}
    for m, values in by_metric.items():
      mean, std = mean_std(values)
      summary[label][m] = {"mean": mean, "std": std, "values": values}
    main, agree = summary[label][metric], summary[label]["top1_agreement"]
    per_seed = " / ".join(f"{v:.1f}" for v in main["values"])
    lines.append(f"| {label} | {main['mean']:.1f} ± {main['std']:.1f} | {per_seed} | "
                 f"{100 * agree['mean']:.1f} ± {100 * agree['std']:.1f} |")
  table = "\n".join(lines)
  print(f"\n{args.task}, student init: {args.student_init}, teacher {metric}: "
        f"{teacher['final'].get(metric, float('nan')):.1f}\n\n{table}")
  tag = f"{args.student_init}{'_ksweep' if args.k_sweep else ''}"
  with open(os.path.join(root, f"summary_{tag}.json"), "w") as f:
    json.dump({"teacher": teacher["final"], "results": summary, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
  main()
