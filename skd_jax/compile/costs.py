"""Analytic FLOPs and HBM bytes per chip of the driver's functions (the roofline)."""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from skd_jax import plan as plan_lib
from skd_jax.compile.setup import Setup
from skd_jax.models.config import ModelConfig


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
  batch = plan_lib.split_ways("batch", rows, sizes, setup.student_rules,
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
  n = (cfg.num_layers * plan_lib.gathered_elements(cfg, sizes, rules, layer=True)
       + plan_lib.gathered_elements(cfg, sizes, rules, layer=False, head_only=True))
  return float(n * itemsize)


def train_costs(setup: Setup, sft: bool) -> tuple[float, float]:
  """(FLOPs, HBM bytes) per chip of one train step (see `skd_jax.compile`)."""
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


def expected_tokens_per_round(gamma: int, acceptance: float) -> float:
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
  per_round = expected_tokens_per_round(gamma, acceptance) if static.method == "skd" else 1.0
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
