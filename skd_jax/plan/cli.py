"""`python -m skd_jax.plan`: the command line (see `skd_jax.plan`)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from skd_jax.models.config import get_config
from skd_jax.plan.experiment import PlanError, load_config, plan_experiment
from skd_jax.plan.planner import plan
from skd_jax.plan.report import Report


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="python -m skd_jax.plan",
      description="Per-device memory planner for a student/teacher pair on a mesh.")
  p.add_argument("--config", default=None,
                 help="experiment config FILE[:arg]: models, rules, batch, lengths and loss "
                      "settings from it (the flags below override it)")
  p.add_argument("--student", default=None, help="student preset (models/config.py)")
  p.add_argument("--teacher", default=None, help="teacher preset")
  p.add_argument("--mesh", action="append", default=None,
                 help="data:D,fsdp:F,tensor:T (repeatable; -1 needs --num_devices)")
  p.add_argument("--num_devices", type=int, default=None)
  p.add_argument("--batch", type=int, default=None)
  p.add_argument("--prompt_len", type=int, default=None)
  p.add_argument("--max_new_tokens", type=int, default=None)
  p.add_argument("--dtype", default=None, help="compute dtype of both models")
  p.add_argument("--param_dtype", default=None, help="teacher param dtype")
  p.add_argument("--student_rules", default=None)
  p.add_argument("--teacher_rules", default=None)
  p.add_argument("--chunk_size", type=int, default=None)
  p.add_argument("--no_remat", action="store_true")
  return p


_DEFAULTS = dict(student="gemma-2b", teacher="gemma-7b", mesh="data:1,fsdp:8,tensor:1", batch=8,
                 prompt_len=256, max_new_tokens=256, dtype="bfloat16", param_dtype="bfloat16",
                 student_rules="student", teacher_rules="teacher", chunk_size=128)


# Explicit flag -> the config keys it sets.
_FLAG_KEYS = {
    "dtype": ("student.dtype", "teacher.dtype"), "param_dtype": ("teacher.param_dtype",),
    "student_rules": ("student.rules",), "teacher_rules": ("teacher.rules",),
    "batch": ("batch_size",), "prompt_len": ("task.max_prompt_tokens",),
    "max_new_tokens": ("task.max_new_tokens",), "chunk_size": ("loss.chunk_size",),
}


def _apply_flags(config, args) -> None:
  """Explicit flags override the experiment config."""
  for role in ("student", "teacher"):  # A preset name: its own shape, no overrides.
    if getattr(args, role):
      config[role].path, config[role].overrides = getattr(args, role), type(config[role])()
  for flag, keys in _FLAG_KEYS.items():
    if getattr(args, flag):
      for key in keys:
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
          node = node[name]
        node[leaf] = getattr(args, flag)
  if args.no_remat:
    config.loss.remat = False


def main(argv: Sequence[str] | None = None) -> list[Report]:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a[len("--config."):] for a in argv if a.startswith("--config.")]
  args = _parser().parse_args([a for a in argv if not a.startswith("--config.")])
  reports = []
  try:
    if args.config:
      config = load_config(args.config, overrides)
      _apply_flags(config, args)
      for mesh in args.mesh or [config.mesh]:
        reports.append(plan_experiment(config, mesh, num_devices=args.num_devices))
    else:
      if overrides:
        raise PlanError("--config.KEY=VALUE needs --config=FILE.")
      a = {k: (getattr(args, k) if getattr(args, k) is not None else v)
           for k, v in _DEFAULTS.items()}
      student = get_config(a["student"], dtype=a["dtype"])
      teacher = get_config(a["teacher"], dtype=a["dtype"], param_dtype=a["param_dtype"])
      for mesh in args.mesh or [a["mesh"]]:
        reports.append(plan(student, teacher, mesh, a["batch"],
                            a["prompt_len"] + a["max_new_tokens"], num_devices=args.num_devices,
                            student_rules=a["student_rules"], teacher_rules=a["teacher_rules"],
                            chunk_size=a["chunk_size"], remat=not args.no_remat))
  except (PlanError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  for report in reports:
    print(report.table(), end="\n\n")
  return reports
