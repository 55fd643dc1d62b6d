r"""Experiment driver.

    python -m skd_jax.main --config=configs/gemma_translate.py
    python -m skd_jax.main --config=configs/gemma_translate.py:tiny \
        --config.method=on_policy --workdir=/tmp/run --mode=train|eval|sample

A bad config prints ``error: <message>`` (no traceback) and exits with status 2.
See docs/DRIVER.md.
"""
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from skd_jax import distributed
from skd_jax.experiments import compare
from skd_jax.train import loop
from skd_jax.train.validate import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default: config.workdir, "
                               "else /tmp/skd_jax/<config.name>).")
_MODE = flags.DEFINE_enum("mode", "train", list(loop.MODES), "What to run.")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  # First JAX call: joins the other processes of a TPU pod / SLURM / launch script run
  # (a no-op for one process).
  try:
    distributed.initialize_distributed()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  config = _CONFIG.value
  try:
    if "compare" in config and _MODE.value == "train":   # e.g. configs/demo.py
      compare.run_comparison(config, _WORKDIR.value)
    else:
      loop.run(config, _WORKDIR.value, _MODE.value)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
