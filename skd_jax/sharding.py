"""Pure partitioning: device meshes, logical-axis rule tables, logical -> spec, the constraint.

Mesh
----
Every mesh has the three axes ``MESH_AXES = ("data", "fsdp", "tensor")``:

* ``data``:   pure data parallelism; params are replicated along it.
* ``fsdp``:   data parallelism whose params (and optimizer state) are sharded
              along it (ZeRO-3 / FSDP): the batch is split over data x fsdp.
* ``tensor``: tensor (model) parallelism over heads, MLP features and vocab.

Rules
-----
Arrays carry LOGICAL axis names (`models.transformer.param_axes`,
`CACHE_AXES`, "batch"/"seq" for activations). A rule table is a tuple of
``(logical name, mesh axes)`` pairs, MaxText style; ``mesh axes`` is one axis
name, a tuple of names, or None. For one array the table is read top to bottom
and a rule is taken when

1. the array has a not yet assigned dimension of that logical name,
2. none of its mesh axes is used by another dimension of the array, and
3. the dimension's size is divisible by the product of those axes' sizes.

Size-1 mesh axes are dropped first (a rule left with no axis is skipped).
Dimensions no rule took are replicated. So the ORDER of the table is its
priority, and a name may appear several times as fallbacks: Gemma-2B's single
kv head cannot be split over "tensor", so the cache falls through to the next
rule and splits its batch over "tensor" as well.

Two tables ship: `STUDENT_RULES` (FSDP + optional tensor parallelism: the
trained model) and `TEACHER_RULES` (tensor parallelism only, params replicated
over data and fsdp: the frozen model, which only runs forward passes and
decoding, avoids per-step all-gathers). Both start with the same activation and
cache rules (`SHARED_RULES`) and differ only in their parameter rules. A model
picks a table by name through its config (`get_rules("student" | "teacher" |
"replicated")`).

Nothing here places or gathers values (that is `skd_jax.distributed`), and
nothing here knows a model: the decoder's param and cache shardings are
`skd_jax.models.partitioning`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, Union

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

MeshAxes = Union[str, tuple[str, ...], None]
Rules = tuple[tuple[str, MeshAxes], ...]
LogicalAxes = tuple[str, ...]

# Rules are tried top to bottom (see the module docstring). Activation names
# come first so that, e.g., ("batch", "seq", "embed") takes fsdp for the batch
# before "embed" could.
BATCH_RULES: Rules = (
    # Activations and batches: [B, T, ...].
    ("batch", ("data", "fsdp")),
    ("batch", "data"),
)

SHARED_RULES: Rules = BATCH_RULES + (
    ("seq", None),
    # KV cache [L, B, S, K, Dh]: heads over tensor if they split, else batch.
    ("cache_kv_heads", "tensor"),
    ("cache_batch", ("data", "fsdp", "tensor")),
    ("cache_batch", ("data", "fsdp")),
    ("cache_batch", "data"),
    ("cache_seq", None),
)

STUDENT_RULES: Rules = SHARED_RULES + (
    # Params: ZeRO-3 over fsdp on the model dimension, Megatron over tensor.
    ("vocab", "tensor"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "fsdp"),       # When "embed" does not split over fsdp.
    ("vocab", "fsdp"),
    ("head_dim", None),
    ("layers", None),
)

TEACHER_RULES: Rules = SHARED_RULES + (
    # Params over tensor only: replicated over data and fsdp.
    ("vocab", "tensor"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("embed", None),
    ("head_dim", None),
    ("layers", None),
)

# Everything replicated except the batch (plain data parallelism).
REPLICATED_RULES: Rules = BATCH_RULES + (
    ("cache_batch", ("data", "fsdp")),
    ("cache_batch", "data"),
)

RULE_SETS: dict[str, Rules] = {
    "student": STUDENT_RULES,
    "fsdp": STUDENT_RULES,
    "teacher": TEACHER_RULES,
    "tensor": TEACHER_RULES,
    "replicated": REPLICATED_RULES,
}


def get_rules(rules: str | Rules) -> Rules:
  """A rule table by name (`RULE_SETS`), or the table itself."""
  if isinstance(rules, str):
    if rules not in RULE_SETS:
      raise ValueError(f"Unknown sharding rules {rules!r}; known: {sorted(RULE_SETS)}.")
    return RULE_SETS[rules]
  return tuple(rules)


# ----------------------------------------------------------------------------
# Meshes
# ----------------------------------------------------------------------------
def parse_mesh_shape(text: str) -> dict[str, int]:
  """"data:1,fsdp:8,tensor:1" (or "1,8,1") -> {"data": 1, "fsdp": 8, "tensor": 1}."""
  parts = [p.strip() for p in text.split(",") if p.strip()]
  if all(":" in p for p in parts):
    return {k.strip(): int(v) for k, v in (p.split(":", 1) for p in parts)}
  if any(":" in p for p in parts):
    raise ValueError(f"Mesh shape {text!r}: use either 'axis:size,...' or 'size,size,size'.")
  return dict(zip(MESH_AXES, _as_sizes(tuple(int(p) for p in parts))))


def _as_sizes(mesh_shape: Mapping[str, int] | Sequence[int]) -> tuple[int, ...]:
  if isinstance(mesh_shape, Mapping):
    unknown = set(mesh_shape) - set(MESH_AXES)
    if unknown:
      raise ValueError(f"Unknown mesh axes {sorted(unknown)}; the axes are {MESH_AXES}.")
    return tuple(int(mesh_shape.get(a, 1)) for a in MESH_AXES)
  sizes = tuple(int(s) for s in mesh_shape)
  if len(sizes) != len(MESH_AXES):
    raise ValueError(f"Mesh shape {sizes} needs {len(MESH_AXES)} sizes for axes {MESH_AXES}.")
  return sizes


def resolve_mesh_shape(mesh_shape: Mapping[str, int] | Sequence[int] | str,
                       num_devices: int) -> dict[str, int]:
  """Axis sizes for `num_devices` devices; one -1 takes the remaining devices.

  Args:
    mesh_shape: {"data": d, "fsdp": f, "tensor": t} (missing axes are 1), a
      (d, f, t) tuple, or a string for `parse_mesh_shape`.
    num_devices: the number of devices the mesh must cover exactly.

  Returns:
    {"data": d, "fsdp": f, "tensor": t} with d * f * t == num_devices.
  """
  if isinstance(mesh_shape, str):
    mesh_shape = parse_mesh_shape(mesh_shape)
  sizes = _as_sizes(mesh_shape)
  if sizes.count(-1) > 1:
    raise ValueError(f"Mesh shape {dict(zip(MESH_AXES, sizes))}: at most one axis may be -1.")
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"Mesh shape {dict(zip(MESH_AXES, sizes))}: sizes must be >= 1 or -1.")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"Mesh shape {dict(zip(MESH_AXES, sizes))}: the fixed axes ({known} "
                       f"devices) do not divide the {num_devices} devices.")
    sizes = tuple(num_devices // known if s == -1 else s for s in sizes)
  elif known != num_devices:
    raise ValueError(f"Mesh shape {dict(zip(MESH_AXES, sizes))} covers {known} devices, "
                     f"but there are {num_devices}.")
  return dict(zip(MESH_AXES, sizes))


def make_mesh(mesh_shape: Mapping[str, int] | Sequence[int] | str = (1, -1, 1),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("data", "fsdp", "tensor") mesh over `devices` (default: all devices).

  Devices are laid out by `mesh_utils.create_device_mesh` (topology aware on
  TPU), falling back to `jax.devices()` order, which keeps each process's
  devices contiguous (a multi-host batch then splits by process).
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = tuple(resolve_mesh_shape(mesh_shape, len(devices)).values())
  try:
    from jax.experimental import mesh_utils
    grid = mesh_utils.create_device_mesh(sizes, devices, allow_split_physical_axes=True)
  except Exception:  # Unknown topology (e.g. CPU or a subset of devices).
    grid = np.asarray(devices, dtype=object).reshape(sizes)
  return Mesh(grid, MESH_AXES)


def mesh_axis_sizes(mesh: Mesh | jax.sharding.AbstractMesh | Mapping[str, int]) -> dict[str, int]:
  """{axis name: size} of a mesh, an abstract mesh or such a dict."""
  if isinstance(mesh, Mapping):
    return dict(mesh)
  return dict(zip(mesh.axis_names, mesh.axis_sizes))


def abstract_mesh(mesh_shape: Mapping[str, int] | Sequence[int] | str,
                  num_devices: int | None = None) -> jax.sharding.AbstractMesh:
  """A device-less mesh of any size (for planning, not for placing arrays)."""
  if num_devices is None:
    sizes = _as_sizes(parse_mesh_shape(mesh_shape) if isinstance(mesh_shape, str) else mesh_shape)
    if -1 in sizes:
      raise ValueError("abstract_mesh needs num_devices when an axis is -1.")
    num_devices = math.prod(sizes)
  sizes = resolve_mesh_shape(mesh_shape, num_devices)
  return jax.sharding.AbstractMesh(tuple(sizes.values()), tuple(sizes))


# ----------------------------------------------------------------------------
# Logical axes -> PartitionSpecs
# ----------------------------------------------------------------------------
def _axes_tuple(mesh_axes: MeshAxes) -> tuple[str, ...]:
  if mesh_axes is None:
    return ()
  return (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int],
                    axis_sizes: Mapping[str, int], rules: str | Rules) -> P:
  """The PartitionSpec of one array under a rule table (see module docstring).

  Args:
    logical_axes: one logical name (or None) per dimension.
    shape: the array's (global) shape.
    axis_sizes: {mesh axis: size}; `mesh_axis_sizes(mesh)`.
    rules: a rule table or its name.

  Returns:
    A PartitionSpec with one entry per dimension: None, a mesh axis, or a tuple
    of mesh axes; every sharded dimension divides evenly.
  """
  if len(logical_axes) != len(shape):
    raise ValueError(f"Logical axes {tuple(logical_axes)} do not match shape {tuple(shape)}.")
  assigned: list[Any] = [None] * len(shape)
  done = [False] * len(shape)
  used: set[str] = set()
  for name, mesh_axes in get_rules(rules):
    dims = [i for i, a in enumerate(logical_axes) if a == name and not done[i]]
    if not dims:
      continue
    for axis in _axes_tuple(mesh_axes):
      if axis not in axis_sizes:
        raise ValueError(f"Rule ({name!r}, {mesh_axes!r}) names mesh axis {axis!r}, "
                         f"not in the mesh {dict(axis_sizes)}.")
    axes = tuple(a for a in _axes_tuple(mesh_axes) if axis_sizes[a] > 1)
    if not axes or used & set(axes):
      continue
    i = dims[0]
    if shape[i] % math.prod(axis_sizes[a] for a in axes):
      continue
    assigned[i] = axes[0] if len(axes) == 1 else axes
    done[i] = True
    used |= set(axes)
  return P(*assigned)


def shard_shape(shape: Sequence[int], spec: P, axis_sizes: Mapping[str, int]) -> tuple[int, ...]:
  """The per-device shape of an array of `shape` sharded by `spec`."""
  out = list(shape)
  for i, entry in enumerate(tuple(spec)):
    out[i] //= math.prod(axis_sizes[a] for a in _axes_tuple(entry))
  return tuple(out)


def _is_axes(x) -> bool:
  return isinstance(x, tuple) and all(isinstance(a, str) or a is None for a in x)


def _shape_of(x) -> tuple[int, ...]:
  return tuple(x.shape) if hasattr(x, "shape") else tuple(x)


def logical_to_specs(axes_tree: Any, shapes_tree: Any, axis_sizes: Mapping[str, int],
                     rules: str | Rules) -> Any:
  """`logical_to_spec` over a pytree of logical-axes tuples and shapes."""
  return jax.tree.map(lambda axes, s: logical_to_spec(axes, _shape_of(s), axis_sizes, rules),
                      axes_tree, shapes_tree, is_leaf=_is_axes)


def logical_to_sharding(axes_tree: Any, shapes_tree: Any,
                        mesh: Mesh | jax.sharding.AbstractMesh, rules: str | Rules) -> Any:
  """A NamedSharding per leaf.

  Args:
    axes_tree: pytree whose leaves are tuples of logical names (e.g.
      `param_axes(cfg)` or `CACHE_AXES`).
    shapes_tree: the same structure with arrays, `ShapeDtypeStruct`s or shape
      tuples as leaves.
    mesh: the mesh (an AbstractMesh gives shardings usable for tracing only).
    rules: a rule table or its name.
  """
  sizes = mesh_axis_sizes(mesh)
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec),
                      logical_to_specs(axes_tree, shapes_tree, sizes, rules),
                      is_leaf=lambda x: isinstance(x, P))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_size: int | None = None,
                   rules: str | Rules = "student") -> NamedSharding:
  """Leading (batch) axis split over data x fsdp, other axes replicated.

  With `batch_size`, the split follows the "batch" rules, so a batch smaller
  than data x fsdp falls back to fewer axes (the rest hold copies).
  """
  if batch_size is None:
    return NamedSharding(mesh, P(BATCH_AXES))
  spec = logical_to_spec(("batch",), (batch_size,), mesh_axis_sizes(mesh), rules)
  return NamedSharding(mesh, spec)


def opt_state_shardings(tx, params_shapes: Any, params_shardings: Any, mesh: Mesh) -> Any:
  """Shardings of `tx.init(params)`: param-shaped subtrees like the params.

  Args:
    tx: an optax GradientTransformation.
    params_shapes: params pytree (arrays or `ShapeDtypeStruct`s).
    params_shardings: NamedShardings with the params' structure.
    mesh: the mesh; the other leaves (step counts, ...) are replicated on it.
  """
  import optax
  state_shapes = jax.eval_shape(tx.init, params_shapes)
  return optax.tree_map_params(tx, lambda _, s: s, state_shapes, params_shardings,
                               transform_non_params=lambda _: replicated(mesh))


def train_state_shardings(state: Any, params_shardings: Any, mesh: Mesh) -> Any:
  """Shardings of a `train.state.TrainState` (or of its `jax.eval_shape`)."""
  return state.replace(
      step=replicated(mesh), rng=replicated(mesh), params=params_shardings,
      opt_state=opt_state_shardings(state.tx, state.params, params_shardings, mesh))


def with_logical_constraint(x: jax.Array, logical_axes: Sequence[str | None],
                            rules: str | Rules = "student",
                            mesh: Mesh | None = None) -> jax.Array:
  """`with_sharding_constraint` by logical names (e.g. ("batch", "seq", "embed")).

  Uses `mesh`, else the mesh set by `jax.set_mesh` / `jax.sharding.use_mesh`;
  without either (or on a 1-device mesh) it returns `x` unchanged, so model
  code can call it unconditionally. The activation rules ("batch", "seq") are
  the same in every shipped table.

  Why the model needs it: under FSDP the params are split on "embed", and
  without a constraint XLA propagates that split into the activations after the
  embedding lookup (hidden states split on D, the batch REPLICATED), so every
  device computes the whole batch's attention. Constraining the hidden states
  to ("batch", "seq", "embed") after `embed_tokens` keeps the batch split.
  """
  if mesh is None:
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or not mesh.axis_names:
      return x
  if math.prod(mesh.axis_sizes) == 1:
    return x
  spec = logical_to_spec(logical_axes, x.shape, mesh_axis_sizes(mesh), rules)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
