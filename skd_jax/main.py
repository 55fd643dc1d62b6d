r"""Experiment driver.

    python -m skd_jax.main --config=configs/gemma_translate.py
    python -m skd_jax.main --config=configs/gemma_translate.py:tiny \
        --config.method=on_policy --workdir=/tmp/run --mode=train|eval|sample [--overwrite]

Before anything loads, `train.preflight` checks every input (models, tokenizer,
data files, workdir, mesh, lengths) and prints every problem with its fix; a
bad config, a typo'd ``--config.KEY`` or a workdir holding another run prints
``error: <message>`` (no traceback) and exits with status 2. Ctrl-C / SIGTERM
stop between steps with one line and status 130 (`train.interrupt`).
See docs/DRIVER.md.
"""
import difflib
import importlib.util
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from skd_jax import distributed
from skd_jax.experiments import compare
from skd_jax.train import interrupt
from skd_jax.train import loop
from skd_jax.train import preflight
from skd_jax.train import workdir as workdir_lib
from skd_jax.train.validate import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default: config.workdir, "
                               "else /tmp/skd_jax/<config.name>).")
_MODE = flags.DEFINE_enum("mode", "train", list(loop.MODES), "What to run.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete WORKDIR (a skd_jax workdir) "
                               "first and start over, even if it holds another run.")


def _fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


# ----------------------------------------------------------------------------
# Flags: a typo'd --config.KEY is one line with the nearest key.
# ----------------------------------------------------------------------------


def _config_keys(argv: list[str]) -> list[str] | None:
  """Dotted keys of the config named by --config=FILE[:arg] (None if unreadable)."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None:
    return None
  path, _, arg = spec.partition(":")
  try:
    module_spec = importlib.util.spec_from_file_location("_skd_config_for_keys", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  except Exception:  # pylint: disable=broad-except  # absl's own message then.
    return None
  return sorted(workdir_lib.flatten(config.to_dict()))


def unknown_key_message(argv: list[str]) -> str | None:
  """"--config.sampler.topk: no such config key; did you mean --config.sampler.top_k?"."""
  keys = _config_keys(argv)
  if keys is None:
    return None
  prefixes = {k.rsplit(".", i)[0] for k in keys for i in range(k.count(".") + 1)}
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    key = arg[len("--config."):].split("=", 1)[0]
    if key in prefixes:
      continue
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = (f"did you mean --config.{close[0]}?" if close else
            "see configs/base.py for the keys (every knob is commented).")
    return f"--config.{key}: no such config key; {hint}"
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with one-line errors (exit 2) instead of tracebacks."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(unknown_key_message(argv) or str(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:   # ml_collections' overrides.
    _fail(unknown_key_message(argv) or str(e).strip("'\"").replace("\\n", " "))
  return []


# ----------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------


def _checks(config, workdir: str, mode: str, overwrite: bool) -> list:
  """Preflight problems of the run (or of every run of a comparison)."""
  if "compare" in config and mode == "train":
    return [p for run_config, run_dir, run_mode, skip in compare.planned_runs(config, workdir)
            for p in preflight.check(run_config, run_dir, run_mode, overwrite=overwrite,
                                     skip_roles=skip, root=workdir)]
  return preflight.check(config, workdir, mode, overwrite=overwrite)


def _flag(holder, default):
  """A flag's value, or `default` when flags were not parsed (main called from Python)."""
  try:
    return holder.value
  except flags.UnparsedFlagAccessError:
    return default


def _overwrite(workdir: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0 and workdir_lib.clear(workdir):
    print(f"--overwrite: deleted {workdir}", file=sys.stderr, flush=True)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("skd_jax overwrite")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  # First JAX call: joins the other processes of a TPU pod / SLURM / launch script run
  # (a no-op for one process).
  try:
    distributed.initialize_distributed()
  except ValueError as e:
    _fail(str(e))
  config, mode, overwrite = _CONFIG.value, _MODE.value, _flag(_OVERWRITE, False)
  workdir = os.path.abspath(_WORKDIR.value or workdir_lib.default_workdir(config))
  try:
    preflight.raise_if_any(_checks(config, workdir, mode, overwrite))
    if overwrite:
      _overwrite(workdir)
    if "compare" in config and mode == "train":   # e.g. configs/demo.py
      compare.run_comparison(config, workdir)
    else:
      loop.run(config, workdir, mode)
  except ConfigError as e:
    _fail(str(e))
  except interrupt.Interrupted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(interrupt.EXIT_CODE)
  except KeyboardInterrupt:
    print("interrupted (outside the training steps); the checkpoints saved so far are "
          "intact; run the same command to resume.", file=sys.stderr, flush=True)
    os._exit(interrupt.EXIT_CODE)   # pylint: disable=protected-access  # No thread teardown noise.


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  interrupt.terminate_as_interrupt()   # SIGTERM outside the steps: one line, like Ctrl-C.
  app.run(main, flags_parser=parse_flags)
