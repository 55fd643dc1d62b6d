"""Issue 7: the sampler under the mesh rule tables gives the 1-device tokens.

Student params follow the student (FSDP) rules, teacher params the teacher (tensor
parallel) rules, prompts are split over data x fsdp, and the caches are laid out by
the rules inside the loop. Issue 16: the tables the caches follow are named by
`SamplerConfig.student_rules` / `teacher_rules`.
"""
import dataclasses

import jax
import numpy as np
import pytest

import skd_jax
from skd_jax import distributed
from skd_jax import sharding
from skd_jax.models import partitioning
from skd_jax.models import transformer
from skd_jax.sampling import SamplerConfig, api, sampler

PROMPTS = [[2, 5, 6, 7], [2, 9], [2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 40, 41]] * 2


def _model(seed, **kw):
  cfg = skd_jax.get_config("tiny-gemma2", **kw)   # GQA, sliding window, soft-capping
  return skd_jax.Model(config=cfg, params=transformer.init_params(cfg, jax.random.PRNGKey(seed), 0.1))


def _rollout(student, teacher, tokens, lengths, static, dyn):
  return sampler.rollout(student.params, teacher.params, tokens, lengths,
                         sampler.row_keys_for(jax.random.PRNGKey(0), len(PROMPTS)), dyn,
                         static=static, student_cfg=student.config, teacher_cfg=teacher.config)


@pytest.fixture(scope="module")
def setup():
  student, teacher = _model(1, num_layers=2), _model(2)
  config = SamplerConfig(method="skd", top_k=5, gamma=3, max_new_tokens=16, stop_ids=())
  static, dyn, tokens, lengths = api.prepare(student, teacher, PROMPTS, config)
  reference = _rollout(student, teacher, tokens, lengths, static, dyn)
  return student, teacher, static, dyn, tokens, lengths, np.asarray(reference.tokens)


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_sampler_on_mesh_equals_one_device(setup, mesh_shape):
  student, teacher, static, dyn, tokens, lengths, reference = setup
  mesh = sharding.make_mesh(mesh_shape)
  with jax.set_mesh(mesh):
    s = student.replace(params=distributed.shard_params(
        student.params, partitioning.param_shardings(student.config, mesh, "student")))
    t = teacher.replace(params=distributed.shard_params(
        teacher.params, partitioning.param_shardings(teacher.config, mesh, "teacher")))
    rows = sharding.batch_sharding(mesh, len(PROMPTS))
    out = _rollout(s, t, jax.device_put(tokens, rows), jax.device_put(lengths, rows), static, dyn)
    np.testing.assert_array_equal(np.asarray(out.tokens), reference)
  assert len(out.tokens.sharding.device_set) == 8


@pytest.mark.parametrize("field", ["student_rules", "teacher_rules"])
def test_rule_table_names_reach_the_cache_constraint(setup, monkeypatch, field):
  """A table only this test registers, naming a mesh axis the mesh lacks, fails the
  trace: so the configured name (not a hard-coded one) lays out that model's cache."""
  student, teacher, static, dyn, tokens, lengths, _ = setup
  monkeypatch.setitem(sharding.RULE_SETS, "test_nowhere", (("cache_batch", "nowhere"),))
  with jax.set_mesh(sharding.make_mesh((2, 2, 2))):
    with pytest.raises(ValueError, match=r"mesh axis 'nowhere'"):
      _rollout(student, teacher, tokens, lengths,
               dataclasses.replace(static, **{field: "test_nowhere"}), dyn)


def test_custom_rule_table_names_from_the_config(setup, monkeypatch):
  """Custom names flow from SamplerConfig through `api.prepare` and give the same tokens."""
  student, teacher, _, _, tokens, lengths, reference = setup
  monkeypatch.setitem(sharding.RULE_SETS, "test_rows", sharding.REPLICATED_RULES)
  config = SamplerConfig(method="skd", top_k=5, gamma=3, max_new_tokens=16, stop_ids=(),
                         student_rules="test_rows", teacher_rules="fsdp")
  static, dyn, tokens, lengths = api.prepare(student, teacher, PROMPTS, config)
  assert (static.student_rules, static.teacher_rules) == ("test_rows", "fsdp")
  mesh = sharding.make_mesh((2, 2, 2))
  with jax.set_mesh(mesh):
    rows = sharding.batch_sharding(mesh, len(PROMPTS))
    out = _rollout(student, teacher, jax.device_put(tokens, rows), jax.device_put(lengths, rows),
                   static, dyn)
    np.testing.assert_array_equal(np.asarray(out.tokens), reference)
