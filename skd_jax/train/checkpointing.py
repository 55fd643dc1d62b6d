"""Orbax checkpoints of the train state AND the data iterator position.

    ckpt = Checkpointer(workdir + "/checkpoints", max_to_keep=3, best_metric="bleu")
    ckpt.save(step, state, iterator.get_state(), metrics)   # asynchronous
    state, data_state = ckpt.restore(ckpt.latest_step(), abstract_state)
    iterator.set_state(data_state)

A checkpoint at step k holds what a run needs to continue exactly as if it had
never stopped: the `TrainState` after k updates (params, optimizer state, step,
rng) and the grain iterator state after k batches (a small JSON dict). Saves
run in the background (orbax async); a process killed mid-save leaves a
temporary directory that orbax ignores, so the latest *finished* checkpoint
is restored.

Kept: the latest `max_to_keep` checkpoints plus, with `best_metric`, the best
one by that eval metric (`best_mode` "max" or "min").

Temporary directories of saves a killed process left behind
(``<step>.orbax-checkpoint-tmp-*``) are deleted when the manager opens. A
checkpoint of another model (other layer count, width, vocabulary) is refused
before orbax reads it: `CheckpointMismatch` says "this workdir holds a
different model (num_layers 1 vs 2)".
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as managers

from skd_jax.train.validate import ConfigError


class CheckpointMismatch(ConfigError):
  """The checkpoint holds another model than the one being restored into it."""


# (params leaf, axis) -> the ModelConfig field that axis measures (stacked layers).
_FIELDS = {("layers", None, 0): "num_layers", ("embed", 0): "vocab_size",
           ("embed", 1): "hidden_size", ("layers", "up", -1): "intermediate_size",
           ("layers", "q", 2): "num_heads", ("layers", "k", 2): "num_kv_heads",
           ("layers", "q", 3): "head_dim"}


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  """{"a/b": shape} of a pytree's array leaves (metadata or arrays)."""
  flat = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, "shape") and not isinstance(x, dict))[0]
  out = {}
  for path, leaf in flat:
    if hasattr(leaf, "shape"):
      out["/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                   for k in path)] = tuple(int(d) for d in leaf.shape)
  return out


def describe_model_difference(saved, expected) -> str:
  """"num_layers 1 vs 2, hidden_size 32 vs 64" (saved vs expected), else the
  first differing arrays; "" when the param shapes agree."""
  a = {k[7:]: v for k, v in _shapes(saved).items() if k.startswith("params/")}
  b = {k[7:]: v for k, v in _shapes(expected).items() if k.startswith("params/")}
  facts = {}
  for key, field in _FIELDS.items():
    names = [n for n in set(a) & set(b) if n.split("/")[0] == key[0] and
             (len(key) == 2 or key[1] is None or n.split("/")[-1] == key[1])]
    axis = key[-1]
    for name in sorted(names):
      sa, sb = a[name], b[name]
      if len(sa) == len(sb) and -len(sa) <= axis < len(sa) and sa[axis] != sb[axis]:
        facts.setdefault(field, f"{field} {sa[axis]} vs {sb[axis]}")
  if facts:
    return ", ".join(facts.values())
  parts = [f"{n} missing" for n in sorted(set(b) - set(a))[:3]]
  parts += [f"{n} unexpected" for n in sorted(set(a) - set(b))[:3]]
  parts += [f"{n} {a[n]} vs {b[n]}" for n in sorted(set(a) & set(b)) if a[n] != b[n]][:3]
  return ", ".join(parts)


def _preservation(max_to_keep: int, best_metric: str | None, best_mode: str):
  latest = managers.LatestN(n=max_to_keep)
  if not best_metric:
    return latest
  best = managers.BestN(get_metric_fn=lambda metrics: float(metrics[best_metric]),
                        reverse=best_mode == "min", n=1,
                        keep_checkpoints_without_metrics=False)
  return managers.AnyPreservationPolicy([latest, best])


class Checkpointer:
  """A thin wrapper of `ocp.CheckpointManager` with two items: state and data."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, best_metric: str | None = None,
               best_mode: str = "max", async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        preservation_policy=_preservation(max_to_keep, best_metric, best_mode),
        enable_async_checkpointing=async_save, create=True,
        cleanup_tmp_directories=True)   # A killed save's leftovers.
    # Handlers named up front: `item_metadata` of an existing checkpoint then
    # works before any save or restore (the model check in `restore`).
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def best_step(self) -> int | None:
    return self._manager.best_step()

  def save(self, step: int, state: Any, data_state: dict, metrics: dict | None = None) -> bool:
    """Starts an asynchronous save of `state` and `data_state` as step `step`.

    Args:
      step: updates applied so far (``state.step``).
      state: the TrainState (its array leaves are saved; static fields are not).
      data_state: the training iterator's `get_state()` after `step` batches.
      metrics: eval metrics of this step (ranks the best checkpoint), or None.
    """
    metrics = None if metrics is None else {k: float(v) for k, v in metrics.items()
                                            if isinstance(v, (int, float))}
    return self._manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      data=ocp.args.JsonSave(data_state)),
        metrics=metrics, force=True)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """(state, data_state) of `step`; arrays placed like `abstract_state`.

    Args:
      step: a saved step.
      abstract_state: a TrainState of arrays or `jax.ShapeDtypeStruct`s with
        shardings (e.g. a freshly created state): gives structure, dtypes,
        shardings and the static fields (optimizer, schedule).
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    self.check_model(step, abstract)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      data=ocp.args.JsonRestore()))
    return restored.state, dict(restored.data)

  def check_model(self, step: int, abstract_state: Any) -> None:
    """Raises CheckpointMismatch when `step` holds params of other shapes."""
    try:
      saved = self._manager.item_metadata(step)["state"]
    except Exception:  # pylint: disable=broad-except  # No metadata: orbax decides.
      return
    if saved is None:
      return
    difference = describe_model_difference(
        saved, {"params": getattr(abstract_state, "params", abstract_state)})
    if difference:
      raise CheckpointMismatch(
          f"this workdir holds a different model ({difference}) in "
          f"{os.path.join(self.directory, str(step))}; use a new --workdir, or --overwrite "
          "to delete it and start over.")

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
