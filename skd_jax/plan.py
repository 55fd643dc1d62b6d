"""Per-device memory planner for a student/teacher pair on a mesh.

    python -m skd_jax.plan --config=configs/gemma_translate.py --num_devices=8 \
        [--mesh=data:1,fsdp:8,tensor:1 ...] [--config.KEY=VALUE ...] [explicit flags]
    python -m skd_jax.plan --student=gemma-2b --teacher=gemma-7b \
        --mesh=data:1,fsdp:8,tensor:1 --batch=8 --prompt_len=256 --max_new_tokens=256

With `--config`, everything comes from the experiment config as the driver
reads it (models, dtypes, rule tables, batch, prompt and new tokens, gamma,
loss chunking, remat, micro-batches, evaluation batch); the explicit flags
override it. Everything is arithmetic on shapes: per-device shard shapes come
from the real rule tables of `skd_jax.sharding` applied to the mesh's axis
sizes, so a 256-chip mesh can be planned on a laptop. Nothing is allocated.

What is counted (bytes per device):

* resident for the whole run: the student's float32 master weights and
  AdamW's two float32 moments (student rules), the teacher in its
  `param_dtype` (teacher rules) and, as the driver keeps it, the loaded
  student in its `param_dtype` (`driver_copy`).
* train step: float32 gradients, the student in the compute dtype (XLA hoists
  the cast out of the layer scan), and activations: each layer's saved values
  (`_layer_intermediates`, counted in XLA:TPU's buffer assignment; only the
  layer inputs with remat), the hidden states, and the larger of one layer's
  backward (its cotangents, recomputed values with remat, its weights
  gathered over fsdp and their gradient) and the chunked loss ([B, chunk, V]
  float32 logits / probabilities of both models, embeddings gathered).
* SKD rollout: both KV caches (`cache_length` slots, compute dtype), the
  student in the compute dtype (XLA hoists the cast out of the decode loop),
  and the larger model's prefill values and weights gathered over fsdp.
* with `eval_batch`: the student-only rollout, the greedy evaluation decode
  and the teacher-forced logits of the agreement metric (their float32
  [rows, length, V] outputs).

The peak is the largest phase. Against XLA:TPU's compiled programs
(`python -m skd_jax.compile`, docs/SCALING.md) the phases of the paper setups
are within 7%. XLA needs headroom (fragmentation, collectives' buffers, the
program itself), so a plan "fits" an accelerator when its peak is at most
`HEADROOM` of the HBM.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Any, Mapping, Sequence

import jax

from skd_jax import sharding
from skd_jax.models import transformer
from skd_jax.models.config import ModelConfig, get_config

GiB = 2 ** 30
HEADROOM = 0.9
# Values one layer keeps per token for its backward pass, counted in XLA:TPU's
# buffer assignment of the compiled train steps (remat off): (float32 and
# compute-dtype [F / tensor] MLP buffers, float32 and compute-dtype [D] buffers).
# Gemma's gelu_tanh and (1 + w) float32 norms keep more float32 than Qwen2's SiLU
# and compute-dtype norm scaling.
_SAVED_PER_TOKEN = {"gemma": (7, 1, 4, 2), "qwen2": (5, 1, 2, 5)}

# Name -> HBM per chip (GiB).
ACCELERATORS: tuple[tuple[str, float], ...] = (
    ("TPU v5e", 16),
    ("TPU v4", 32),
    ("A100/H100", 80),
    ("TPU v5p", 95),
)

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def dtype_bytes(name: str) -> int:
  if name not in _DTYPE_BYTES:
    raise ValueError(f"Unknown dtype {name!r}; expected one of {sorted(_DTYPE_BYTES)}.")
  return _DTYPE_BYTES[name]


# ----------------------------------------------------------------------------
# Sharded sizes
# ----------------------------------------------------------------------------
def sharded_elements(axes_tree: Any, shapes_tree: Any, axis_sizes: Mapping[str, int],
                     rules) -> int:
  """Elements per device of a pytree under a rule table (sum over leaves)."""
  specs = sharding.logical_to_specs(axes_tree, shapes_tree, axis_sizes, rules)
  shapes = jax.tree.leaves(shapes_tree, is_leaf=lambda x: hasattr(x, "shape"))
  specs = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  return sum(math.prod(sharding.shard_shape(s.shape, p, axis_sizes))
             for s, p in zip(shapes, specs))


def param_bytes(cfg: ModelConfig, axis_sizes: Mapping[str, int], rules,
                dtype: str) -> int:
  """Bytes per device of a model's params stored in `dtype`."""
  n = sharded_elements(transformer.param_axes(cfg), transformer.param_shapes(cfg),
                       axis_sizes, rules)
  return n * dtype_bytes(dtype)


