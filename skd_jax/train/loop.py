"""The experiment driver: config -> models, data, training, evaluation, export.

    run(config, workdir, mode="train")   # also "eval" and "sample"

The rooms: `run_setup` (the typed setup: tokenizer, task, models on the mesh),
`rollout` (sampler configs, rollouts, the training batch), `training` (state,
checkpoint params, the jitted step), `evaluators` (declared in
`config.eval.evaluators`). This module is the loop, which only asks what is
due after each step (a log line, an evaluation, a checkpoint), and the modes.

Everything that depends on randomness is a function of (seed, step), and the
data iterator position is checkpointed with the state, so a run resumed from
its checkpoint at step k ends exactly as the uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import numpy as np

from skd_jax import distributed
from skd_jax.data import pipeline
from skd_jax.models import hf
from skd_jax.models.model import Model
from skd_jax.train import acceptance_control
from skd_jax.train import interrupt
from skd_jax.train import logger as logger_lib
from skd_jax.train import methods
from skd_jax.train import rollout
from skd_jax.train import training
from skd_jax.train import workdir as workdir_lib
from skd_jax.train.checkpointing import Checkpointer
from skd_jax.train.evaluators import Evaluation
from skd_jax.train.logger import RunLogger
from skd_jax.train.run_setup import RunSetup, setup
from skd_jax.train.validate import ConfigError

MODES = ("train", "eval", "sample")


@dataclasses.dataclass(frozen=True)
class Due:
  """What happens after step `done` of `total` (intervals of 0 = never)."""
  log: bool
  evaluate: bool
  checkpoint: bool

  @classmethod
  def at(cls, done: int, total: int, config) -> "Due":
    """The last step logs and evaluates; every evaluation is checkpointed."""
    last = done == total
    evaluate = last or _every(done, config.eval.every_steps)
    return cls(log=last or _every(done, config.log_every_steps), evaluate=evaluate,
               checkpoint=evaluate or _every(done, config.checkpoint.every_steps))


def _every(done: int, interval) -> bool:
  return bool(int(interval)) and done % int(interval) == 0


def final_limit(config) -> int:
  """Examples of the final evaluation: `eval.final_limit`, 0 = the whole split
  (the paper scores whole test sets; `eval.limit` bounds periodic evaluations)."""
  return int(config.eval.get("final_limit", 0))


def _window_means(window: dict[str, list[float]]) -> dict[str, float]:
  return {k: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan")
          for k, v in window.items()}


def _ranked(metrics: dict | None, name: str) -> dict | None:
  """Metrics for the best-checkpoint ranking (None when the metric is missing)."""
  if not metrics or not np.isfinite(metrics.get(name, float("nan"))):
    return None
  return metrics


def _one_step(run: RunSetup, state, data_batch, step: int, total_steps: int, tracker=None):
  """(new state, logged values) of one training step; `tracker` (an
  `acceptance_control.Tracker` or None) sets SKD's K and logs it."""
  tic = time.perf_counter()
  batch, stats = rollout.make_train_batch(run, state, data_batch, step, total_steps,
                                          top_k=tracker.k_for_step() if tracker else None)
  state, metrics = training.apply_step(run, state, batch)
  values = {name: training.mean_of(pair) for name, pair in metrics.items()}
  values.update(stats)
  if tracker is not None:   # the K this step used; the next step's K from its rate
    values.update(tracker.observe(stats["replacement_rate"]))
  values["step_seconds"] = time.perf_counter() - tic
  values["tokens_per_sec"] = stats["completion_tokens"] / values["step_seconds"]
  return state, values


def train(run: RunSetup) -> dict:
  """Trains, evaluates, checkpoints, exports; returns the final eval metrics."""
  config = run.config
  main = jax.process_index() == 0
  evaluate = Evaluation(run)
  periodic_limit = int(config.eval.limit) or None
  dataset, steps_per_epoch = training.train_dataset(run)
  total_steps = training.total_steps_of(config, steps_per_epoch)
  state = training.create_state(run, total_steps)
  ckpt = Checkpointer(os.path.join(run.workdir, "checkpoints"),
                      max_to_keep=int(config.checkpoint.max_to_keep),
                      best_metric=run.eval_metric if config.checkpoint.keep_best else None)
  iterator = iter(dataset)
  latest = ckpt.latest_step()
  if latest is not None:
    state, data_state = ckpt.restore(latest, state)
    iterator.set_state(data_state)
  elif config.checkpoint.restore_from:
    state = training.restore_params_from(run, state, config.checkpoint.restore_from)
  start = int(distributed.to_host(state.step))
  tracker = acceptance_control.tracker_of(run, restore_step=latest)
  if latest is not None and main:   # Rows a stopped run logged past its checkpoint.
    logger_lib.drop_rows_after(run.workdir, latest, rerun=lambda row: latest == total_steps and (
        row.get("kind"), row.get("split")) == ("eval", config.eval.final_split))
  logger = RunLogger(run.workdir, total_steps=total_steps, initial_step=start, enabled=main,
                     desc=f"{logger_lib.run_label(config)} train")
  if latest is not None:
    logger.message(f"resumed from step {latest} ({ckpt.directory})")
  window: dict[str, list[float]] = {}
  last_eval, done = None, start
  agree = distributed.across_processes if jax.process_count() > 1 else None
  with interrupt.StopBetweenSteps(agree) as stop:   # Ctrl-C / SIGTERM: stop between steps.
    for step in range(start, total_steps):
      if stop.should_stop():
        break
      state, values = _one_step(run, state, next(iterator), step, total_steps, tracker)
      for name, value in values.items():
        window.setdefault(name, []).append(value)
      done = step + 1
      due = Due.at(done, total_steps, config)
      logger.advance(1, {"loss": values["loss"], "tok/s": values["tokens_per_sec"],
                         "repl": values["replacement_rate"]})
      if due.log:
        logger.train(done, _window_means(window))
        window = {}
      eval_metrics = None
      if due.evaluate:
        eval_metrics = last_eval = evaluate(state.params, done, config.eval.split, periodic_limit)
        logger.eval(done, config.eval.split, eval_metrics)
      if due.checkpoint:
        ckpt.save(done, state, iterator.get_state(), _ranked(eval_metrics, run.eval_metric))
        if tracker is not None:
          tracker.save(done)
    ckpt.wait()   # The save in flight finishes: no temporary checkpoint directories.
  saved = ckpt.latest_step()
  ckpt.close()
  if stop.requested is not None:
    logger.close()
    raise interrupt.Interrupted(done, saved, int(config.checkpoint.every_steps) or None)
  final, final_step = {}, int(distributed.to_host(state.step))
  if config.eval.final_split:
    final = evaluate(state.params, final_step, config.eval.final_split,
                     final_limit(config) or None)
    logger.eval(final_step, config.eval.final_split, final)
    write_result(run, final, final_step)
  if config.export:
    _export(run, state.params, logger)
  logger.close()
  if main and final:
    print(logger_lib.format_scores(logger_lib.run_label(config), config.eval.final_split,
                                   final_step, final), flush=True)
  return {"final": final, "last_eval": last_eval, "step": final_step}


