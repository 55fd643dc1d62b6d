r"""Small-scale reproduction of the paper's Table 1 comparison (docs/RESULTS.md).

    python scripts/reproduce.py --task=numbers_en_fr --seeds=0,1,2 --out=/tmp/skd_repro
    python scripts/reproduce.py --task=arithmetic --seeds=0,1,2 --out=/tmp/skd_repro
    python scripts/reproduce.py --task=numbers_en_fr --seeds=0 --k_sweep=1,5,25,100,0 --out=/tmp/skd_repro
    python scripts/reproduce.py --task=numbers_en_fr --seeds=0,1,2 --acceptance_variants=raw,warped,top_p --out=/tmp/skd_repro
    python scripts/reproduce.py --task=numbers_en_fr --seeds=0,1,2 --k_sweep=1,5,25,100 --sweep_acceptance=warped --out=/tmp/skd_repro
    python scripts/reproduce.py --task=numbers_en_fr --seeds=0,1,2 --student_init=competent --extra_skd=warped --out=/tmp/skd_repro

For each seed: the demo's comparison (`configs/demo.py`: teacher SFT once per task,
then one student per method from the same weak initialisation; the seed changes the
student init, the data order and every sampling key). `--student_init=sft` starts
every student from a short SFT of the student instead (the paper's "SFT init");
`--student_init=competent` from an SFT of the student on a *related* task
(`--init_task`, English -> German number words by default, `--init_steps` updates),
so it knows the prompt format and number words but not the target language: the
analogue of the paper's instruction-tuned students with a knowledge gap.
`--k_sweep` runs SKD for each K (0 in the list means K = vocabulary size), with the
acceptance test `--sweep_acceptance` (a name of `VARIANTS`).
`--extra_skd` adds SKD runs with other acceptance tests to the comparison, and the
comparison prints SKD's paired per-seed differences to every other method.
`--teacher_layers/--teacher_width/--teacher_steps` change the teacher (a stronger
arithmetic teacher); its runs go to their own folder.
`--acceptance_variants` runs SKD at K = `--k` (25) for each acceptance test of
`VARIANTS` and reports every variant's paired per-seed differences to the first one,
with an exact two-sided sign test and a bootstrap interval of the mean difference.
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
  # The settings every table of docs/RESULTS.md ran with (the demo's own defaults moved
  # on to the paper's regime): raw top-K acceptance, students start untrained unless
  # --student_init says otherwise. Changing these would change every run's fingerprint.
  c.sampler.acceptance = "raw"
  c.compare.student_init_task = ""
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


# SKD acceptance tests (docs/RESULTS.md, "Acceptance variants"): sampler.* settings.
VARIANTS = {
    "raw": dict(acceptance="raw"),                               # top-K of the raw logits
    "warped": dict(acceptance="warped"),                         # the official code's test
    "top_p": dict(acceptance="warped", acceptance_top_p=1.0),    # warped nucleus, no filler
    "raw_top_p": dict(acceptance="raw", acceptance_top_p=0.5),   # raw nucleus of mass 0.5
    "decay": dict(acceptance="raw", top_k_decay_length=24),      # official decaying K, L = 24
}


def sign_test(diffs) -> float:
  """Exact two-sided sign test p-value of paired differences (zeros dropped)."""
  from math import comb
  d = [x for x in diffs if x != 0]
  n, pos = len(d), sum(x > 0 for x in d)
  if n == 0:
    return 1.0
  tail = sum(comb(n, i) for i in range(min(pos, n - pos) + 1)) / 2 ** n
  return min(1.0, 2 * tail)


def bootstrap_interval(diffs, level=0.95, draws=10_000, seed=0):
  """Percentile bootstrap interval of the mean paired difference (numpy, fixed seed)."""
  d = np.asarray(diffs, float)
  rng = np.random.default_rng(seed)
  means = d[rng.integers(0, len(d), (draws, len(d)))].mean(axis=1)
  return tuple(float(q) for q in np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def paired_table(results, metric, reference, minus_reference=True):
  """Markdown: each label's paired per-seed differences to `reference` on `metric`
  (label − reference; with `minus_reference=False`, reference − label)."""
  scale = 100.0 if metric == "top1_agreement" else 1.0   # a fraction: shown in points
  ref = results[reference][metric]
  unit = " x 100" if scale != 1.0 else ""
  head = f"vs {reference}" if minus_reference else f"{reference} minus"
  lines = [f"| {head} | per-seed difference ({metric}{unit}) | mean | sign test p | "
           "95% bootstrap interval |", "|---|---|---:|---:|---|"]
  sign = 1.0 if minus_reference else -1.0
  for label, by_metric in results.items():
    if label == reference or label.startswith("teacher") or label.startswith("student,"):
      continue
    diffs = [sign * scale * (a - b) for a, b in zip(by_metric[metric], ref)]
    low, high = bootstrap_interval(diffs)
    lines.append(f"| {label} | {' / '.join(f'{x:+.1f}' for x in diffs)} | "
                 f"{np.mean(diffs):+.1f} | {sign_test(diffs):.2f} | [{low:+.1f}, {high:+.1f}] |")
  return "\n".join(lines)


def mean_std(values):
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--task", default="numbers_en_fr")
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--size", default="", help="'' (demo size) or 'tiny'")
  ap.add_argument("--student_init", default="weak", choices=["weak", "sft", "competent"])
  ap.add_argument("--sft_init_steps", type=int, default=50)
  ap.add_argument("--init_task", default="numbers_en_de",
                  help="--student_init=competent: the related task the student first learns")
  ap.add_argument("--init_steps", type=int, default=250,
                  help="--student_init=competent: SFT updates on --init_task")
  ap.add_argument("--k_sweep", default="", help="comma-separated K values for SKD (0 = vocab)")
  ap.add_argument("--sweep_acceptance", default="raw",
                  help=f"--k_sweep's acceptance test, one of {sorted(VARIANTS)}")
  ap.add_argument("--extra_skd", default="",
                  help="comparison: comma-separated extra SKD acceptance tests (of VARIANTS) at K = --k")
  ap.add_argument("--teacher_layers", type=int, default=0, help="0 = the demo's (4)")
  ap.add_argument("--teacher_width", type=int, default=0, help="0 = the demo's (128)")
  ap.add_argument("--teacher_steps", type=int, default=0, help="0 = the demo's (400)")
  ap.add_argument("--acceptance_variants", default="",
                  help=f"comma-separated SKD acceptance tests, of {sorted(VARIANTS)}")
  ap.add_argument("--k", type=int, default=25, help="SKD's K for --acceptance_variants")
  ap.add_argument("--methods", default="")
  ap.add_argument("--out", default="/tmp/skd_repro")
  args = ap.parse_args()
  for name in [n for n in (args.acceptance_variants + "," + args.extra_skd).split(",") if n] + \
      [args.sweep_acceptance]:
    if name not in VARIANTS:
      raise SystemExit(f"unknown acceptance test {name!r}; use one of {sorted(VARIANTS)}")

  from skd_jax.experiments import compare

  base = demo_config(args.task, args.size)
  if args.methods:
    base.compare.methods = tuple(args.methods.split(","))
  tag = stronger_teacher(base, args)
  root = os.path.join(args.out, args.task + tag)
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

  def record(label, run_dir, final):
    for m in metrics:
      results.setdefault(label, {}).setdefault(m, []).append(final.get(m, float("nan")))
    if run_dir is not None:
      results[label].setdefault("replacement_rate", []).append(
          _mean_train_metric(run_dir, "replacement_rate"))

  def skd_run(c, run_root, k, name, label):
    cv = compare._run_config(c, "skd", f"skd_k{k}_{name}")
    cv.sampler.top_k = k if k > 0 else 1 << 30
    cv.sampler.update(VARIANTS[name])
    run_dir = os.path.join(run_root, f"skd_k{k}_{name}")
    record(label, run_dir, compare._train_once(cv, run_dir)["final"])

  for seed in [int(s) for s in args.seeds.split(",")]:
    c = copy.deepcopy(base)
    c.seed = seed
    c.student.init_seed = 100 + seed
    run_root = os.path.join(root, f"{args.student_init}_seed{seed}")
    start_student(c, args, run_root)
    if args.acceptance_variants:
      for name in args.acceptance_variants.split(","):
        skd_run(c, run_root, args.k, name, f"SKD K={args.k} {name}")
    elif args.k_sweep:
      for k in [int(x) for x in args.k_sweep.split(",")]:
        label = f"SKD K={k if k > 0 else 'V'}"
        if args.sweep_acceptance == "raw":   # the folders of the first sweep (raw only)
          ck = compare._run_config(c, "skd")
          ck.sampler.top_k = k if k > 0 else 1 << 30
          run_dir = os.path.join(run_root, f"skd_k{k}")
          record(label, run_dir, compare._train_once(ck, run_dir)["final"])
        else:
          skd_run(c, run_root, k, args.sweep_acceptance, f"{label} {args.sweep_acceptance}")
    else:
      scores = compare.run_comparison(c, run_root)
      for label, s in scores.items():
        if args.student_init == "competent" and label.startswith("student, "):
          label = f"student, {args.init_task} SFT (start)"
        record(label, None, s)
      for name in [n for n in args.extra_skd.split(",") if n]:
        skd_run(c, run_root, args.k, name, f"SKD K={args.k} {name}")

  n = len(args.seeds.split(","))
  print(f"\n{args.task}, student init: {args.student_init}, teacher {metric}: "
        f"{teacher['final'].get(metric, float('nan')):.1f}\n\n{summary_tables(results, metric, args, n)}")
  name = f"{args.student_init}{'_ksweep' if args.k_sweep else ''}"
  name += f"_{args.sweep_acceptance}" if args.k_sweep and args.sweep_acceptance != "raw" else ""
  name += f"_acceptance_k{args.k}" if args.acceptance_variants else ""
  name += f"_extra_{args.extra_skd.replace(',', '_')}" if args.extra_skd else ""
  summary = {label: {m: dict(zip(("mean", "std"), mean_std(v)), values=v)
                     for m, v in by_metric.items()} for label, by_metric in results.items()}
  with open(os.path.join(root, f"summary_{name}.json"), "w") as f:
    json.dump({"teacher": teacher["final"], "results": summary, "args": vars(args)}, f, indent=2)


def stronger_teacher(config, args) -> str:
  """Applies --teacher_layers/width/steps to `config`; returns the folder suffix ('' if none)."""
  parts = []
  if args.teacher_layers:
    config.teacher.overrides.num_layers = args.teacher_layers
    parts.append(f"L{args.teacher_layers}")
  if args.teacher_width:
    w = args.teacher_width
    config.teacher.overrides.update(hidden_size=w, intermediate_size=4 * w, head_dim=w // 4)
    parts.append(f"d{w}")
  if args.teacher_steps:
    config.compare.teacher_steps = args.teacher_steps
    parts.append(f"s{args.teacher_steps}")
  return "_teacher_" + "_".join(parts) if parts else ""


def start_student(c, args, run_root) -> None:
  """Points `c` at the student's starting checkpoint for --student_init (weak: none)."""
  import ml_collections
  from skd_jax.experiments import compare
  if args.student_init == "weak":
    return
  if args.student_init == "sft":
    init, folder = compare._run_config(c, "sft"), "sft_init"
    init.max_steps = args.sft_init_steps
    init.eval.every_steps = 0
  else:   # competent: the comparison's own start run (compare.student_init_task)
    folder = f"init_{args.init_task}"
    init = compare._student_init_config(c, ml_collections.ConfigDict(dict(
        student_init_task=args.init_task, student_init_steps=args.init_steps)))
  compare._train_once(init, os.path.join(run_root, folder))
  c.checkpoint.restore_from = os.path.join(run_root, folder, "checkpoints")


