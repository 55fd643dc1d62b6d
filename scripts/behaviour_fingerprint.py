"""Behaviour fingerprint: sampler tokens and the driver's first training losses.

    python scripts/behaviour_fingerprint.py [--out FILE.json] [--steps 5] [--methods a,b]

Prints, and writes as JSON with --out, for a refactor to compare before/after:

* sampler: `skd_jax.sample` on the tiny model pair of tests/test_sampler.py
  (tiny-gemma seeds 1 / 2, std 0.1, the teacher 3 layers) and its prompts, for
  methods skd / student / teacher, gamma 1 and 3, top_k 1 / 5 / 25, sampling
  temperatures 1.0 (the completions and from-teacher flags, and a sha256 of both);
* driver: `skd_jax.train.loop.run` of configs/gemma_translate.py:tiny per method
  (the tests' `tiny_config`, `--steps` updates, log every step): the training
  losses from WORKDIR/metrics.jsonl, and the last evaluation's scores.

Only public names that exist before and after issue 13 are used
(`skd_jax.sample`, `skd_jax.SamplerConfig`, `skd_jax.get_config`,
`skd_jax.Model`, `models.transformer.init_params`, `train.loop.run`,
`train.methods.METHODS`), so the same file runs on an older checkout:

    git worktree add /tmp/base <commit>
    cd /tmp/base && PYTHONPATH=/tmp/base python /path/to/behaviour_fingerprint.py --out base.json

Runs on CPU with 8 simulated devices and float32 matmuls, as the tests do
(about 3 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402  (after the environment)

jax.config.update("jax_default_matmul_precision", "highest")

PROMPTS = [[2, 5, 6, 7], [2, 9], [2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 40, 41]]
SAMPLER_CASES = [(method, gamma, top_k) for method in ("skd", "student", "teacher")
                 for gamma in (1, 3) for top_k in (1, 5, 25)]


def _sha(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _model(name: str, seed: int, **kw):
  import skd_jax  # pylint: disable=import-outside-toplevel
  from skd_jax.models import transformer  # pylint: disable=import-outside-toplevel
  cfg = skd_jax.get_config(name, **kw)
  return skd_jax.Model(config=cfg,
                       params=transformer.init_params(cfg, jax.random.PRNGKey(seed), 0.1))


def sampler_fingerprint() -> dict:
  """{case: {"completions", "from_teacher", "sha"}} of the tiny pair."""
  import skd_jax  # pylint: disable=import-outside-toplevel
  student = _model("tiny-gemma", 1)
  teacher = _model("tiny-gemma", 2, num_layers=3)
  out = {}
  for method, gamma, top_k in SAMPLER_CASES:
    cfg = skd_jax.SamplerConfig(method=method, gamma=gamma, top_k=top_k, max_new_tokens=16,
                                stop_ids=(), student_temperature=1.0, teacher_temperature=1.0)
    result = skd_jax.sample(student if method != "teacher" else None,
                            teacher if method != "student" else None, PROMPTS, config=cfg,
                            rng=jax.random.PRNGKey(7))
    row = {"completions": [list(map(int, c)) for c in result.completions],
           "from_teacher": [list(map(bool, f)) for f in result.from_teacher]}
    row["sha"] = _sha(row)
    out[f"{method}/gamma={gamma}/top_k={top_k}"] = row
  return out


def _tiny_config(root: str, method: str, steps: int):
  """tests/test_methods.py's tiny_config(method=...), logging every step."""
  path = os.path.join(root, "configs", "gemma_translate.py")
  spec = importlib.util.spec_from_file_location("fingerprint_gemma_translate", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config("tiny")
  c.method = method
  c.max_steps = steps
  c.log_every_steps = 1
  c.eval.every_steps = 0
  c.eval.limit = 4
  c.eval.batch_size = 4
  c.eval.final_split = ""
  c.export = False
  c.checkpoint.every_steps = 100
  return c


def driver_fingerprint(root: str, steps: int, method_names: list[str]) -> dict:
  """{method: {"losses", "eval", "sha"}}: the driver's first `steps` updates."""
  from skd_jax.train import loop  # pylint: disable=import-outside-toplevel
  out = {}
  for method in method_names:
    with tempfile.TemporaryDirectory() as workdir:
      result = loop.run(_tiny_config(root, method, steps), workdir, "train")
      rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"),
                                                encoding="utf-8")]
    train = [r for r in rows if r.get("kind") == "train"]
    losses = [r["loss"] for r in train]
    row = {"losses": losses, "eval": dict(result.get("last_eval") or {}),
           "replacement_rate": [r["replacement_rate"] for r in train],
           "sampled_fraction": [r["sampled_fraction"] for r in train]}
    row["sha"] = _sha(row)
    out[method] = row
    print(f"  {method:20s} losses {['%.6f' % x for x in losses]}", flush=True)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="", help="also write the fingerprint as JSON here")
  parser.add_argument("--steps", type=int, default=5, help="driver updates per method")
  parser.add_argument("--methods", default="", help="comma-separated (default: all)")
  parser.add_argument("--root", default=os.getcwd(),
                      help="checkout whose configs/ to read (default: the current directory)")
  args = parser.parse_args(argv)
  from skd_jax.train import methods  # pylint: disable=import-outside-toplevel
  names = [m for m in args.methods.split(",") if m] or sorted(methods.METHODS)
  print("sampler:", flush=True)
  sampler = sampler_fingerprint()
  for case, row in sampler.items():
    print(f"  {case:28s} {row['sha']}", flush=True)
  print("driver:", flush=True)
  driver = driver_fingerprint(args.root, args.steps, names)
  fingerprint = {"sampler": sampler, "driver": driver,
                 "sha": _sha({"sampler": sampler, "driver": driver})}
  print(f"fingerprint {fingerprint['sha']}", flush=True)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(fingerprint, f, indent=1, sort_keys=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
