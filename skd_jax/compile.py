r"""Compiles the driver's jitted functions for a TPU topology, on any host.

    python -m skd_jax.compile --config=configs/gemma_translate.py --topology=v5e:2x2 \
        [--mesh=data:1,fsdp:4,tensor:1] [--batch_size=8] [--json=out.json] \
        [--config.KEY=VALUE ...]

libtpu's compiler runs without a TPU: `jax.experimental.topologies` describes
the chips of a topology ("v5e:2x2", "v4:2x2x1", ...), the run's mesh is laid
on those devices, and every function the driver jits is lowered on abstract
inputs (`jax.ShapeDtypeStruct`s carrying the driver's shardings; no weights are
read or allocated) and compiled for that topology. What comes back is XLA's
own per-chip memory plan (`memory_analysis()`) and cost (`cost_analysis()`).

Functions (each built by the library call the driver makes, from the config):

* ``train_step``: `step.train_step` (or `step.sft_step` for "sft") on the
  longest training batch, [batch_size, max_prompt_tokens + max_new_tokens].
* ``skd_rollout``, ``student_rollout``: `sampling.api.run_rollout` with the
  driver's SamplerConfig (`train.loop.rollout_sampler_config`) on batch_size
  prompts of the largest prompt bucket.
* ``eval_decode``: the greedy student rollout of the evaluations
  (`train.loop.eval_sampler_config`), on eval.batch_size prompts.
* ``teacher_logits``, ``student_logits``: `Model.logits`, the teacher-forced
  scoring of the top-1 agreement, on eval.batch_size rows.

Memory (bytes per chip): ``peak = argument + output + temp - alias`` is the
program's own peak; the driver holds other arrays meanwhile (e.g. the optimizer
state during a rollout, the initial student weights throughout), so
``resident_bytes`` adds those and ``run_peak`` is the largest sum: the figure
that must fit the chip's HBM and that `skd_jax.plan` estimates.

Time: ``roofline_seconds = max(flops / peak FLOP/s, bytes / HBM bandwidth)``
with ANALYTIC counts (matmuls, attention as implemented over the full cache,
weights and caches read per decode step); XLA's ``cost_analysis()`` is
reported beside them as ``xla_flops`` / ``xla_bytes_accessed`` but counts the
body of a `lax.scan` / `while_loop` once, not once per trip (layers, chunks,
decode rounds), so it undercounts by the trip counts. Rollouts assume every
draft accepted (`--acceptance` changes that); tokens/s counts the whole batch.
Nothing here measures ICI traffic, the host input pipeline or kernel speed.

Errors (exit 2, one line): an unknown topology name, a mesh that does not
match its devices, a batch not divisible by the data-parallel axes, libtpu not
installed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from skd_jax import plan as plan_lib
from skd_jax import sharding
from skd_jax.models import partitioning
from skd_jax.models import transformer
from skd_jax.models.config import ModelConfig
from skd_jax.models.model import Model, _logits as logits_fn

GiB = 2 ** 30
# The `plan.Report.phase_peaks()` figure that estimates each function's run peak.
PLANNER_PHASES = {
    "train_step": "train",
    "skd_rollout": "sampling",
    "student_rollout": "student_sampling",
    "eval_decode": "eval_decode",
    "teacher_logits": "teacher_scoring",
    "student_logits": "student_scoring",
}


class CompileError(ValueError):
  """A bad topology, mesh, batch or environment; the message alone is shown."""


# ----------------------------------------------------------------------------
# Chips
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Chip:
  """Published per-chip figures (Google Cloud TPU documentation)."""
  name: str
  hbm_gib: float          # HBM per chip.
  bf16_tflops: float      # Peak bf16 matmul throughput.
  hbm_gbps: float         # HBM bandwidth, GB/s (1e9 bytes).

  @property
  def hbm_bytes(self) -> int:
    return int(self.hbm_gib * GiB)


CHIPS: dict[str, Chip] = {
    "v4": Chip("TPU v4", 32, 275, 1228),
    "v5e": Chip("TPU v5e", 16, 197, 819),
    "v5p": Chip("TPU v5p", 95, 459, 2765),
    "v6e": Chip("TPU v6e", 32, 918, 1640),
}
# Chips whose two TensorCores JAX drives as one device ("megacore").
_MEGACORE = ("v4",)
TOPOLOGY_FORMS = "v5e:2x2, v5e:2x4, v6e:2x2 (2-D, v5e/v6e) or v4:2x2x1, v5p:2x2x1 (3-D, v4/v5p)"
_NAME = re.compile(r"^(v4|v5e|v5p|v6e):(\d+)x(\d+)(?:x(\d+))?$")


def libtpu_pip_line() -> str:
  return f'pip install "jax[tpu]=={jax.__version__}"'


def _prepare_libtpu_env() -> None:
  """Environment for loading libtpu on a host that has no TPU.

  * ALLOW_MULTIPLE_LIBTPU_LOAD: libtpu otherwise takes /tmp/libtpu_lockfile
    for the process's lifetime, and a second process that loads it (a driver
    run without JAX_PLATFORMS=cpu holds it too) fails with "Internal error when
    accessing libtpu multi-process lockfile". We only compile, so sharing is safe.
  * TPU_WORKER_HOSTNAMES=localhost (only without local TPU chips): silences
    libtpu's "unexpected worker hostname" error, logged when it finds no TPU VM
    metadata.
  """
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  if not any(os.path.exists(p) for p in ("/dev/accel0", "/dev/vfio/0")):
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")


def topology(name: str):
  """(devices, Chip) of a topology name such as "v5e:2x2" or "v4:2x2x1".

  Raises:
    CompileError: libtpu missing, or an unknown name (listing the valid forms).
  """
  m = _NAME.match(name)
  if not m:
    raise CompileError(f"--topology={name!r} is not a topology name; use "
                       f"<chip>:<AxB> or <chip>:<AxBxC> with chip in "
                       f"{sorted(CHIPS)}, e.g. {TOPOLOGY_FORMS} (names like 'v5e-8' "
                       "are not accepted).")
  try:
    import libtpu  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    raise CompileError(f"compiling for a TPU topology needs libtpu, which is not installed; "
                       f"{libtpu_pip_line()} (CPU-only runs are unaffected).") from None
  _prepare_libtpu_env()
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  kind = m.group(1)
  kwargs = {"chip_config_name": "megacore"} if kind in _MEGACORE else {}
  try:
    desc = topologies.get_topology_desc(topology_name=name, platform="tpu", **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CompileError(f"--topology={name!r}: libtpu rejected it ({first}); valid forms: "
                       f"{TOPOLOGY_FORMS}, with at least a 2x2 slice of chips.") from None
  return list(desc.devices), CHIPS[kind]


# ----------------------------------------------------------------------------
# Abstract inputs
# ----------------------------------------------------------------------------
def _abstract(shapes: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `shapes` carrying `shardings` (a tree, or one for all)."""
  if isinstance(shardings, jax.sharding.Sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings),
                        shapes)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      shapes, shardings)