def cache_bytes(cfg: ModelConfig, batch: int, length: int, axis_sizes: Mapping[str, int],
                rules, dtype: str | None = None) -> int:
  """Bytes per device of the KV cache (k and v; end_index is negligible)."""
  dtype = dtype or cfg.dtype
  shape = (cfg.num_layers, batch, length, cfg.num_kv_heads, cfg.head_dim)
  spec = sharding.logical_to_spec(transformer.CACHE_AXES.k, shape, axis_sizes, rules)
  return 2 * math.prod(sharding.shard_shape(shape, spec, axis_sizes)) * dtype_bytes(dtype)


def _split(name: str, size: int, axis_sizes: Mapping[str, int], rules,
           only: Sequence[str] = ("tensor",)) -> int:
  """How many ways a dimension called `name` is split over the axes in `only`."""
  spec = sharding.logical_to_spec((name,), (size,), axis_sizes, rules)
  axes = sharding._axes_tuple(spec[0])  # pylint: disable=protected-access
  return math.prod(axis_sizes[a] for a in axes if a in only)


def _gathered_elements(cfg: ModelConfig, axis_sizes: Mapping[str, int], rules,
                       layer: bool, head_only: bool = False) -> int:
  """Elements per device of one layer's weights (or of the embeddings/head;
  `head_only`: the LM-head matrix only) once gathered over data/fsdp, i.e.
  split over "tensor" only."""
  specs = transformer.param_specs(cfg)
  if layer:
    leaves = [(s.axes[1:], s.shape[1:]) for s in jax.tree.leaves(
        specs["layers"], is_leaf=lambda x: isinstance(x, transformer.ParamSpec))]
  else:
    names = ("embed", "lm_head")
    if head_only:
      names = ("lm_head",) if "lm_head" in specs else ("embed",)
    leaves = [(specs[k].axes, specs[k].shape) for k in names if k in specs]
  tensor_only = {a: (s if a == "tensor" else 1) for a, s in axis_sizes.items()}
  total = 0
  for axes, shape in leaves:
    spec = sharding.logical_to_spec(axes, shape, axis_sizes, rules)
    kept = jax.sharding.PartitionSpec(*[
        tuple(a for a in sharding._axes_tuple(e) if a == "tensor") or None  # pylint: disable=protected-access
        for e in spec])
    total += math.prod(sharding.shard_shape(shape, kept, tensor_only))
  return total


@dataclasses.dataclass(frozen=True)
class Activations:
  """Per-device activation bytes of the train step (see module docstring)."""
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
  h = cfg.num_heads // _split("q_heads", cfg.num_heads, axis_sizes, rules)
  k = cfg.num_kv_heads // _split("kv_heads", cfg.num_kv_heads, axis_sizes, rules)
  f = cfg.intermediate_size // _split("mlp", cfg.intermediate_size, axis_sizes, rules)
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
  b = batch // _split("batch", batch, axis_sizes, student_rules, only=tuple(axis_sizes))
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
  weights = (_gathered_elements(student_cfg, axis_sizes, student_rules, layer=True) * (cs + 4))
  layer_backward = (2 if remat else 1) * layer + weights
  # Chunked loss: teacher and student logits, log-probs and the logits'
  # cotangent, [b, chunk, V / tensor] float32; the LM heads gathered (the
  # student's also with its float32 gradient; an untied embedding is only
  # looked up).
  chunk = min(chunk_size, t)
  v_s = student_cfg.vocab_size // _split("vocab", student_cfg.vocab_size, axis_sizes,
                                         student_rules)
  v_t = teacher_cfg.vocab_size // _split("vocab", teacher_cfg.vocab_size, axis_sizes,
                                         teacher_rules)
  logits = b * chunk * 4 * (2 * teacher * v_t + 3 * v_s)
  embeds = (_gathered_elements(student_cfg, axis_sizes, student_rules, layer=False,
                                head_only=True) * (cs + 4)
            + teacher * _gathered_elements(teacher_cfg, axis_sizes, teacher_rules,
                                           layer=False, head_only=True) * ct)
  teacher_layer = 0
  if teacher and _gathered_extra(teacher_cfg, axis_sizes, teacher_rules):
    teacher_layer = _gathered_elements(teacher_cfg, axis_sizes, teacher_rules, layer=True) * ct
  return Activations(saved_layer_inputs=saved, hidden_states=hidden,
                     layer_backward=layer_backward, chunked_loss=logits + embeds,
                     teacher_layer=teacher_layer)


