"""bfloat16-compute models over float32 masters decode with bfloat16 matrices.

`sampler.loop_params` casts the matrices to the compute dtype once per rollout
(`layouts.matmul_weights_in_compute_dtype`) instead of the model casting them at
every step. The matmuls see the same values, so the sampled tokens are the same
as decoding from the float32 masters; the loop reads half the bytes.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import skd_jax
from skd_jax.models import layouts
from skd_jax.sampling import SamplerConfig, api, sampler
from tests.tiny_sampling import PROMPTS, pair


def _bf16_compute(model):
  cfg = dataclasses.replace(model.config, dtype="bfloat16")
  return skd_jax.Model(config=cfg, params=model.params)   # float32 masters


def test_matrices_cast_to_compute_dtype_and_vectors_kept():
  student = _bf16_compute(pair()[0])
  cast = layouts.matmul_weights_in_compute_dtype(student.params, student.config)
  for before, after in zip(jax.tree.leaves(student.params), jax.tree.leaves(cast)):
    want = jnp.bfloat16 if before.ndim >= 2 else before.dtype
    assert after.dtype == want, (before.shape, after.dtype)
  assert any(a.ndim == 1 for a in jax.tree.leaves(student.params))   # norm scales exist
  f32 = pair()[0]   # float32 compute: nothing to cast
  assert all(a.dtype == b.dtype for a, b in zip(
      jax.tree.leaves(f32.params),
      jax.tree.leaves(layouts.matmul_weights_in_compute_dtype(f32.params, f32.config))))


def _rollout(student, teacher, precast: bool, method="skd"):
  config = SamplerConfig(method=method, max_new_tokens=16, stop_ids=(), top_k=3, gamma=2,
                         student_temperature=1.0, teacher_temperature=1.0, top_p=1.0)
  static, dyn, tokens, lengths = api.prepare(student, teacher, PROMPTS, config)
  keys = sampler.row_keys_for(jax.random.PRNGKey(3), len(PROMPTS))
  layout = (sampler.loop_params if precast else
            lambda p, cfg, s: sampler._decode_layout(p, cfg=cfg) if s.per_layer_decode else p)  # pylint: disable=protected-access
  out = sampler.rollout(layout(student.params, student.config, static),
                        layout(teacher.params, teacher.config, static),
                        jnp.asarray(tokens), jnp.asarray(lengths), keys, dyn, static=static,
                        student_cfg=student.config, teacher_cfg=teacher.config)
  return np.asarray(out.tokens), np.asarray(out.from_teacher)


def test_precast_rollout_samples_the_same_tokens():
  student, teacher = (_bf16_compute(m) for m in pair())
  tokens, from_teacher = _rollout(student, teacher, precast=True)
  want_tokens, want_from_teacher = _rollout(student, teacher, precast=False)
  np.testing.assert_array_equal(tokens, want_tokens)
  np.testing.assert_array_equal(from_teacher, want_from_teacher)
  assert from_teacher.any() and not from_teacher.all()   # both models wrote tokens


def test_forward_is_bit_identical_with_precast_matrices():
  from skd_jax.models import transformer
  model = _bf16_compute(pair()[1])
  # Norm scales start at 0 (exact in bfloat16); give them values bfloat16 rounds.
  keys = iter(jax.random.split(jax.random.PRNGKey(0), 64))
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(next(keys), a.shape)
                        if a.ndim == 1 else a, model.params)
  model = skd_jax.Model(config=model.config, params=params)
  tokens = jnp.asarray([p + [1] * (9 - len(p)) for p in PROMPTS], jnp.int32)
  forward = jax.jit(lambda params: transformer.forward(params, tokens, model.config)[0])
  want = np.asarray(forward(model.params))
  got = np.asarray(forward(layouts.matmul_weights_in_compute_dtype(model.params, model.config)))
  np.testing.assert_array_equal(got, want)
  # Casting the norm scales too would change the logits: the check can tell.
  everything = np.asarray(forward(layouts.cast_params(model.params, jnp.bfloat16)))
  assert np.any(everything != want)
