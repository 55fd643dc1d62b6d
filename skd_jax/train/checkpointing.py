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
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as managers


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
        enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data"))

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
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      data=ocp.args.JsonRestore()))
    return restored.state, dict(restored.data)

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
