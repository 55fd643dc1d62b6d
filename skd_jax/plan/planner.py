"""`plan`: the per-device memory of SKD training for a model pair on a mesh."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from skd_jax import sharding
from skd_jax.models.config import ModelConfig
from skd_jax.plan.activations import activation_bytes
from skd_jax.plan.report import Report
from skd_jax.plan.sizes import (cache_bytes, dtype_bytes, gathered_extra, param_bytes,
                                split_ways)


def plan(student_cfg: ModelConfig, teacher_cfg: ModelConfig,
         mesh_shape: Mapping[str, int] | Sequence[int] | str, batch: int, seq_len: int, *,
         num_devices: int | None = None, student_rules="student", teacher_rules="teacher",
         chunk_size: int = 128, remat: bool = True, optimizer_moments: int = 2,
         num_microbatches: int = 1, cache_length: int | None = None,
         eval_batch: int | None = None, objective: str = "distill",
         driver_copy: bool = False, prompt_len: int | None = None) -> Report:
  """Per-device memory of SKD training with these models on this mesh.

  Args:
    student_cfg: the student (master params float32; compute `dtype`; the
      driver's loaded copy in `param_dtype`).
    teacher_cfg: the teacher (params in `param_dtype`; compute `dtype`).
    mesh_shape: as for `sharding.resolve_mesh_shape` (-1 needs `num_devices`).
    batch: global batch (rows).
    seq_len: tokens per row: prompt + new tokens (the train step's length).
    num_devices: devices of the mesh; default the product of `mesh_shape`.
    student_rules / teacher_rules: rule tables or their names.
    chunk_size: positions per chunk of the chunked loss.
    remat: per-layer rematerialisation in the student's backward pass.
    optimizer_moments: float32 param-shaped buffers of the optimizer (AdamW: 2).
    num_microbatches: gradient-accumulation steps (activations of batch / k
      rows, plus a float32 gradient sum).
    cache_length: KV-cache slots per row (default seq_len; the sampler uses
      prompt bucket + max_new_tokens + gamma).
    eval_batch: rows of the evaluation decode and scoring; when given, their
      phases are planned too.
    objective: "distill" or "sft" (no teacher in the train step).
    driver_copy: count the loaded student weights the driver keeps beside
      the float32 master copy (`train.run_setup.RunSetup.student`).
    prompt_len: prompt tokens of a rollout's prefill (default seq_len / 2).
  """
  if num_devices is None:
    sizes = sharding._as_sizes(  # pylint: disable=protected-access
        sharding.parse_mesh_shape(mesh_shape) if isinstance(mesh_shape, str) else mesh_shape)
    if -1 in sizes:
      raise ValueError("A mesh shape with -1 needs num_devices.")
    num_devices = math.prod(sizes)
  axis_sizes = sharding.resolve_mesh_shape(mesh_shape, num_devices)
  student_fp32 = param_bytes(student_cfg, axis_sizes, student_rules, "float32")
  sampling_params = 0
  if dtype_bytes(student_cfg.dtype) < 4:
    sampling_params = param_bytes(student_cfg, axis_sizes, student_rules, student_cfg.dtype)
  slots = cache_length or seq_len
  micro = max(1, int(num_microbatches))
  acts = activation_bytes(student_cfg, teacher_cfg, batch // micro, seq_len, axis_sizes,
                          student_rules, teacher_rules, chunk_size, remat,
                          teacher=objective != "sft")
  prompt = prompt_len or seq_len // 2
  extra: dict[str, int] = {}
  if eval_batch:
    extra = dict(
        eval_student_cache=cache_bytes(student_cfg, eval_batch, slots, axis_sizes,
                                       student_rules),
        teacher_scoring=_scoring_bytes(teacher_cfg, eval_batch, seq_len, axis_sizes,
                                       teacher_rules, float32_params=False),
        student_scoring=_scoring_bytes(student_cfg, eval_batch, seq_len, axis_sizes,
                                       student_rules, float32_params=True))
  return Report(
      student=student_cfg.name, teacher=teacher_cfg.name, mesh=axis_sizes, batch=batch,
      seq_len=seq_len,
      student_params=student_fp32,
      optimizer_state=optimizer_moments * student_fp32,
      gradients=student_fp32,
      teacher_params=param_bytes(teacher_cfg, axis_sizes, teacher_rules,
                                 teacher_cfg.param_dtype),
      student_cache=cache_bytes(student_cfg, batch, slots, axis_sizes, student_rules),
      teacher_cache=cache_bytes(teacher_cfg, batch, slots, axis_sizes, teacher_rules),
      sampling_params=sampling_params,
      activations=acts,
      initial_student=(param_bytes(student_cfg, axis_sizes, student_rules,
                                   student_cfg.param_dtype) if driver_copy else 0),
      accumulator=student_fp32 if micro > 1 else 0,
      decode_work=_decode_work_bytes(student_cfg, teacher_cfg, batch, prompt, slots, axis_sizes,
                                     student_rules, teacher_rules),
      student_decode_work=gathered_extra(student_cfg, axis_sizes, student_rules),
      **extra)


def _logits_bytes(cfg: ModelConfig, rows: int, length: int, axis_sizes, rules) -> int:
  """Per-device float32 logits [rows, length, V] (rows over the batch axes,
  V over tensor), as the teacher-forced forward returns them."""
  b = rows // split_ways("batch", rows, axis_sizes, rules, only=tuple(axis_sizes))
  v = cfg.vocab_size // split_ways("vocab", cfg.vocab_size, axis_sizes, rules)
  return b * length * v * 4


def _decode_work_bytes(student_cfg, teacher_cfg, batch, prompt, slots, axis_sizes,
                       student_rules, teacher_rules) -> int:
  """Transient values of a rollout, the larger model's: its weights gathered
  over fsdp (`gathered_extra`) and one layer's prefill (MLP and attention
  scores over the cache) for `batch` x `prompt` tokens."""
  out = 0
  for cfg, rules in ((student_cfg, student_rules), (teacher_cfg, teacher_rules)):
    b = batch // split_ways("batch", batch, axis_sizes, rules, only=tuple(axis_sizes))
    c = dtype_bytes(cfg.dtype)
    h = cfg.num_heads // split_ways("q_heads", cfg.num_heads, axis_sizes, rules)
    f = cfg.intermediate_size // split_ways("mlp", cfg.intermediate_size, axis_sizes, rules)
    per_token = f * (2 * c + 2 * 4) + cfg.hidden_size * 3 * 4 + h * slots * (4 + c)
    out = max(out, b * prompt * per_token + gathered_extra(cfg, axis_sizes, rules))
  return out


def _scoring_bytes(cfg: ModelConfig, rows: int, length: int, axis_sizes, rules,
                   float32_params: bool) -> int:
  """The teacher-forced logits call: its float32 [rows, length, V] output, a
  float32 [F / tensor + D] transient per token, the weights gathered over fsdp,
  and (for float32 master weights) their compute-dtype copy."""
  b = rows // split_ways("batch", rows, axis_sizes, rules, only=tuple(axis_sizes))
  f = cfg.intermediate_size // split_ways("mlp", cfg.intermediate_size, axis_sizes, rules)
  out = _logits_bytes(cfg, rows, length, axis_sizes, rules)
  out += (b * length * (f + cfg.hidden_size) * 4
          + gathered_extra(cfg, axis_sizes, rules, together=False))
  if float32_params and dtype_bytes(cfg.dtype) < 4:
    out += param_bytes(cfg, axis_sizes, rules, cfg.dtype)
  return out