# ----------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Report:
  """Bytes per device of every component, and the peak of every phase of a run."""
  student: str
  teacher: str
  mesh: dict[str, int]
  batch: int
  seq_len: int
  student_params: int
  optimizer_state: int
  gradients: int
  teacher_params: int
  student_cache: int
  teacher_cache: int
  sampling_params: int
  activations: Activations
  initial_student: int = 0      # the loaded student weights the driver keeps
  accumulator: int = 0          # float32 gradient sum of micro-batched steps
  decode_work: int = 0          # an SKD rollout's transient values (prefill, gathers)
  student_decode_work: int = 0  # the same of a student-only rollout
  eval_student_cache: int = 0   # cache of the greedy evaluation decode
  teacher_scoring: int = 0      # teacher-forced logits of the agreement metric
  student_scoring: int = 0

  @property
  def resident(self) -> int:
    """Held for the whole run: params, optimizer state, teacher (and the
    driver's copy of the loaded student)."""
    return (self.student_params + self.optimizer_state + self.teacher_params
            + self.initial_student)

  @property
  def sampling_peak(self) -> int:
    return (self.resident + self.student_cache + self.teacher_cache + self.sampling_params
            + self.decode_work)

  @property
  def train_peak(self) -> int:
    return (self.resident + self.gradients + self.accumulator + self.sampling_params
            + self.activations.total)

  @property
  def peak(self) -> int:
    return max(self.phase_peaks().values())

  def phase_peaks(self) -> dict[str, int]:
    """Peak bytes per device of each phase of the run, by name.

    "train" (the train step), "sampling" (the SKD rollout), "student_sampling",
    "eval_decode" (greedy student rollouts of the evaluations),
    "teacher_scoring" / "student_scoring" (teacher-forced logits of the top-1
    agreement); the last four only when planned with `eval_batch`.
    """
    phases = {"train": self.train_peak, "sampling": self.sampling_peak}
    if self.eval_student_cache:
      phases.update(
          student_sampling=(self.resident + self.student_cache + self.sampling_params
                            + self.student_decode_work),
          eval_decode=(self.resident + self.eval_student_cache + self.sampling_params
                       + self.student_decode_work),
          teacher_scoring=self.resident + self.teacher_scoring,
          student_scoring=self.resident + self.student_scoring)
    return phases

  def fits(self, hbm_gib: float, headroom: float = HEADROOM) -> bool:
    return self.peak <= headroom * hbm_gib * GiB

  def table(self) -> str:
    """A human-readable table (GiB per device) with the accelerator verdicts."""
    mesh = ",".join(f"{k}:{v}" for k, v in self.mesh.items())
    a = self.activations
    rows = [
        ("student params (fp32)", self.student_params),
        ("optimizer state (AdamW, fp32)", self.optimizer_state),
        ("teacher params", self.teacher_params),
        ("loaded student kept by the driver", self.initial_student),
        ("  = resident", self.resident),
        ("student KV cache", self.student_cache),
        ("teacher KV cache", self.teacher_cache),
        ("student params in compute dtype", self.sampling_params),
        ("prefill values, gathered weights", self.decode_work),
        ("  = sampling peak", self.sampling_peak),
        ("gradients (fp32)", self.gradients + self.accumulator),
        ("activations: saved layer values", a.saved_layer_inputs),
        ("activations: hidden states", a.hidden_states),
        ("activations: one layer backward", a.layer_backward),
        ("activations: chunked loss", a.chunked_loss),
        ("activations: teacher layer gathered", a.teacher_layer),
        ("  = train-step peak", self.train_peak),
    ]
    rows += [(f"  = {name} peak", value) for name, value in self.phase_peaks().items()
             if name not in ("train", "sampling")]
    rows.append(("PEAK", self.peak))
    lines = [f"{self.student} <- {self.teacher}  mesh {mesh} ({math.prod(self.mesh.values())} "
             f"devices)  batch {self.batch}  seq {self.seq_len}"]
    lines += [f"  {name:<34s}{value / GiB:9.2f} GiB" for name, value in rows]
    verdicts = [f"{name} {'fits' if self.fits(hbm) else 'NO'}" for name, hbm in ACCELERATORS]
    lines.append(f"  fits ({HEADROOM:.0%} of HBM): " + ", ".join(verdicts))
    return "\n".join(lines)


