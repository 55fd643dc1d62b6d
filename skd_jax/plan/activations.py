"""Activation bytes of the train step (layer values kept for the backward, the loss)."""
from __future__ import annotations

import dataclasses
from typing import Mapping

from skd_jax.models.config import ModelConfig
from skd_jax.plan.sizes import dtype_bytes, gathered_elements, gathered_extra, split_ways

# Values one layer keeps per token for its backward pass, counted in XLA:TPU's
# buffer assignment of the compiled train steps (remat off): (float32 and
# compute-dtype [F / tensor] MLP buffers, float32 and compute-dtype [D] buffers).
# Gemma's gelu_tanh and (1 + w) float32 norms keep more float32 than Qwen2's SiLU
# and compute-dtype norm scaling.
_SAVED_PER_TOKEN = {"gemma": (7, 1, 4, 2), "qwen2": (5, 1, 2, 5)}


@dataclasses.dataclass(frozen=True)
class Activations:
  """Per-device activation bytes of the train step (see `skd_jax.plan`)."""
  saved_layer_inputs: int
  hidden_states: int
  layer_backward: int
  chunked_loss: int
  teacher_layer: int = 0   # one teacher layer gathered over fsdp (teacher with FSDP rules)

  @property
  def total(self) -> int:
    return (self.saved_layer_inputs + self.hidden_states + self.teacher_layer
            + max(self.layer_backward, self.chunked_loss))


def _layer_intermediates(cfg: ModelConfig, b: int, t: int, axis_sizes, rules) -> int:
  """Bytes of one decoder layer's forward values kept for its backward pass,
  for b rows of t tokens.

  Counted from XLA:TPU's buffer assignment of the compiled train step (remat
  off; `_SAVED_PER_TOKEN`): per token float32 and compute-dtype [F / tensor]
  buffers (gate, up, the activation's pieces, the product) and [D] buffers
  (residual stream and norms), q/k/v, and the [heads / tensor, T] scores
  (float32), probabilities and mask.
  """
  c = dtype_bytes(cfg.dtype)
  d, hd = cfg.hidden_size, cfg.head_dim
  h = cfg.num_heads // split_ways("q_heads", cfg.num_heads, axis_sizes, rules)
  k = cfg.num_kv_heads // split_ways("kv_heads", cfg.num_kv_heads, axis_sizes, rules)
  f = cfg.intermediate_size // split_ways("mlp", cfg.intermediate_size, axis_sizes, rules)
  mlp_f32, mlp_c, res_f32, res_c = _SAVED_PER_TOKEN["gemma" if cfg.is_gemma else "qwen2"]
  per_token = (f * (mlp_f32 * 4 + mlp_c * c)    # MLP
               + d * (res_f32 * 4 + res_c * c)  # residual stream, norms
               + (h + 2 * k) * hd * (c + 4))  # q, k, v (RoPE in float32)
  scores = h * t * (4 + c + 1)      # scores (float32), probabilities, mask
  return b * t * (per_token + scores)


def activation_bytes(student_cfg: ModelConfig, teacher_cfg: ModelConfig, batch: int,
                     seq_len: int, axis_sizes: Mapping[str, int], student_rules,
                     teacher_rules, chunk_size: int = 128, remat: bool = True,
                     teacher: bool = True) -> Activations:
  """Per-device activation bytes of the distillation train step (`teacher`
  False: the SFT step, without the teacher's hidden states and logits)."""
  b = batch // split_ways("batch", batch, axis_sizes, student_rules, only=tuple(axis_sizes))
  t = seq_len
  cs, ct = dtype_bytes(student_cfg.dtype), dtype_bytes(teacher_cfg.dtype)
  layer = _layer_intermediates(student_cfg, b, t, axis_sizes, student_rules)
  if remat:
    saved = student_cfg.num_layers * b * t * student_cfg.hidden_size * cs
  else:
    saved = student_cfg.num_layers * layer
  # Student hidden (+ its float32 cotangent), teacher hidden.
  hidden = b * t * (student_cfg.hidden_size * (cs + 4) + teacher * teacher_cfg.hidden_size * ct)
  # One layer's backward: its cotangents (and with remat its recomputed
  # forward values too), weights gathered + their float32 gradient.
  weights = (gathered_elements(student_cfg, axis_sizes, student_rules, layer=True) * (cs + 4))
  layer_backward = (2 if remat else 1) * layer + weights
  # Chunked loss: teacher and student logits, log-probs and the logits'
  # cotangent, [b, chunk, V / tensor] float32; the LM heads gathered (the
  # student's also with its float32 gradient; an untied embedding is only
  # looked up).
  chunk = min(chunk_size, t)
  v_s = student_cfg.vocab_size // split_ways("vocab", student_cfg.vocab_size, axis_sizes,
                                         student_rules)
  v_t = teacher_cfg.vocab_size // split_ways("vocab", teacher_cfg.vocab_size, axis_sizes,
                                         teacher_rules)
  logits = b * chunk * 4 * (2 * teacher * v_t + 3 * v_s)
  embeds = (gathered_elements(student_cfg, axis_sizes, student_rules, layer=False,
                                head_only=True) * (cs + 4)
            + teacher * gathered_elements(teacher_cfg, axis_sizes, teacher_rules,
                                           layer=False, head_only=True) * ct)
  teacher_layer = 0
  if teacher and gathered_extra(teacher_cfg, axis_sizes, teacher_rules):
    teacher_layer = gathered_elements(teacher_cfg, axis_sizes, teacher_rules, layer=True) * ct
  return Activations(saved_layer_inputs=saved, hidden_states=hidden,
                     layer_backward=layer_backward, chunked_loss=logits + embeds,
                     teacher_layer=teacher_layer)