def summary_tables(results, metric, args, n) -> str:
  """The Markdown tables: mean ± std per label, then the paired per-seed differences."""
  lines = [f"| model | {metric} (mean ± std over {n} seeds) | per seed "
           f"| top-1 agreement x 100 (mean ± std) |", "|---|---:|---|---:|"]
  for label, by_metric in results.items():
    mean, std = mean_std(by_metric[metric])
    agree, agree_std = mean_std(by_metric["top1_agreement"])
    per_seed = " / ".join(f"{v:.1f}" for v in by_metric[metric])
    lines.append(f"| {label} | {mean:.1f} ± {std:.1f} | {per_seed} | "
                 f"{100 * agree:.1f} ± {100 * agree_std:.1f} |")
  table = "\n".join(lines)
  if n < 2:
    return table
  if args.acceptance_variants or args.k_sweep:
    reference = next(iter(results))
    table += "\n\n" + paired_table(results, metric, reference)
    table += "\n\n" + paired_table(results, "top1_agreement", reference)
  else:   # the comparison: SKD minus every other method, seed by seed
    skd = [label for label in results if label.startswith("SKD")]
    for reference in skd:
      for m in (metric, "top1_agreement"):
        table += "\n\n" + paired_table(results, m, reference, minus_reference=False)
  rates = [f"{label}: {np.nanmean(v['replacement_rate']):.3f}" for label, v in results.items()
           if "replacement_rate" in v]
  if rates:
    table += "\n\nMean replacement rate over training (mean over seeds): " + " / ".join(rates)
  return table


def _mean_train_metric(run_dir: str, name: str) -> float:
  """Mean of a logged training metric over a run's metrics.jsonl (nan if never logged)."""
  values = []
  path = os.path.join(run_dir, "metrics.jsonl")
  if os.path.exists(path):
    for line in open(path):
      row = json.loads(line)
      if row.get("kind") == "train" and isinstance(row.get(name), (int, float)):
        values.append(float(row[name]))
  return float(np.mean(values)) if values else float("nan")


if __name__ == "__main__":
  main()
