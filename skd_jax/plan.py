"""Per-device memory planner for a student/teacher pair on a mesh.

    python -m skd_jax.plan --student=gemma-2b --teacher=gemma-7b \\
        --mesh=data:1,fsdp:8,tensor:1 --batch=8 --prompt_len=256 --max_new_tokens=256

Everything is arithmetic on shapes: per-device shard shapes come from the real
rule tables of `skd_jax.sharding` applied to the mesh's axis sizes, so a
256-chip mesh can be planned on a laptop. Nothing is allocated.

What is counted (bytes per device):

* student params: float32 master weights (student rules).
* optimizer state: AdamW's two float32 moments, sharded like the params.
* gradients: float32, sharded like the params.
* teacher params: in `teacher_cfg.param_dtype` (teacher rules).
* KV caches of both models for `batch` rows x `seq_len` slots, in the compute
  dtype, plus a compute-dtype copy of the student params for sampling (when the
  compute dtype is narrower than float32).
* train-step activations, with per-layer rematerialisation: every layer's input
  [B, T, D] is kept for the backward pass; on top, the larger of (one layer's
  forward intermediates x 2 for their cotangents, with its weights gathered
  over fsdp plus their gradient) and (the chunked loss: [B, chunk, V] float32
  logits / probabilities of both models, with the embeddings gathered).

Two phases share the resident state (params, optimizer state, teacher):
sampling adds the caches; the train step adds gradients and activations. The
peak is the larger phase. XLA needs headroom (fragmentation, collectives'
buffers, the program itself), so a plan "fits" an accelerator when its peak is
at most `HEADROOM` of the HBM.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax

from skd_jax import sharding
from skd_jax.models import transformer
from skd_jax.models.config import ModelConfig, get_config

GiB = 2 ** 30
HEADROOM = 0.9

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
                       layer: bool) -> int:
  """Elements per device of one layer's weights (or of the embeddings/head)
  once gathered over data/fsdp, i.e. split over "tensor" only."""
  specs = transformer.param_specs(cfg)
  if layer:
    leaves = [(s.axes[1:], s.shape[1:]) for s in jax.tree.leaves(
        specs["layers"], is_leaf=lambda x: isinstance(x, transformer.ParamSpec))]
  else:
    leaves = [(specs[k].axes, specs[k].shape) for k in ("embed", "lm_head") if k in specs]
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

  @property
  def total(self) -> int:
    return (self.saved_layer_inputs + self.hidden_states
            + max(self.layer_backward, self.chunked_loss))


def _layer_intermediates(cfg: ModelConfig, b: int, t: int, axis_sizes, rules) -> int:
  """Bytes of one decoder layer's forward intermediates for b rows of t tokens."""
  c = dtype_bytes(cfg.dtype)
  d, hd = cfg.hidden_size, cfg.head_dim
  h = cfg.num_heads // _split("q_heads", cfg.num_heads, axis_sizes, rules)
  k = cfg.num_kv_heads // _split("kv_heads", cfg.num_kv_heads, axis_sizes, rules)
  f = cfg.intermediate_size // _split("mlp", cfg.intermediate_size, axis_sizes, rules)
  per_token = (4 * d * 4            # residual, norms (float32 temporaries)
               + 2 * d * c          # attention and MLP outputs
               + 2 * (h + k) * hd * (c + 4)  # q, k, v, attention out; RoPE in float32
               + f * (3 * c + 2 * 4))        # gate, up, product; activation in float32
  scores = h * t * (4 + 4 + c)      # scores, softmax (float32) and probabilities
  return b * t * (per_token + scores)


def activation_bytes(student_cfg: ModelConfig, teacher_cfg: ModelConfig, batch: int,
                     seq_len: int, axis_sizes: Mapping[str, int], student_rules,
                     teacher_rules, chunk_size: int = 128, remat: bool = True) -> Activations:
  """Per-device activation bytes of the distillation train step."""
  b = batch // _split("batch", batch, axis_sizes, student_rules, only=tuple(axis_sizes))
  t = seq_len
  cs, ct = dtype_bytes(student_cfg.dtype), dtype_bytes(teacher_cfg.dtype)
  layer = _layer_intermediates(student_cfg, b, t, axis_sizes, student_rules)
  if remat:
    saved = student_cfg.num_layers * b * t * student_cfg.hidden_size * cs
  else:
    saved = student_cfg.num_layers * layer
  # Student hidden (+ its float32 cotangent), teacher hidden.
  hidden = b * t * (student_cfg.hidden_size * (cs + 4) + teacher_cfg.hidden_size * ct)
  # One layer: forward recompute + cotangents, weights gathered + their grads.
  weights = (_gathered_elements(student_cfg, axis_sizes, student_rules, layer=True) * (cs + 4))
  layer_backward = 2 * layer + weights
  # Chunked loss: teacher and student logits, log-probs and the logits'
  # cotangent, [b, chunk, V / tensor] float32; embeddings gathered (student
  # also with its float32 gradient).
  chunk = min(chunk_size, t)
  v_s = student_cfg.vocab_size // _split("vocab", student_cfg.vocab_size, axis_sizes,
                                         student_rules)
  v_t = teacher_cfg.vocab_size // _split("vocab", teacher_cfg.vocab_size, axis_sizes,
                                         teacher_rules)
  logits = b * chunk * 4 * (2 * v_t + 3 * v_s)
  embeds = (_gathered_elements(student_cfg, axis_sizes, student_rules, layer=False) * (cs + 4)
            + _gathered_elements(teacher_cfg, axis_sizes, teacher_rules, layer=False) * ct)
  return Activations(saved_layer_inputs=saved, hidden_states=hidden,
                     layer_backward=layer_backward, chunked_loss=logits + embeds)