def shard_bytes(tree: Any) -> int:
  """Bytes one chip holds of a tree of sharded ShapeDtypeStructs (the largest shard)."""
  total = 0
  for x in jax.tree.leaves(tree):
    shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
    total += math.prod(shape) * jnp.dtype(x.dtype).itemsize
  return total


@dataclasses.dataclass
class Setup:
  """Everything a compile needs, derived from the experiment config like the driver does."""
  config: Any
  mesh: jax.sharding.Mesh
  student_cfg: ModelConfig
  teacher_cfg: ModelConfig
  student_rules: Any
  teacher_rules: Any
  batch_size: int
  eval_batch_size: int
  train_length: int
  stop_ids: tuple[int, ...]
  loss_cfg: Any
  state: Any               # TrainState of ShapeDtypeStructs (fp32 master weights).
  teacher_params: Any
  initial_student: Any     # The loaded student weights the driver keeps (env.student).

  @property
  def axis_sizes(self) -> dict[str, int]:
    return sharding.mesh_axis_sizes(self.mesh)


def _loss_config(config) -> Any:
  """The LossConfig as `train.loop.setup` builds it."""
  from skd_jax.train import step as step_lib  # pylint: disable=import-outside-toplevel
  return step_lib.loss_config(
      config.loss, shared_vocab_size=int(config.sampler.get("shared_vocab_size", 0) or 0) or None)


