"""The driver's jitted functions as `Program`s: each lowered the way the driver calls it."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from skd_jax import sharding
from skd_jax.compile.costs import logits_costs, rollout_costs, train_costs
from skd_jax.compile.setup import Setup, abstract, batch_inputs
from skd_jax.compile.topology import CompileError
from skd_jax.models.model import Model, params_logits

# The `plan.Report.phase_peaks()` figure that estimates each function's run peak.
PLANNER_PHASES = {
    "train_step": "train",
    "skd_rollout": "sampling",
    "student_rollout": "student_sampling",
    "eval_decode": "eval_decode",
    "teacher_logits": "teacher_scoring",
    "student_logits": "student_scoring",
}


@dataclasses.dataclass
class Program:
  """One jitted function of the driver, ready to lower."""
  name: str
  lower: Callable[[], Any]          # () -> jax.stages.Lowered (called under the mesh)
  args: Any                         # its arguments (ShapeDtypeStructs)
  resident: Any                     # driver arrays held meanwhile that are NOT arguments
  flops: float                      # analytic, per chip
  bytes_accessed: float             # analytic, per chip
  tokens: int = 0                   # tokens generated (rollouts), whole batch
  planner_phase: str | None = None  # the `plan.Report.phase_peaks()` figure estimating it


def _train_program(setup: Setup) -> Program:
  from skd_jax.train import methods  # pylint: disable=import-outside-toplevel
  from skd_jax.train import step as step_lib  # pylint: disable=import-outside-toplevel
  b, length = setup.batch_size, setup.train_length
  batch = batch_inputs(setup, b, {"tokens": ((b, length), jnp.int32),
                            "loss_mask": ((b, length), jnp.bool_)})
  sft = methods.METHODS[setup.config.method].objective == "sft"
  if sft:
    args = (setup.state, batch)
    lower = lambda: step_lib.sft_step.lower(*args, student_cfg=setup.student_cfg,
                                            loss_cfg=setup.loss_cfg)
    resident = (setup.teacher_params, setup.initial_student)
  else:
    args = (setup.state, setup.teacher_params, batch)
    lower = lambda: step_lib.train_step.lower(
        *args, student_cfg=setup.student_cfg, teacher_cfg=setup.teacher_cfg,
        loss_cfg=setup.loss_cfg)
    resident = (setup.initial_student,)
  flops, nbytes = train_costs(setup, sft)
  return Program("train_step", lower, args, resident, flops, nbytes,
                 planner_phase=PLANNER_PHASES["train_step"])


def _sampler_config(scfg):
  """The TPU choice of `decode_layout="auto"` (the host compiling is a CPU)."""
  return scfg.replace(decode_layout="stacked")


def _rollout_program(setup: Setup, name: str, scfg, rows: int, acceptance: float) -> Program:
  from skd_jax.sampling import api  # pylint: disable=import-outside-toplevel
  scfg = _sampler_config(scfg)
  use_student, use_teacher = scfg.method != "teacher", scfg.method != "student"
  s_model = Model(setup.student_cfg, None) if use_student else None
  t_model = Model(setup.teacher_cfg, None) if use_teacher else None
  prompts = [[0] * int(setup.config.task.max_prompt_tokens)] * rows
  try:
    static, dyn, tokens, lengths = api.prepare(s_model, t_model, prompts, scfg)
  except ValueError as e:
    raise CompileError(f"{name}: {e}") from None
  spec = sharding.batch_sharding(setup.mesh, rows)
  tokens = jax.ShapeDtypeStruct(tokens.shape, jnp.int32, sharding=spec)
  lengths = jax.ShapeDtypeStruct(lengths.shape, jnp.int32, sharding=spec)
  keys = jax.ShapeDtypeStruct((rows, 2), jnp.uint32, sharding=spec)   # PRNGKey rows
  dyn = abstract(dyn, sharding.replicated(setup.mesh))
  s_params = setup.state.params if use_student else None
  t_params = setup.teacher_params if use_teacher else None
  s_cfg, t_cfg = setup.student_cfg, setup.teacher_cfg

  def run(sp, tp, tok, ln, ks, dy):
    return api.run_rollout(Model(s_cfg, sp) if sp is not None else None,
                           Model(t_cfg, tp) if tp is not None else None, tok, ln, ks, dy, static)

  args = (s_params, t_params, tokens, lengths, keys, dyn)
  lower = lambda: jax.jit(run).lower(*args)
  resident = [setup.initial_student, setup.state.opt_state]
  if not use_teacher:
    resident.append(setup.teacher_params)
  flops, nbytes, new_tokens = rollout_costs(setup, static, rows, tokens.shape[1], acceptance,
                                            s_params, t_params)
  return Program(name, lower, args, tuple(resident), flops, nbytes, tokens=new_tokens,
                 planner_phase=PLANNER_PHASES[name])


def _logits_program(setup: Setup, role: str) -> Program:
  cfg = setup.teacher_cfg if role == "teacher" else setup.student_cfg
  params = setup.teacher_params if role == "teacher" else setup.state.params
  rows, length = setup.eval_batch_size, setup.train_length
  # The driver passes the tokens replicated (`top1_agreement` in train/evaluators.py).
  tokens = jax.ShapeDtypeStruct((rows, length), jnp.int32,
                                sharding=sharding.replicated(setup.mesh))
  args = (params, tokens)
  lower = lambda: params_logits.lower(*args, cfg=cfg)
  resident = [setup.initial_student]
  resident += ([setup.state] if role == "teacher"
               else [setup.state.opt_state, setup.teacher_params])
  flops, nbytes = logits_costs(setup, cfg, params, role, rows, length)
  return Program(f"{role}_logits", lower, args, tuple(resident), flops, nbytes,
                 planner_phase=PLANNER_PHASES[f"{role}_logits"])


def programs(setup: Setup, acceptance: float = 1.0) -> list[Program]:
  """The driver's jitted functions for this config (see `skd_jax.compile`).

  The rollouts' SamplerConfigs are the driver's own (`train.rollout.rollout_sampler_config`,
  `eval_sampler_config`), given the models' EOS ids as stop ids and no stop
  sequences (both come from the tokenizer, which is not loaded here).
  """
  import types  # pylint: disable=import-outside-toplevel
  from skd_jax.train import methods  # pylint: disable=import-outside-toplevel
  from skd_jax.train import rollout  # pylint: disable=import-outside-toplevel
  env = types.SimpleNamespace(config=setup.config, stop_ids=setup.stop_ids, stop_sequences=())
  return [
      _train_program(setup),
      _rollout_program(setup, "skd_rollout", rollout.rollout_sampler_config(env, methods.SKD),
                       setup.batch_size, acceptance),
      _rollout_program(setup, "student_rollout",
                       rollout.rollout_sampler_config(env, methods.STUDENT), setup.batch_size, 1.0),
      _rollout_program(setup, "eval_decode", rollout.eval_sampler_config(env),
                       setup.eval_batch_size, 1.0),
      _logits_program(setup, "teacher"),
      _logits_program(setup, "student"),
  ]
