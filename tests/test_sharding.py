"""Meshes, rule tables, sharded train steps and the memory planner (8 CPU devices)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from skd_jax import distributed
from skd_jax import plan as plan_lib
from skd_jax import sharding
from skd_jax.models import config as mconfig
from skd_jax.models import partitioning
from skd_jax.models import transformer
from skd_jax.train import step as step_lib
from skd_jax.train.state import TrainState
from tests import tiny

AXES = {"data": 2, "fsdp": 4, "tensor": 2}


# ----------------------------------------------------------------------------
# Meshes
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape, expected", [
    ({"data": 2, "fsdp": -1}, (2, 4, 1)),
    ((2, 2, 2), (2, 2, 2)),
    ({"tensor": 8}, (1, 1, 8)),
    ("data:1,fsdp:-1,tensor:2", (1, 4, 2)),
    ("8,1,1", (8, 1, 1)),
])
def test_make_mesh_shapes(shape, expected):
  mesh = sharding.make_mesh(shape)
  assert mesh.axis_names == sharding.MESH_AXES
  assert tuple(mesh.devices.shape) == expected
  assert sorted(d.id for d in mesh.devices.flat) == list(range(8))


@pytest.mark.parametrize("shape, message", [
    ((3, -1, 1), "do not divide"),
    ((-1, -1, 1), "at most one"),
    ((2, 2, 1), "covers 4 devices"),
    ((2, 0, 4), ">= 1 or -1"),
    ({"pipeline": 8}, "Unknown mesh axes"),
    ((8, 1), "needs 3 sizes"),
])
def test_make_mesh_errors(shape, message):
  with pytest.raises(ValueError, match=message):
    sharding.make_mesh(shape)


def test_make_mesh_on_a_subset_and_abstract_mesh():
  mesh = sharding.make_mesh((1, -1, 1), jax.devices()[:2])
  assert mesh.devices.shape == (1, 2, 1)
  big = sharding.abstract_mesh("data:2,fsdp:-1,tensor:4", num_devices=256)
  assert sharding.mesh_axis_sizes(big) == {"data": 2, "fsdp": 32, "tensor": 4}


# ----------------------------------------------------------------------------
# Rule tables
# ----------------------------------------------------------------------------
def _param_specs(name, rules, axis_sizes=None):
  cfg = mconfig.get_config(name)
  return sharding.logical_to_specs(transformer.param_axes(cfg), transformer.param_shapes(cfg),
                                   axis_sizes or AXES, rules)


def test_student_rules_shard_params_fsdp_and_tensor():
  specs = _param_specs("gemma-7b", "student")
  assert specs["embed"] == P("tensor", "fsdp")
  assert specs["layers"]["q"] == P(None, "fsdp", "tensor", None)
  assert specs["layers"]["o"] == P(None, "tensor", None, "fsdp")
  assert specs["layers"]["gate"] == P(None, "fsdp", "tensor")
  assert specs["layers"]["down"] == P(None, "tensor", "fsdp")
  assert specs["layers"]["attn_norm"] == P(None, "fsdp")
  assert specs["final_norm"] == P("fsdp")


def test_teacher_rules_replicate_over_data_and_fsdp():
  specs = _param_specs("gemma-7b", "teacher")
  assert specs["embed"] == P("tensor", None)
  assert specs["layers"]["k"] == P(None, None, "tensor", None)
  assert specs["layers"]["down"] == P(None, "tensor", None)
  for spec in jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, P)):
    assert "fsdp" not in jax.tree.leaves(tuple(spec)) and "data" not in jax.tree.leaves(tuple(spec))


def test_one_kv_head_is_replicated_not_split():
  specs = _param_specs("gemma-2b", "student")
  assert specs["layers"]["k"] == P(None, "fsdp", None, None)


def test_indivisible_dims_fall_back_to_replication():
  # tiny-gemma: 4 heads, vocab 128; tensor=8 divides neither heads nor 4 kv heads.
  specs = _param_specs("tiny-gemma", "student", {"data": 1, "fsdp": 1, "tensor": 8})
  assert specs["layers"]["q"] == P(None, None, None, None)
  assert specs["layers"]["gate"] == P(None, None, "tensor")   # mlp 128 / 8
  assert specs["embed"] == P("tensor", None)                  # vocab 128 / 8
  spec = sharding.logical_to_spec(("embed",), (6,), AXES, "student")
  assert spec == P(None)


def test_a_mesh_axis_is_used_once_per_array():
  spec = sharding.logical_to_spec(("batch", "seq", "embed"), (8, 16, 64), AXES, "student")
  assert spec == P(("data", "fsdp"), None, None)
  spec = sharding.logical_to_spec(("mlp", "mlp"), (8, 8), AXES, "student")
  assert spec == P("tensor", "fsdp")


def test_one_kv_head_cache_is_sharded_over_batch():
  mesh = sharding.make_mesh((2, 2, 2))
  cache = partitioning.cache_shardings(mconfig.get_config("gemma-2b"), 16, 32, mesh, "student")
  assert cache.k.spec == P(None, ("data", "fsdp", "tensor"), None, None, None)
  assert cache.end_index.spec == P(("data", "fsdp", "tensor"))
  # 16 kv heads split over tensor; the batch takes the other axes.
  cache = partitioning.cache_shardings(mconfig.get_config("gemma-7b"), 16, 32, mesh, "teacher")
  assert cache.k.spec == P(None, ("data", "fsdp"), None, "tensor", None)
  assert cache.end_index.spec == P(("data", "fsdp"))
  # A batch of 2 only splits over data.
  cache = partitioning.cache_shardings(mconfig.get_config("gemma-2b"), 2, 32, mesh, "student")
  assert cache.k.spec == P(None, "data", None, None, None)


def test_get_rules_errors():
  with pytest.raises(ValueError, match="Unknown sharding rules"):
    sharding.get_rules("zero3")
  with pytest.raises(ValueError, match="not in the mesh"):
    sharding.logical_to_spec(("embed",), (8,), {"data": 8}, "student")


def test_with_logical_constraint_under_jit():
  mesh = sharding.make_mesh((2, 4, 1))

  @jax.jit
  def f(x):
    return sharding.with_logical_constraint(x * 2, ("batch", "seq", "embed"), mesh=mesh)

  y = f(jnp.ones((8, 4, 6)))
  assert y.sharding.is_equivalent_to(NamedSharding(mesh, P(("data", "fsdp"))), 3)
  np.testing.assert_array_equal(np.asarray(sharding.with_logical_constraint(
      jnp.ones(3), ("embed",))), np.ones(3))   # no mesh: unchanged


def test_batch_sharding_falls_back_for_small_batches():
  mesh = sharding.make_mesh((2, 4, 1))
  assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"))
  assert sharding.batch_sharding(mesh, batch_size=2).spec == P("data")


# ----------------------------------------------------------------------------
# Sharded train step == one device
# ----------------------------------------------------------------------------
STUDENT, TEACHER = tiny.STUDENT, tiny.TEACHER
OPT = dict(learning_rate=1e-3, schedule="constant")
LOSS = step_lib.LossConfig(chunk_size=8)
STEPS = 2


def _train(state, teacher, batch):
  for _ in range(STEPS):
    state, metrics = step_lib.train_step(state, teacher, batch, student_cfg=STUDENT,
                                         teacher_cfg=TEACHER, loss_cfg=LOSS)
  return state, metrics


@functools.lru_cache(maxsize=None)
def _reference():
  student, teacher = tiny.params()
  state = TrainState.create(student, jax.random.PRNGKey(0), OPT)
  return _train(state, teacher, jax.tree.map(jnp.asarray, tiny.batch()))


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_sharded_train_step_equals_one_device(mesh_shape, tiny_params, tiny_batch):
  (student, teacher), batch = tiny_params, tiny_batch
  mesh = sharding.make_mesh(mesh_shape)
  state = TrainState.create(student, jax.random.PRNGKey(0), OPT)
  state_shardings = sharding.train_state_shardings(
      state, partitioning.param_shardings(STUDENT, mesh, "student"), mesh)
  state = distributed.shard_params(state, state_shardings)
  teacher = distributed.shard_params(teacher,
                                     partitioning.param_shardings(TEACHER, mesh, "teacher"))
  batch = distributed.replicated_batch(batch, sharding.batch_sharding(mesh))
  assert state.opt_state[1][0].mu["layers"]["gate"].sharding == \
      state_shardings.params["layers"]["gate"]
  if mesh_shape[1] > 1:   # FSDP really splits the student and its moments.
    shard = state.opt_state[1][0].nu["layers"]["gate"].addressable_shards[0]
    assert shard.data.shape[1] == STUDENT.hidden_size // mesh_shape[1]

  out, metrics = _train(state, teacher, batch)
  ref, ref_metrics = _reference()
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
               out.params, ref.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
               out.opt_state, ref.opt_state)
  np.testing.assert_allclose(metrics["loss"][0], ref_metrics["loss"][0], rtol=1e-5)
  assert not np.allclose(out.params["layers"]["gate"], student["layers"]["gate"])


# ----------------------------------------------------------------------------
# Planner
# ----------------------------------------------------------------------------
_SMALL = dict(vocab_size=4096, intermediate_size=1024, head_dim=64, max_position_embeddings=512)
SMALL_STUDENT = mconfig.ModelConfig(family="gemma", name="small-s", hidden_size=256, num_layers=4,
                                    num_heads=4, num_kv_heads=1, **_SMALL)
SMALL_TEACHER = mconfig.ModelConfig(family="gemma", name="small-t", hidden_size=384,
                                    num_layers=4, num_heads=8, num_kv_heads=8, **_SMALL)


def _device0_bytes(tree) -> int:
  """Bytes that device 0 holds of the arrays of a pytree."""
  dev = jax.devices()[0]
  return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards
             if s.device == dev)


def _place_zeros(shapes, shardings):
  """Zeros of the given shapes placed on their shardings (nothing compiled)."""
  return jax.tree.map(lambda x, s: jax.device_put(np.zeros(x.shape, x.dtype), s),
                      shapes, shardings)


@pytest.mark.parametrize("mesh_shape", [(1, 8, 1), (2, 2, 2), (1, 1, 8)])
def test_planner_state_and_cache_bytes_match_placed_arrays(mesh_shape):
  mesh = sharding.make_mesh(mesh_shape)
  batch, length = 8, 64
  report = plan_lib.plan(SMALL_STUDENT, SMALL_TEACHER, mesh_shape, batch, length)
  state = jax.eval_shape(lambda p: TrainState.create(p, jax.random.PRNGKey(0)),
                         transformer.param_shapes(SMALL_STUDENT))
  state = _place_zeros(state, sharding.train_state_shardings(
      state, partitioning.param_shardings(SMALL_STUDENT, mesh, "student"), mesh))
  teacher = _place_zeros(transformer.param_shapes(SMALL_TEACHER),
                         partitioning.param_shardings(SMALL_TEACHER, mesh, "teacher"))
  caches = [_place_zeros(partitioning.cache_shapes(cfg, batch, length),
                         partitioning.cache_shardings(cfg, batch, length, mesh, rules))
            for cfg, rules in ((SMALL_STUDENT, "student"), (SMALL_TEACHER, "teacher"))]

  measured = _device0_bytes((state.params, state.opt_state, teacher))
  planned = report.student_params + report.optimizer_state + report.teacher_params
  assert abs(planned - measured) <= 0.02 * measured, (planned, measured)
  measured_caches = _device0_bytes([(c.k, c.v) for c in caches])
  assert report.student_cache + report.teacher_cache == measured_caches


@pytest.mark.parametrize("mesh_shape", [(2, 2, 2)])
def test_planner_train_peak_within_20_percent_of_compiled_memory(mesh_shape):
  batch, length, chunk = 8, 128, 32
  mesh = sharding.make_mesh(mesh_shape)
  loss_cfg = step_lib.LossConfig(chunk_size=chunk, remat=True)

  def abstract(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)

  params = transformer.param_shapes(SMALL_STUDENT)
  state = jax.eval_shape(lambda p: TrainState.create(p, jax.random.PRNGKey(0)), params)
  state = abstract(state, sharding.train_state_shardings(
      state, partitioning.param_shardings(SMALL_STUDENT, mesh, "student"), mesh))
  teacher = abstract(transformer.param_shapes(SMALL_TEACHER),
                     partitioning.param_shardings(SMALL_TEACHER, mesh, "teacher"))
  spec = sharding.batch_sharding(mesh)
  batch_shapes = dict(tokens=jax.ShapeDtypeStruct((batch, length), jnp.int32, sharding=spec),
                      loss_mask=jax.ShapeDtypeStruct((batch, length), bool, sharding=spec))
  compiled = step_lib.train_step.lower(state, teacher, batch_shapes, student_cfg=SMALL_STUDENT,
                                       teacher_cfg=SMALL_TEACHER, loss_cfg=loss_cfg).compile()
  mem = compiled.memory_analysis()
  measured = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
              + mem.temp_size_in_bytes)
  report = plan_lib.plan(SMALL_STUDENT, SMALL_TEACHER, mesh_shape, batch, length,
                         chunk_size=chunk, remat=True)
  assert abs(report.train_peak - measured) <= 0.2 * measured, (report.train_peak, measured)


def test_planner_scales_to_256_chips_and_prints_a_table(capsys):
  reports = plan_lib.main(["--mesh=data:1,fsdp:256,tensor:1", "--mesh=data:1,fsdp:1,tensor:8",
                           "--batch=8"])
  out = capsys.readouterr().out
  assert "TPU v5e" in out and "PEAK" in out
  fsdp, tensor = reports
  student = mconfig.get_config("gemma-2b")
  # 256-way FSDP: the student's fp32 weights are split (almost) evenly.
  assert fsdp.student_params < 1.01 * student.num_params() * 4 / 256
  assert fsdp.optimizer_state == 2 * fsdp.student_params
  # The teacher rules replicate over fsdp: 8.5B bf16 params on every chip.
  teacher = mconfig.get_config("gemma-7b")
  assert fsdp.teacher_params == teacher.num_params() * 2
  assert tensor.teacher_params < teacher.num_params() * 2 / 7
  assert not fsdp.fits(16) and fsdp.fits(95)


def test_planner_rejects_bad_meshes():
  with pytest.raises(ValueError, match="covers 8 devices"):
    plan_lib.plan(SMALL_STUDENT, SMALL_TEACHER, (2, 4, 1), 8, 64, num_devices=16)
  with pytest.raises(ValueError, match="needs num_devices"):
    plan_lib.plan(SMALL_STUDENT, SMALL_TEACHER, (1, -1, 1), 8, 64)