def build_setup(config, devices: Sequence[Any]) -> Setup:
  """Validates `config` for these devices and builds the abstract driver state.

  Raises:
    CompileError: a mesh that does not match the devices, a batch the
      data-parallel axes do not divide, or any other config error.
  """
  from skd_jax.train import optim  # pylint: disable=import-outside-toplevel
  from skd_jax.train.state import TrainState  # pylint: disable=import-outside-toplevel
  from skd_jax.train.validate import (ConfigError, validate_config,  # pylint: disable=import-outside-toplevel
                                      validate_models)
  count = int(config.get("num_devices", 0) or 0) or len(devices)
  try:
    sharding.resolve_mesh_shape(config.mesh, count)
  except ValueError as e:
    raise CompileError(f"--mesh={config.mesh!r} does not fit the topology's {len(devices)} "
                       f"devices: {e}") from None
  try:
    validate_config(config, len(devices))
    student_cfg, teacher_cfg = plan_lib.model_configs(config)
    validate_models(config, student_cfg, teacher_cfg)
    loss_cfg = _loss_config(config)
  except (ConfigError, ValueError) as e:
    raise CompileError(str(e)) from None
  mesh = sharding.make_mesh(config.mesh, list(devices)[:count])
  s_rules, t_rules = config.student.rules, config.teacher.rules

  s_shapes = transformer.param_shapes(student_cfg)
  s_shardings = partitioning.param_shardings(student_cfg, mesh, s_rules)
  opt_cfg = optim.optimizer_config(config.optimizer, total_steps=1000)
  state = jax.eval_shape(lambda p: TrainState.create(p, jax.random.PRNGKey(0), opt_cfg),
                         s_shapes)
  state = _abstract(state, sharding.train_state_shardings(state, s_shardings, mesh))
  teacher = _abstract(transformer.param_shapes(teacher_cfg),
                      partitioning.param_shardings(teacher_cfg, mesh, t_rules))
  return Setup(
      config=config, mesh=mesh, student_cfg=student_cfg, teacher_cfg=teacher_cfg,
      student_rules=s_rules, teacher_rules=t_rules, batch_size=int(config.batch_size),
      eval_batch_size=int(config.eval.batch_size),
      train_length=int(config.task.max_prompt_tokens) + int(config.task.max_new_tokens),
      stop_ids=tuple(student_cfg.eos_ids), loss_cfg=loss_cfg, state=state,
      teacher_params=teacher, initial_student=_abstract(s_shapes, s_shardings))


def _batch(setup: Setup, rows: int, shapes: Mapping[str, tuple[tuple[int, ...], Any]]):
  spec = sharding.batch_sharding(setup.mesh, rows)
  return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=spec)
          for k, (shape, dtype) in shapes.items()}


