"""Regenerates the offline tasks shipped in `skd_jax/data/offline/`.

    python scripts/make_offline_tasks.py [--out_dir=DIR] [--seed=1234] [--tasks=a,b]

The generation itself lives in `skd_jax.data.offline_tasks.write_offline_tasks`
(importable); this file is only the command line.
"""
import argparse
import os

from skd_jax.data import offline_tasks

_DEFAULT_OUT = os.path.join(os.path.dirname(offline_tasks.__file__), "offline")


def make_offline_tasks(out_dir: str = _DEFAULT_OUT,
                       seed: int = offline_tasks.DEFAULT_SEED,
                       tasks=None) -> list[str]:
  """Writes every offline task; same seed -> same bytes. Returns the paths."""
  return offline_tasks.write_offline_tasks(out_dir, seed=seed, tasks=tasks)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--out_dir", default=_DEFAULT_OUT)
  parser.add_argument("--seed", type=int, default=offline_tasks.DEFAULT_SEED)
  parser.add_argument("--tasks", default=None,
                      help="comma-separated subset, e.g. arithmetic,numbers_en_fr")
  args = parser.parse_args()
  tasks = args.tasks.split(",") if args.tasks else None
  for path in make_offline_tasks(args.out_dir, args.seed, tasks):
    print(f"{os.path.getsize(path):8d}  {path}")


if __name__ == "__main__":
  main()