def _logits_bytes(cfg: ModelConfig, rows: int, length: int, axis_sizes, rules) -> int:
  """Per-device float32 logits [rows, length, V] (rows over the batch axes,
  V over tensor), as the teacher-forced forward returns them."""
  b = rows // _split("batch", rows, axis_sizes, rules, only=tuple(axis_sizes))
  v = cfg.vocab_size // _split("vocab", cfg.vocab_size, axis_sizes, rules)
  return b * length * v * 4


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
      the float32 master copy (`train.loop.Env.student`).
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
      student_decode_work=_gathered_extra(student_cfg, axis_sizes, student_rules),
      **extra)


def _gathered_extra(cfg: ModelConfig, axis_sizes, rules, together: bool = True) -> int:
  """Compute-dtype bytes by which a forward's weights grow when gathered over
  data/fsdp: the LM head whole (it contracts all of D; an untied embedding is
  only looked up) and one layer at a time. 0 for weights split over tensor
  only (teacher rules). `together` False: the head and the layer are not live
  at once (one teacher-forced pass: the layers, then the head); in a decode
  loop XLA keeps both."""
  c = dtype_bytes(cfg.dtype)
  whole = sum(_gathered_elements(cfg, axis_sizes, rules, layer) * (cfg.num_layers if layer else 1)
              for layer in (True, False))
  shard = param_bytes(cfg, axis_sizes, rules, "float32") // 4
  if whole <= shard:
    return 0
  embed = _gathered_elements(cfg, axis_sizes, rules, layer=False, head_only=True)
  one_layer = _gathered_elements(cfg, axis_sizes, rules, layer=True)
  return (embed + one_layer if together else max(embed, one_layer)) * c


def _decode_work_bytes(student_cfg, teacher_cfg, batch, prompt, slots, axis_sizes,
                       student_rules, teacher_rules) -> int:
  """Transient values of a rollout, the larger model's: its weights gathered
  over fsdp (`_gathered_extra`) and one layer's prefill (MLP and attention
  scores over the cache) for `batch` x `prompt` tokens."""
  out = 0
  for cfg, rules in ((student_cfg, student_rules), (teacher_cfg, teacher_rules)):
    b = batch // _split("batch", batch, axis_sizes, rules, only=tuple(axis_sizes))
    c = dtype_bytes(cfg.dtype)
    h = cfg.num_heads // _split("q_heads", cfg.num_heads, axis_sizes, rules)
    f = cfg.intermediate_size // _split("mlp", cfg.intermediate_size, axis_sizes, rules)
    per_token = f * (2 * c + 2 * 4) + cfg.hidden_size * 3 * 4 + h * slots * (4 + c)
    out = max(out, b * prompt * per_token + _gathered_extra(cfg, axis_sizes, rules))
  return out


def _scoring_bytes(cfg: ModelConfig, rows: int, length: int, axis_sizes, rules,
                   float32_params: bool) -> int:
  """The teacher-forced logits call: its float32 [rows, length, V] output, a
  float32 [F / tensor + D] transient per token, the weights gathered over fsdp,
  and (for float32 master weights) their compute-dtype copy."""
  b = rows // _split("batch", rows, axis_sizes, rules, only=tuple(axis_sizes))
  f = cfg.intermediate_size // _split("mlp", cfg.intermediate_size, axis_sizes, rules)
  out = _logits_bytes(cfg, rows, length, axis_sizes, rules)
  out += (b * length * (f + cfg.hidden_size) * 4
          + _gathered_extra(cfg, axis_sizes, rules, together=False))
  if float32_params and dtype_bytes(cfg.dtype) < 4:
    out += param_bytes(cfg, axis_sizes, rules, cfg.dtype)
  return out


# ----------------------------------------------------------------------------
# Experiment configs (shared with `skd_jax.compile`)
# ----------------------------------------------------------------------------
class PlanError(ValueError):
  """A config that cannot be planned; the message alone is shown."""