# ----------------------------------------------------------------------------
# The functions
# ----------------------------------------------------------------------------
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
  batch = _batch(setup, b, {"tokens": ((b, length), jnp.int32),
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
  dyn = _abstract(dyn, sharding.replicated(setup.mesh))
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
  # The driver passes the tokens replicated (`agreement` in train/loop.py).
  tokens = jax.ShapeDtypeStruct((rows, length), jnp.int32,
                                sharding=sharding.replicated(setup.mesh))
  args = (params, tokens)
  lower = lambda: logits_fn.lower(*args, cfg=cfg)
  resident = [setup.initial_student]
  resident += ([setup.state] if role == "teacher"
               else [setup.state.opt_state, setup.teacher_params])
  flops, nbytes = logits_costs(setup, cfg, params, role, rows, length)
  return Program(f"{role}_logits", lower, args, tuple(resident), flops, nbytes,
                 planner_phase=PLANNER_PHASES[f"{role}_logits"])


def programs(setup: Setup, acceptance: float = 1.0) -> list[Program]:
  """The driver's jitted functions for this config (see the module docstring).

  The rollouts' SamplerConfigs are the driver's own (`train.loop.rollout_sampler_config`,
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


# ----------------------------------------------------------------------------
# Analytic costs (per chip)
# ----------------------------------------------------------------------------
def _layer_matmul_params(cfg: ModelConfig) -> int:
  d, f, h, k, hd = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                    cfg.num_kv_heads, cfg.head_dim)
  return cfg.num_layers * (d * hd * (h + 2 * k) + h * hd * d + 3 * d * f)


def forward_flops(cfg: ModelConfig, rows: int, new: int, keys: int, head: bool = True) -> float:
  """FLOPs of one forward over `new` tokens per row attending to `keys` slots
  (attention as implemented: every slot scored, masked ones included)."""
  matmul = 2 * rows * new * (_layer_matmul_params(cfg)
                             + (cfg.hidden_size * cfg.vocab_size if head else 0))
  attention = 4 * rows * new * keys * cfg.num_heads * cfg.head_dim * cfg.num_layers
  return float(matmul + attention)


def _work_split(setup: Setup, rows: int) -> int:
  """Chips that share a computation over `rows`: the batch split times tensor."""
  sizes = setup.axis_sizes
  batch = plan_lib._split("batch", rows, sizes, setup.student_rules,  # pylint: disable=protected-access
                          only=tuple(sizes))
  return batch * sizes.get("tensor", 1)


def _read_bytes(cfg: ModelConfig, params: Any, setup: Setup, rules, loop: bool = False) -> float:
  """HBM bytes one chip reads for one pass over a model's weights: the weights
  gathered over data/fsdp, i.e. split over tensor only (as the rule table
  splits them: a dimension tensor does not divide stays whole). In the dtype
  they are passed, or inside a loop (`loop`) in the compute dtype: XLA hoists
  the cast of loop-invariant weights out of the decode loop (the rollouts'
  temp bytes hold that compute-dtype copy of the fp32 student). An untied
  embedding is only looked up (a few rows), so only the LM head counts."""
  itemsize = jnp.dtype(jax.tree.leaves(params)[0].dtype).itemsize
  if loop:
    itemsize = min(itemsize, plan_lib.dtype_bytes(cfg.dtype))
  sizes = setup.axis_sizes
  n = (cfg.num_layers * plan_lib._gathered_elements(cfg, sizes, rules, layer=True)  # pylint: disable=protected-access
       + plan_lib._gathered_elements(cfg, sizes, rules, layer=False, head_only=True))  # pylint: disable=protected-access
  return float(n * itemsize)


def train_costs(setup: Setup, sft: bool) -> tuple[float, float]:
  """(FLOPs, HBM bytes) per chip of one train step (see the module docstring)."""
  s, t, b, length = setup.student_cfg, setup.teacher_cfg, setup.batch_size, setup.train_length
  remat = bool(setup.loss_cfg.remat)
  student_layers = forward_flops(s, b, length, length, head=False)
  student_head = 2.0 * b * length * s.hidden_size * s.vocab_size
  flops = (3 + remat) * student_layers + 3 * student_head
  if not sft:
    flops += forward_flops(t, b, length, length)
  split = _work_split(setup, b)
  master = plan_lib.param_bytes(s, setup.axis_sizes, setup.student_rules, "float32")
  # Optimizer: params, both moments read and written, gradient written and read twice.
  nbytes = 10 * master
  # Weight reads of the forward, the backward (and the remat forward), in the
  # compute dtype (the cast is hoisted out of the layer scan).
  nbytes += (2 + remat) * _read_bytes(s, setup.state.params, setup, setup.student_rules,
                                      loop=True)
  if not sft:
    nbytes += _read_bytes(t, setup.teacher_params, setup, setup.teacher_rules)
  return flops / split, float(nbytes)


def _expected_tokens_per_round(gamma: int, acceptance: float) -> float:
  """E[tokens kept per SKD round] when each draft passes with prob. `acceptance`:
  the accepted prefix plus the teacher's replacement, gamma when all pass."""
  if acceptance >= 1.0:
    return float(gamma)
  return (1.0 - acceptance ** gamma) / (1.0 - acceptance)


def rollout_costs(setup: Setup, static, rows: int, prompt_width: int, acceptance: float,
                  s_params, t_params) -> tuple[float, float, int]:
  """(FLOPs, HBM bytes) per chip of a whole rollout, and the tokens it generates."""
  new = static.max_new_tokens
  gamma = static.gamma
  slots = prompt_width + new + gamma
  sizes = setup.axis_sizes
  per_round = _expected_tokens_per_round(gamma, acceptance) if static.method == "skd" else 1.0
  rounds = math.ceil(new / per_round)
  flops, nbytes = 0.0, 0.0
  for cfg, params, rules, steps, width in (
      (setup.student_cfg, s_params, setup.student_rules, gamma, 1),
      (setup.teacher_cfg, t_params, setup.teacher_rules, 1, gamma)):
    if params is None:
      continue
    if static.method == "teacher":
      steps, width = 1, 1
    weights = _read_bytes(cfg, params, setup, rules, loop=True)
    cache = plan_lib.cache_bytes(cfg, rows, slots, sizes, rules)
    flops += forward_flops(cfg, rows, prompt_width, slots, head=False)   # prefill
    flops += rounds * steps * forward_flops(cfg, rows, width, slots)
    nbytes += weights + cache                                             # prefill
    nbytes += rounds * steps * (weights + cache)
  return flops / _work_split(setup, rows), nbytes, rows * new


def logits_costs(setup: Setup, cfg: ModelConfig, params, role: str, rows: int,
                 length: int) -> tuple[float, float]:
  """(FLOPs, HBM bytes) per chip of a teacher-forced forward with [rows, length, V] logits."""
  split = _work_split(setup, rows)
  logits = rows * length * cfg.vocab_size * 4 / split
  rules = setup.teacher_rules if role == "teacher" else setup.student_rules
  return (forward_flops(cfg, rows, length, length) / split,
          _read_bytes(cfg, params, setup, rules) + logits)


# ----------------------------------------------------------------------------
# Compiling
# ----------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
  """Per-chip figures of one compiled function."""
  name: str
  argument_bytes: int = 0
  output_bytes: int = 0
  temp_bytes: int = 0
  alias_bytes: int = 0
  resident_bytes: int = 0
  xla_flops: float = 0.0
  xla_bytes_accessed: float = 0.0
  flops: float = 0.0
  bytes_accessed: float = 0.0
  roofline_seconds: float = 0.0
  tokens_per_second: float | None = None
  compile_seconds: float = 0.0
  error: str | None = None          # the compiler's out-of-memory message
  # For a program that ran out of HBM: the topology its memory figures were
  # compiled on instead (same mesh, larger chips), or None (then they are the
  # arguments plus XLA's stated temporaries, an overestimate).
  measured_on: str | None = None

  @property
  def peak_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes + self.temp_bytes - self.alias_bytes

  @property
  def run_peak_bytes(self) -> int:
    return self.peak_bytes + self.resident_bytes

  def to_json(self) -> dict:
    out = dataclasses.asdict(self)
    out["peak_bytes"] = self.peak_bytes
    out["run_peak_bytes"] = self.run_peak_bytes
    return out


_GIB_UNITS = {"K": 2 ** -20, "M": 2 ** -10, "G": 1.0, "T": 2 ** 10}
_TEMPS = re.compile(r"required for HLO temporaries \(([\d.]+)([KMGT])\)")
_AVAILABLE = re.compile(r"available HBM \(([\d.]+)([KMGT])\)")


def _gib_in(pattern: re.Pattern, text: str) -> int | None:
  m = pattern.search(text)
  return None if m is None else int(float(m.group(1)) * _GIB_UNITS[m.group(2)] * GiB)


def usable_hbm_bytes(mesh: jax.sharding.Mesh) -> int | None:
  """HBM per chip that XLA may allocate on this topology (None if unknown).

  Found by compiling a program whose argument cannot fit: the compiler's
  out-of-memory message states what is available (e.g. v5e 15.75G of 16 GiB).
  Nothing is allocated.
  """
  big = jax.ShapeDtypeStruct((mesh.devices.size, 2 ** 40), jnp.int8,
                             sharding=NamedSharding(mesh, jax.sharding.PartitionSpec(
                                 tuple(mesh.axis_names))))
  try:
    jax.jit(lambda x: x + 1).lower(big).compile()
  except Exception as e:  # pylint: disable=broad-except
    return _gib_in(_AVAILABLE, str(e))
  return None


def compile_program(program: Program, setup: Setup, chip: Chip) -> Result:
  """Lowers (under the mesh, as the driver runs) and compiles one function.

  A program the chip cannot hold does not compile (RESOURCE_EXHAUSTED); its
  Result then has `error`, the arguments' bytes and, when the message states
  them, the temporaries the compiler needed.
  """
  result = Result(program.name, resident_bytes=shard_bytes(program.resident),
                  flops=program.flops, bytes_accessed=program.bytes_accessed)
  result.roofline_seconds = max(program.flops / (chip.bf16_tflops * 1e12),
                                program.bytes_accessed / (chip.hbm_gbps * 1e9))
  if program.tokens and result.roofline_seconds > 0:
    result.tokens_per_second = program.tokens / result.roofline_seconds
  tic = time.perf_counter()
  try:
    with jax.set_mesh(setup.mesh):
      compiled = program.lower().compile()
  except Exception as e:  # pylint: disable=broad-except
    result.compile_seconds = time.perf_counter() - tic
    text = str(e)
    if "RESOURCE_EXHAUSTED" not in text:
      raise
    result.error = " ".join(text.split())[:400]
    result.argument_bytes = shard_bytes(program.args)
    result.temp_bytes = _gib_in(_TEMPS, text) or 0
    return result
  result.compile_seconds = time.perf_counter() - tic
  mem = compiled.memory_analysis()
  result.argument_bytes = int(mem.argument_size_in_bytes)
  result.output_bytes = int(mem.output_size_in_bytes)
  result.temp_bytes = int(mem.temp_size_in_bytes)
  result.alias_bytes = int(mem.alias_size_in_bytes)
  cost = compiled.cost_analysis() or {}
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  result.xla_flops = float(cost.get("flops", 0.0))
  result.xla_bytes_accessed = float(cost.get("bytes accessed", 0.0))
  return result


@dataclasses.dataclass
class Compilation:
  """Everything `python -m skd_jax.compile` prints and writes."""
  topology: str
  chip: Chip
  setup: Setup
  results: list[Result]
  phases: list[str | None]     # the planner figure each result corresponds to
  planner: Any                 # plan.Report
  usable_hbm_bytes: int        # what XLA may allocate per chip

  @property
  def run_peak_bytes(self) -> int:
    return max(r.run_peak_bytes for r in self.results)

  @property
  def compiled(self) -> bool:
    return all(r.error is None for r in self.results)

  @property
  def fits(self) -> bool:
    return self.compiled and self.run_peak_bytes <= self.usable_hbm_bytes

  def _planned(self, phase: str | None) -> int | None:
    return None if phase is None else self.planner.phase_peaks()[phase]

  def planner_figures(self) -> dict[str, Any]:
    """The planner's estimates beside the compiled run peaks they estimate."""
    report = self.planner
    out: dict[str, Any] = {"peak_bytes": report.peak, "phases": report.phase_peaks(),
                           "errors": {}}
    measured = [r.error is None or r.measured_on is not None for r in self.results]
    for r, phase, ok in zip(self.results, self.phases, measured):
      planned = self._planned(phase)
      if planned is not None and ok:
        out["errors"][r.name] = (planned - r.run_peak_bytes) / r.run_peak_bytes
    if all(measured):
      out["error"] = (report.peak - self.run_peak_bytes) / self.run_peak_bytes
    return out

  def to_json(self) -> dict:
    return {
        "topology": self.topology,
        "chip": dataclasses.asdict(self.chip),
        "devices": int(self.setup.mesh.devices.size),
        "mesh": self.setup.axis_sizes,
        "hbm_bytes_per_chip": self.chip.hbm_bytes,
        "usable_hbm_bytes": self.usable_hbm_bytes,
        "fits": self.fits,
        "run_peak_bytes": self.run_peak_bytes,
        "student": self.setup.student_cfg.name,
        "teacher": self.setup.teacher_cfg.name,
        "student_rules": str(self.setup.student_rules),
        "teacher_rules": str(self.setup.teacher_rules),
        "batch_size": self.setup.batch_size,
        "remat": bool(self.setup.loss_cfg.remat),
        "functions": {r.name: {**r.to_json(), "fits": r.error is None and
                               r.run_peak_bytes <= self.usable_hbm_bytes}
                      for r in self.results},
        "planner": self.planner_figures(),
    }

  def table(self) -> str:
    mesh = ",".join(f"{k}:{v}" for k, v in self.setup.axis_sizes.items())
    unit, scale = ("GiB", GiB) if self.run_peak_bytes >= GiB / 4 else ("MiB", 2 ** 20)
    m = lambda x: f"{x / scale:8.2f}"
    lines = [f"{self.setup.student_cfg.name} <- {self.setup.teacher_cfg.name} on "
             f"{self.topology}: {self.setup.mesh.devices.size} x {self.chip.name} "
             f"({self.chip.hbm_gib:g} GiB HBM, {self.usable_hbm_bytes / GiB:.2f} usable; "
             f"{self.chip.bf16_tflops:g} TFLOP/s bf16; {self.chip.hbm_gbps:g} GB/s), "
             f"mesh {mesh}, batch {self.setup.batch_size}",
             f"{unit} per chip. peak = arg + out + temp - alias; run = peak + driver arrays "
             "held meanwhile; XLA TFLOP/GB: cost_analysis (loop bodies counted once); "
             "roofline from analytic TFLOP/GB",
             f"{'function':<16s}{'arg':>8s}{'out':>8s}{'temp':>8s}{'alias':>8s}{'peak':>8s}"
             f"{'run':>8s}{'planner':>8s}{'XLA TF':>8s}{'XLA GB':>8s}{'TFLOP':>8s}"
             f"{'GB':>8s}{'roofline':>9s}{'tok/s':>8s}{'compile':>8s}"]
    for r, phase in zip(self.results, self.phases):
      planned = self._planned(phase)
      tok = f"{r.tokens_per_second:8.0f}" if r.tokens_per_second else f"{'-':>8s}"
      mem = (f"{m(r.argument_bytes)}{m(r.output_bytes)}{m(r.temp_bytes)}{m(r.alias_bytes)}"
             f"{m(r.peak_bytes)}{m(r.run_peak_bytes)}")
      if r.error and not r.measured_on:
        mem = f"{m(r.argument_bytes)}{'-':>8s}{m(r.temp_bytes)}{'-':>8s}{'OOM':>8s}{'OOM':>8s}"
      lines.append(
          f"{r.name:<16s}{mem}{m(planned) if planned is not None else f'{chr(45):>8s}'}"
          f"{r.xla_flops / 1e12:8.2f}{r.xla_bytes_accessed / 1e9:8.1f}"
          f"{r.flops / 1e12:8.2f}{r.bytes_accessed / 1e9:8.1f}{r.roofline_seconds:8.3f}s"
          f"{tok}{r.compile_seconds:7.0f}s")
    for r in self.results:
      if r.error:
        where = (f"; its figures above are compiled on {r.measured_on} (same mesh)"
                 if r.measured_on else "")
        lines.append(f"  {r.name} OUT OF HBM: {r.error[:200]}{where}")
    err = self.planner_figures().get("error")
    if self.compiled:
      verdict = "fits" if self.fits else "DOES NOT FIT"
      lines.append(f"run peak {self.run_peak_bytes / scale:.2f} {unit} of "
                   f"{self.usable_hbm_bytes / GiB:.2f} GiB usable: {verdict}; planner peak "
                   f"{self.planner.peak / scale:.2f} {unit} ({err:+.1%})")
    else:
      lines.append(f"DOES NOT FIT: {', '.join(r.name for r in self.results if r.error)} ran out "
                   f"of HBM; run peak {self.run_peak_bytes / GiB:.2f} GiB of "
                   f"{self.usable_hbm_bytes / GiB:.2f} usable; planner peak "
                   f"{self.planner.peak / GiB:.2f} GiB"
                   + (f" ({err:+.1%})" if err is not None else ""))
    return "\n".join(lines)


def reference_topology(num_chips: int) -> str | None:
  """A v5p topology (95 GiB chips) with `num_chips` chips, or None."""
  if num_chips < 4 or num_chips % 4:
    return None
  return f"v5p:2x2x{num_chips // 4}"


def _measure_elsewhere(config, setup: Setup, progs: Sequence[Program], results: list[Result],
                       topology_name: str, log=None) -> None:
  """Memory figures of the programs that ran out of HBM, compiled with the same
  mesh on v5p chips (95 GiB). XLA's out-of-memory message states more
  temporaries than the compiled program then uses (about twice on Gemma's
  train step), so this is the figure to compare with the HBM."""
  failed = [(p, r) for p, r in zip(progs, results) if r.error]
  name = reference_topology(int(setup.mesh.devices.size))
  if not failed or name is None or topology_name.startswith("v5p"):
    return
  devices, chip = topology(name)
  other = build_setup(config, devices)
  by_name = {p.name: p for p in programs(other)}
  for p, r in failed:
    if log:
      log(f"compiling {p.name} on {name} (same mesh) for its memory figures ...")
    ref = compile_program(by_name[p.name], other, chip)
    if ref.error:
      continue
    r.argument_bytes, r.output_bytes = ref.argument_bytes, ref.output_bytes
    r.temp_bytes, r.alias_bytes = ref.temp_bytes, ref.alias_bytes
    r.xla_flops, r.xla_bytes_accessed = ref.xla_flops, ref.xla_bytes_accessed
    r.measured_on = name


def compile_config(config, topology_name: str, *, acceptance: float = 1.0,
                   only: Sequence[str] | None = None, log=None) -> Compilation:
  """Compiles the driver's functions of `config` for a topology (see the module doc).

  Args:
    config: the experiment ConfigDict (mesh, batch_size, ... already overridden).
    topology_name: e.g. "v5e:2x2".
    acceptance: per-draft acceptance assumed by the SKD rollout's roofline.
    only: compile just these function names (default all).
    log: optional callable(str) for progress lines.

  Raises:
    CompileError: see `topology` and `build_setup`.
  """
  devices, chip = topology(topology_name)
  setup = build_setup(config, devices)
  progs = programs(setup, acceptance)
  if only:
    unknown = set(only) - {p.name for p in progs}
    if unknown:
      raise CompileError(f"unknown function(s) {sorted(unknown)}; known: "
                         f"{[p.name for p in progs]}.")
    progs = [p for p in progs if p.name in only]
  results = []
  for p in progs:
    if log:
      log(f"compiling {p.name} ...")
    results.append(compile_program(p, setup, chip))
    if log:
      r = results[-1]
      log(f"  {p.name}: " + (f"out of HBM ({r.error[:160]})" if r.error else
                             f"peak {r.peak_bytes / GiB:.2f} GiB, run {r.run_peak_bytes / GiB:.2f} "
                             f"GiB, in {r.compile_seconds:.0f} s"))
  _measure_elsewhere(config, setup, progs, results, topology_name, log)
  planner = plan_lib.plan_experiment(config, num_devices=int(setup.mesh.devices.size))
  usable = usable_hbm_bytes(setup.mesh) or chip.hbm_bytes
  return Compilation(topology_name, chip, setup, results, [p.planner_phase for p in progs],
                     planner, usable)


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m skd_jax.compile",
                              description=__doc__.split("\n")[0])
  p.add_argument("--config", required=True, help="experiment config FILE[:arg]")
  p.add_argument("--topology", required=True, help=f"TPU topology: {TOPOLOGY_FORMS}")
  p.add_argument("--mesh", default=None, help="data:D,fsdp:F,tensor:T (default: the config's)")
  p.add_argument("--batch_size", type=int, default=None, help="global batch (default: config's)")
  p.add_argument("--json", default=None, help="write the results as JSON here")
  p.add_argument("--acceptance", type=float, default=1.0,
                 help="per-draft acceptance assumed by the SKD rollout roofline (1 = all)")
  p.add_argument("--functions", default=None,
                 help="comma-separated subset of functions to compile (default all)")
  return p


def main(argv: Sequence[str] | None = None) -> Compilation:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a[len("--config."):] for a in argv if a.startswith("--config.")]
  args = _parser().parse_args([a for a in argv if not a.startswith("--config.")])
  try:
    config = plan_lib.load_config(args.config, overrides)
    if args.mesh:
      config.mesh = args.mesh
    if args.batch_size:
      config.batch_size = args.batch_size
    only = [f.strip() for f in args.functions.split(",")] if args.functions else None
    log = lambda s: print(s, file=sys.stderr, flush=True)
    result = compile_config(config, args.topology, acceptance=args.acceptance, only=only, log=log)
  except (CompileError, plan_lib.PlanError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  print(result.table(), flush=True)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result.to_json(), f, indent=2)
  return result


if __name__ == "__main__":
  main()