def _export(run: RunSetup, params, logger: RunLogger) -> None:
  host_params = distributed.to_host(params)   # A collective: every process gathers.
  if jax.process_index() == 0:
    export_dir = os.path.join(run.workdir, "export")
    hf.export_hf(Model(run.student.config, host_params), export_dir, tokenizer=run.tokenizer)
    role = "teacher" if logger_lib.run_label(run.config) == "teacher" else "student"
    logger.message(f"exported the {role} to {export_dir}")


def write_result(run: RunSetup, final: dict, step: int) -> None:
  """WORKDIR/result.json: {"final": {metric: value, ..., "num_examples": N}, "step": S}."""
  if jax.process_index() != 0:
    return
  with open(os.path.join(run.workdir, "result.json"), "w", encoding="utf-8") as f:
    json.dump({"final": {k: float(v) if k != "num_examples" else int(v)
                         for k, v in final.items()},
               "split": run.config.eval.final_split, "step": int(step),
               "fingerprint": workdir_lib.digest(workdir_lib.fingerprint(run.config))},
              f, indent=2)


def evaluate_mode(run: RunSetup) -> dict:
  """Scores the trained student (`training.trained_params`) on `eval.final_split`."""
  params, step = training.trained_params(run)
  scores = Evaluation(run)(params, step, run.config.eval.final_split,
                           final_limit(run.config) or None)
  write_result(run, scores, step)
  if jax.process_index() == 0:
    print(logger_lib.format_scores(logger_lib.run_label(run.config),
                                   run.config.eval.final_split, step, scores), flush=True)
  return scores


def sample_mode(run: RunSetup) -> list[dict]:
  """Prints a few completions of validation prompts with the method's sampler."""
  params, step = training.trained_params(run)
  source = methods.METHODS[run.config.method].sample_source
  records = pipeline.encode_split(run.task, run.tokenizer, run.config.eval.split,
                                  limit=int(run.config.num_sample_prompts)).examples
  prompts = [list(e.prompt_ids) for e in records]
  out = rollout.sample_rows(run, params, source, prompts, methods.sample_key(
      jax.random.PRNGKey(int(run.config.seed)), step, source))
  rows = []
  for i, example in enumerate(records):
    start, end = int(out.prompt_length[i]), int(out.length[i])
    completion = out.tokens[i, start:end].tolist()
    row = {"prompt": example.prompt_text, "sampler": methods.SOURCE_NAMES[source],
           "completion": run.tokenizer.decode(completion),
           "teacher_tokens": int(np.sum(out.from_teacher[i, start:end])),
           "tokens": len(completion)}
    rows.append(row)
    print(json.dumps(row, ensure_ascii=False), flush=True)
  return rows


def _log_devices(config, workdir: str, mode: str) -> None:
  """One header per run; multi-process runs also print the line the launch
  runbooks grep for, on every host."""
  if jax.process_count() > 1:
    print(f"jax.process_count()={jax.process_count()} devices={jax.device_count()} "
          f"local_devices={jax.local_device_count()} process_index={jax.process_index()}",
          flush=True)
  if jax.process_index() == 0:
    print(logger_lib.header(config, workdir, mode), flush=True)


def run(config, workdir: str | None = None, mode: str = "train") -> Any:
  """Runs `mode` ("train" | "eval" | "sample") of the experiment `config`.

  Raises:
    ConfigError: a bad config (validated before anything compiles), or
      `workdir.WorkdirMismatch`: the workdir holds another run (docs/DRIVER.md).
    interrupt.Interrupted: SIGINT / SIGTERM stopped training between steps.
  """
  if mode not in MODES:
    raise ConfigError(f"unknown mode {mode!r}; use one of {list(MODES)}.")
  workdir = os.path.abspath(workdir or workdir_lib.default_workdir(config))
  fingerprint = workdir_lib.check(config, workdir, mode)   # Refuses another run's workdir.
  _log_devices(config, workdir, mode)
  run_ = setup(config, workdir)
  workdir_lib.record(run_.workdir, config, fingerprint, mode)   # Only after the check.
  return {"train": train, "eval": evaluate_mode, "sample": sample_mode}[mode](run_)