def load_config(spec: str, overrides: Sequence[str] = ()):
  """The ConfigDict of `FILE[:arg]` (as `--config` of the driver) with
  `KEY=VALUE` overrides (the driver's `--config.KEY=VALUE`, without the prefix)."""
  import ast  # pylint: disable=import-outside-toplevel
  import importlib.util  # pylint: disable=import-outside-toplevel
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise PlanError(f"--config={spec!r}: no such config file {path!r}.")
  module_spec = importlib.util.spec_from_file_location(
      "skd_plan_config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    raise PlanError(f"--config={spec!r}: {e}") from None
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep:
      raise PlanError(f"--config.{item}: expected --config.KEY=VALUE.")
    *parents, leaf = key.split(".")
    node = config
    try:
      for name in parents:
        node = node[name]
      current = node[leaf]
    except (KeyError, AttributeError):
      raise PlanError(f"--config.{key}: no such key in {spec}.") from None
    if isinstance(current, str):
      value = text
    elif isinstance(current, bool):
      value = text.strip().lower() in ("1", "true", "yes")
    else:
      try:
        value = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        value = text
      if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    try:
      node[leaf] = value
    except TypeError as e:
      raise PlanError(f"--config.{key}={text!r}: {e}") from None
  return config


def _offline_tokenizer(config):
  """The run's tokenizer when it loads without the network (tiny testing
  tokenizers, local directories), else None."""
  spec = config.tokenizer or config.student.path
  if spec.startswith("testing:") or (os.path.isdir(os.path.expanduser(spec))):
    from skd_jax.train import loading  # pylint: disable=import-outside-toplevel
    return loading.load_tokenizer(config)
  return None


def model_config_of(spec, role: str, tokenizer=None) -> ModelConfig:
  """A model's config without its weights, as the driver would build it.

  `spec.path` may be a preset (shaped by `spec.overrides`; vocabulary and
  special ids from the run's tokenizer when it loads offline, as the driver
  does), a local directory with config.json, or a hub id (its preset shapes
  from `models.config.HUB_PRESETS`, else its config.json from the hub).
  """
  from skd_jax.models import config as mconfig  # pylint: disable=import-outside-toplevel
  dtype, param_dtype = spec.dtype, spec.param_dtype or spec.dtype
  path = spec.path
  overrides = dict(spec.overrides.to_dict()) if spec.get("overrides") else {}
  if path in mconfig.PRESETS:
    if tokenizer is not None:
      from skd_jax.train import loading  # pylint: disable=import-outside-toplevel
      return loading.preset_config(spec, tokenizer)
    return get_config(path, dtype=dtype, param_dtype=param_dtype, **overrides)
  local = os.path.expanduser(path)
  if os.path.isdir(local) and os.path.exists(os.path.join(local, "config.json")):
    with open(os.path.join(local, "config.json"), encoding="utf-8") as f:
      return mconfig.from_hf_config(json.load(f), dtype=dtype, param_dtype=param_dtype)
  preset = mconfig.preset_for_hub_id(path)
  if preset is not None:
    return get_config(preset, dtype=dtype, param_dtype=param_dtype, **overrides).replace(
        name=path)
  if os.path.exists(local):
    raise PlanError(f"{role}.path={path!r}: only a directory with config.json, a preset or a "
                    "known hub id can be planned without loading it.")
  try:
    import huggingface_hub  # pylint: disable=import-outside-toplevel
    with open(huggingface_hub.hf_hub_download(path, "config.json"), encoding="utf-8") as f:
      return mconfig.from_hf_config(json.load(f), dtype=dtype, param_dtype=param_dtype)
  except Exception as e:  # pylint: disable=broad-except
    raise PlanError(f"{role}.path={path!r}: not a preset, a local directory or a hub id of "
                    f"models.config.HUB_PRESETS, and its config.json could not be fetched "
                    f"({type(e).__name__}); pass a local checkpoint directory.") from None


def model_configs(config) -> tuple[ModelConfig, ModelConfig]:
  """(student, teacher) ModelConfigs of an experiment config, no weights loaded."""
  tokenizer = _offline_tokenizer(config)
  return (model_config_of(config.student, "student", tokenizer),
          model_config_of(config.teacher, "teacher", tokenizer))


def plan_experiment(config, mesh: str | None = None, num_devices: int | None = None,
                    batch: int | None = None) -> Report:
  """`plan` with everything the experiment config says (models, rules, batch,
  prompt + new tokens, gamma, loss chunking, remat, micro-batches)."""
  student, teacher = model_configs(config)
  count = num_devices or int(config.get("num_devices", 0) or 0) or None
  mesh = mesh or config.mesh
  if count is None and "-1" in str(mesh):
    raise PlanError(f"mesh={mesh!r} has a -1 axis; give --num_devices (or a mesh without -1).")
  prompt, new = int(config.task.max_prompt_tokens), int(config.task.max_new_tokens)
  return plan(student, teacher, mesh, batch or int(config.batch_size), prompt + new,
              num_devices=count, student_rules=config.student.rules,
              teacher_rules=config.teacher.rules, chunk_size=int(config.loss.chunk_size),
              remat=bool(config.loss.remat),
              num_microbatches=int(config.loss.get("num_microbatches", 1) or 1),
              cache_length=prompt + new + int(config.sampler.gamma),
              eval_batch=int(config.eval.batch_size),
              objective=_objective(config.method), driver_copy=True, prompt_len=prompt)


def _objective(method: str) -> str:
  from skd_jax.train import methods  # pylint: disable=import-outside-toplevel
  if method not in methods.METHODS:
    raise PlanError(f"unknown method {method!r}; use one of {sorted(methods.METHODS)}.")
  return methods.METHODS[method].objective


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m skd_jax.plan", description=__doc__.split("\n")[0])
  p.add_argument("--config", default=None,
                 help="experiment config FILE[:arg]: models, rules, batch, lengths and loss "
                      "settings from it (the flags below override it)")
  p.add_argument("--student", default=None, help="student preset (models/config.py)")
  p.add_argument("--teacher", default=None, help="teacher preset")
  p.add_argument("--mesh", action="append", default=None,
                 help="data:D,fsdp:F,tensor:T (repeatable; -1 needs --num_devices)")
  p.add_argument("--num_devices", type=int, default=None)
  p.add_argument("--batch", type=int, default=None)
  p.add_argument("--prompt_len", type=int, default=None)
  p.add_argument("--max_new_tokens", type=int, default=None)
  p.add_argument("--dtype", default=None, help="compute dtype of both models")
  p.add_argument("--param_dtype", default=None, help="teacher param dtype")
  p.add_argument("--student_rules", default=None)
  p.add_argument("--teacher_rules", default=None)
  p.add_argument("--chunk_size", type=int, default=None)
  p.add_argument("--no_remat", action="store_true")
  return p


_DEFAULTS = dict(student="gemma-2b", teacher="gemma-7b", mesh="data:1,fsdp:8,tensor:1", batch=8,
                 prompt_len=256, max_new_tokens=256, dtype="bfloat16", param_dtype="bfloat16",
                 student_rules="student", teacher_rules="teacher", chunk_size=128)


def _apply_flags(config, args) -> None:
  """Explicit flags override the experiment config."""
  if args.student:
    config.student.path, config.student.overrides = args.student, type(config.student)()
  if args.teacher:
    config.teacher.path, config.teacher.overrides = args.teacher, type(config.teacher)()
  if args.dtype:
    config.student.dtype = config.teacher.dtype = args.dtype
  if args.param_dtype:
    config.teacher.param_dtype = args.param_dtype
  if args.student_rules:
    config.student.rules = args.student_rules
  if args.teacher_rules:
    config.teacher.rules = args.teacher_rules
  if args.batch:
    config.batch_size = args.batch
  if args.prompt_len:
    config.task.max_prompt_tokens = args.prompt_len
  if args.max_new_tokens:
    config.task.max_new_tokens = args.max_new_tokens
  if args.chunk_size:
    config.loss.chunk_size = args.chunk_size
  if args.no_remat:
    config.loss.remat = False


def main(argv: Sequence[str] | None = None) -> list[Report]:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a[len("--config."):] for a in argv if a.startswith("--config.")]
  args = _parser().parse_args([a for a in argv if not a.startswith("--config.")])
  reports = []
  try:
    if args.config:
      config = load_config(args.config, overrides)
      _apply_flags(config, args)
      for mesh in args.mesh or [config.mesh]:
        reports.append(plan_experiment(config, mesh, num_devices=args.num_devices))
    else:
      if overrides:
        raise PlanError("--config.KEY=VALUE needs --config=FILE.")
      a = {k: (getattr(args, k) if getattr(args, k) is not None else v)
           for k, v in _DEFAULTS.items()}
      student = get_config(a["student"], dtype=a["dtype"])
      teacher = get_config(a["teacher"], dtype=a["dtype"], param_dtype=a["param_dtype"])
      for mesh in args.mesh or [a["mesh"]]:
        reports.append(plan(student, teacher, mesh, a["batch"],
                            a["prompt_len"] + a["max_new_tokens"], num_devices=args.num_devices,
                            student_rules=a["student_rules"], teacher_rules=a["teacher_rules"],
                            chunk_size=a["chunk_size"], remat=not args.no_remat))
  except (PlanError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  for report in reports:
    print(report.table(), end="\n\n")
  return reports


if __name__ == "__main__":
  main()