# ----------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Report:
  """Bytes per device of every component, and the peaks of the two phases."""
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

  @property
  def resident(self) -> int:
    """Held for the whole run: params, optimizer state, teacher."""
    return self.student_params + self.optimizer_state + self.teacher_params

  @property
  def sampling_peak(self) -> int:
    return self.resident + self.student_cache + self.teacher_cache + self.sampling_params

  @property
  def train_peak(self) -> int:
    return self.resident + self.gradients + self.activations.total

  @property
  def peak(self) -> int:
    return max(self.sampling_peak, self.train_peak)

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
        ("  = resident", self.resident),
        ("student KV cache", self.student_cache),
        ("teacher KV cache", self.teacher_cache),
        ("student params for sampling", self.sampling_params),
        ("  = sampling peak", self.sampling_peak),
        ("gradients (fp32)", self.gradients),
        ("activations: saved layer inputs", a.saved_layer_inputs),
        ("activations: hidden states", a.hidden_states),
        ("activations: one layer backward", a.layer_backward),
        ("activations: chunked loss", a.chunked_loss),
        ("  = train-step peak", self.train_peak),
        ("PEAK", self.peak),
    ]
    lines = [f"{self.student} <- {self.teacher}  mesh {mesh} ({math.prod(self.mesh.values())} "
             f"devices)  batch {self.batch}  seq {self.seq_len}"]
    lines += [f"  {name:<34s}{value / GiB:9.2f} GiB" for name, value in rows]
    verdicts = [f"{name} {'fits' if self.fits(hbm) else 'NO'}" for name, hbm in ACCELERATORS]
    lines.append(f"  fits ({HEADROOM:.0%} of HBM): " + ", ".join(verdicts))
    return "\n".join(lines)


def plan(student_cfg: ModelConfig, teacher_cfg: ModelConfig,
         mesh_shape: Mapping[str, int] | Sequence[int] | str, batch: int, seq_len: int, *,
         num_devices: int | None = None, student_rules="student", teacher_rules="teacher",
         chunk_size: int = 128, remat: bool = True, optimizer_moments: int = 2) -> Report:
  """Per-device memory of SKD training with these models on this mesh.

  Args:
    student_cfg: the student (master params float32; compute `dtype`).
    teacher_cfg: the teacher (params in `param_dtype`; compute `dtype`).
    mesh_shape: as for `sharding.resolve_mesh_shape` (-1 needs `num_devices`).
    batch: global batch (rows).
    seq_len: tokens per row: prompt + new tokens (also the cache length).
    num_devices: devices of the mesh; default the product of `mesh_shape`.
    student_rules / teacher_rules: rule tables or their names.
    chunk_size: positions per chunk of the chunked loss.
    remat: per-layer rematerialisation in the student's backward pass.
    optimizer_moments: float32 param-shaped buffers of the optimizer (AdamW: 2).
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
  return Report(
      student=student_cfg.name, teacher=teacher_cfg.name, mesh=axis_sizes, batch=batch,
      seq_len=seq_len,
      student_params=student_fp32,
      optimizer_state=optimizer_moments * student_fp32,
      gradients=student_fp32,
      teacher_params=param_bytes(teacher_cfg, axis_sizes, teacher_rules,
                                 teacher_cfg.param_dtype),
      student_cache=cache_bytes(student_cfg, batch, seq_len, axis_sizes, student_rules),
      teacher_cache=cache_bytes(teacher_cfg, batch, seq_len, axis_sizes, teacher_rules),
      sampling_params=sampling_params,
      activations=activation_bytes(student_cfg, teacher_cfg, batch, seq_len, axis_sizes,
                                   student_rules, teacher_rules, chunk_size, remat))


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m skd_jax.plan", description=__doc__.split("\n")[0])
  p.add_argument("--student", default="gemma-2b", help="student preset (models/config.py)")
  p.add_argument("--teacher", default="gemma-7b", help="teacher preset")
  p.add_argument("--mesh", action="append", default=None,
                 help="data:D,fsdp:F,tensor:T (repeatable; -1 needs --num_devices)")
  p.add_argument("--num_devices", type=int, default=None)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--prompt_len", type=int, default=256)
  p.add_argument("--max_new_tokens", type=int, default=256)
  p.add_argument("--dtype", default="bfloat16", help="compute dtype of both models")
  p.add_argument("--param_dtype", default="bfloat16", help="teacher param dtype")
  p.add_argument("--student_rules", default="student")
  p.add_argument("--teacher_rules", default="teacher")
  p.add_argument("--chunk_size", type=int, default=128)
  p.add_argument("--no_remat", action="store_true")
  return p


def main(argv: Sequence[str] | None = None) -> list[Report]:
  args = _parser().parse_args(argv)
  student = get_config(args.student, dtype=args.dtype)
  teacher = get_config(args.teacher, dtype=args.dtype, param_dtype=args.param_dtype)
  reports = []
  for mesh in args.mesh or ["data:1,fsdp:8,tensor:1"]:
    report = plan(student, teacher, mesh, args.batch, args.prompt_len + args.max_new_tokens,
                  num_devices=args.num_devices, student_rules=args.student_rules,
                  teacher_rules=args.teacher_rules, chunk_size=args.chunk_size,
                  remat=not args.no_remat)
    print(report.table(), end="\n\n")
    reports.append(report)
  return reports


if __name__ == "__main__":
  main()
