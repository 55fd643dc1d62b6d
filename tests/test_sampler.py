"""The interleaved sampler: the SKD law, gamma invariance, limits, batching, compilation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import skd_jax
from skd_jax.sampling import SamplerConfig, sample, sampler
from skd_jax.sampling import distributions
# The pair / small_vocab_pair fixtures come from tests/conftest.py.
from tests.tiny_sampling import N_LAW, PROMPTS, VOCAB
from tests.tiny_sampling import chi2_pvalue as _chi2_pvalue
from tests.tiny_sampling import model as _model
from tests.tiny_sampling import probs as _probs
from tests.tiny_sampling import run as _run


# ----------------------------------------------------------------------------- the law
def _law(q: np.ndarray, p: np.ndarray, p_raw_logits: np.ndarray, k: int) -> np.ndarray:
  """P(y) = q(y) 1[y in topK(p_raw)] + (sum_{y' not in topK} q(y')) p(y)."""
  top = np.zeros(len(q), bool)
  top[np.argsort(-p_raw_logits, kind="stable")[:k]] = True
  return q * top + q[~top].sum() * p


@pytest.mark.parametrize("temperature,top_p,top_k", [
    (1.0, 1.0, 0), (0.5, 0.7, 0), (1.3, 0.9, 5), (0.8, 1.0, 3), (1.0, 0.3, 40)])
def test_warp_matches_numpy_reference(temperature, top_p, top_k):
  logits = np.random.default_rng(3).normal(0, 2, (4, 40)).astype(np.float32)
  got = jax.nn.softmax(distributions.warp(jnp.asarray(logits), jnp.float32(temperature),
                                          jnp.float32(top_p), top_k))
  want = np.stack([_probs(row, temperature, top_p, top_k) for row in logits])
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)


@pytest.mark.parametrize("k,settings", [
    (1, {}),
    (3, {}),
    (VOCAB, {}),
    (3, {"student_temperature": 0.8, "teacher_temperature": 1.3, "top_p": 0.9}),
    (2, {"student_temperature": 0.7, "top_p": 0.95, "sampling_top_k": 6}),
])
def test_skd_law_first_and_second_token(small_vocab_pair, k, settings):
  student, teacher = small_vocab_pair
  prompt = [2, 5, 7]
  out = _run(student, teacher, prompts=[prompt] * N_LAW, top_k=k, gamma=2, max_new_tokens=2,
             seed=k, **settings)
  tokens = np.asarray(out.rollout.tokens)[:, len(prompt):len(prompt) + 2]
  s_t = settings.get("student_temperature", 1.0)
  t_t = settings.get("teacher_temperature", 1.0)
  top_p = settings.get("top_p", 1.0)
  top_k = settings.get("sampling_top_k", 0)

  def expected(prefix):
    s_logits = np.asarray(skd_jax.logits(student, [prefix]))[0, -1]
    t_logits = np.asarray(skd_jax.logits(teacher, [prefix]))[0, -1]
    return _law(_probs(s_logits, s_t, top_p, top_k), _probs(t_logits, t_t, top_p, top_k),
                t_logits, k)

  # First token: chi^2 goodness of fit; with a true law, p < 1e-3 happens 1 in 1000.
  first = np.bincount(tokens[:, 0], minlength=VOCAB)
  assert _chi2_pvalue(first, expected(prompt)) > 1e-3
  # Second token given the first, for every first token with enough samples.
  for y1 in np.flatnonzero(first >= 1000):
    second = np.bincount(tokens[tokens[:, 0] == y1, 1], minlength=VOCAB)
    assert _chi2_pvalue(second, expected(prompt + [int(y1)])) > 1e-3
  # And the sampler's flags agree with where the law's two branches can be told apart.
  if k == VOCAB:
    assert not np.asarray(out.rollout.from_teacher).any()


def test_chi2_check_has_power(small_vocab_pair):
  """The law test can fail: student-only samples are rejected against the K=1 law."""
  student, teacher = small_vocab_pair
  prompt = [2, 5, 7]
  out = _run(student, None, prompts=[prompt] * N_LAW, method="student", max_new_tokens=1)
  first = np.bincount(np.asarray(out.rollout.tokens)[:, len(prompt)], minlength=VOCAB)
  s_logits = np.asarray(skd_jax.logits(student, [prompt]))[0, -1]
  t_logits = np.asarray(skd_jax.logits(teacher, [prompt]))[0, -1]
  law = _law(_probs(s_logits, 1, 1), _probs(t_logits, 1, 1), t_logits, 1)
  assert _chi2_pvalue(first, law) < 1e-6


# ----------------------------------------------------------------------------- equivalences
def test_k_vocab_equals_student_and_k_zero_equals_teacher(pair):
  student, teacher = pair
  v = student.config.vocab_size
  on_policy = _run(student, None, method="student")
  skd_all = _run(student, teacher, method="skd", top_k=v, gamma=3)
  assert skd_all.completions == on_policy.completions
  assert not any(any(f) for f in skd_all.from_teacher)
  seq_kd = _run(None, teacher, method="teacher")
  skd_none = _run(student, teacher, method="skd", top_k=0, gamma=3)
  assert skd_none.completions == seq_kd.completions
  assert all(all(f) for f in skd_none.from_teacher)
  assert on_policy.completions != seq_kd.completions


@pytest.mark.parametrize("temps", [(1.0, 1.0), (0.2, 0.2)])
def test_gamma_is_only_a_speed_knob(pair, temps):
  student, teacher = pair
  kw = dict(top_k=5, student_temperature=temps[0], teacher_temperature=temps[1], top_p=0.9)
  outs = {g: _run(student, teacher, gamma=g, **kw) for g in (1, 2, 4, 8)}
  for g in (2, 4, 8):
    assert outs[g].completions == outs[1].completions, g
    assert outs[g].from_teacher == outs[1].from_teacher, g
    for field in ("tested", "accepted"):   # only kept tokens count (tests/test_sampler_stops.py)
      np.testing.assert_array_equal(np.asarray(getattr(outs[g].rollout, field)),
                                    np.asarray(getattr(outs[1].rollout, field)), f"{field} {g}")
  assert outs[8].rounds < outs[1].rounds   # fewer rounds when drafts pass
  if temps == (1.0, 1.0):
    assert 0 < np.mean(outs[1].replacement_rate) < 1   # both branches exercised


def test_decode_layout_is_only_a_speed_knob(pair):
  """Per-layer weights in the loop (the CPU default) sample exactly what stacked ones do."""
  student, teacher = pair
  kw = dict(top_k=5, gamma=3, student_temperature=1.0, teacher_temperature=1.0)
  stacked = _run(student, teacher, decode_layout="stacked", **kw)
  per_layer = _run(student, teacher, decode_layout="per_layer", **kw)
  assert per_layer.completions == stacked.completions
  assert per_layer.from_teacher == stacked.from_teacher
  assert 0 < np.mean(stacked.replacement_rate) < 1


def test_row_independent_of_batch_and_bucket(pair):
  student, teacher = pair
  kw = dict(top_k=5, gamma=2)
  base = _run(student, teacher, **kw)
  # Same row index, different neighbours and a larger padding bucket (64 instead of 16).
  other = [[2, 99] * 20, PROMPTS[1], [2, 7] * 3]
  alt = _run(student, teacher, prompts=other, **kw)
  assert alt.completions[1] == base.completions[1]
  assert alt.from_teacher[1] == base.from_teacher[1]
  single = _run(student, teacher, prompts=PROMPTS[:1], **kw)
  assert single.completions[0] == base.completions[0]


# ----------------------------------------------------------------------------- limits
def test_stop_tokens_kept_and_nothing_after(pair):
  student, teacher = pair
  free = _run(student, teacher, top_k=5, gamma=3)
  # Stop at the tokens that appear mid-completion in the free run.
  stop_a = free.completions[0][5]
  stop_b = free.completions[2][7]
  stopped = _run(student, teacher, top_k=5, gamma=3, stop_ids=(stop_a, stop_b))
  ro = jax.device_get(stopped.rollout)
  for free_c, c, row in zip(free.completions, stopped.completions, range(len(PROMPTS))):
    hits = [i for i, t in enumerate(free_c) if t in (stop_a, stop_b)]
    want = free_c[:hits[0] + 1] if hits else free_c
    assert c == want
    # Nothing after the stop: tokens zero, masks false.
    end = ro.length[row]
    assert not ro.tokens[row, end:].any() and not ro.completion_mask[row, end:].any()
    assert ro.completion_mask[row].sum() == len(c)
  assert len(stopped.completions[0]) <= 6 and stopped.completions[0][-1] in (stop_a, stop_b)


@pytest.mark.parametrize("max_new", [0, 1, 7])
def test_max_new_tokens_exact(pair, max_new):
  student, teacher = pair
  out = _run(student, teacher, top_k=5, gamma=4, max_new_tokens=max_new)
  assert [len(c) for c in out.completions] == [max_new] * len(PROMPTS)


def test_default_stop_ids_are_the_models_eos(pair):
  student, teacher = pair
  greedy = _run(student, teacher, top_k=5, gamma=2, student_temperature=0.0,
                teacher_temperature=0.0)
  eos = greedy.completions[0][3]
  s = student.replace(config=student.config.replace(eos_ids=(eos,)))
  cfg = SamplerConfig(max_new_tokens=24, top_k=5, gamma=2, student_temperature=0.0,
                      teacher_temperature=0.0)
  out = sample(s, teacher, PROMPTS[:1], config=cfg, rng=jax.random.PRNGKey(0))
  assert out.completions[0] == greedy.completions[0][:greedy.completions[0].index(eos) + 1]


# ----------------------------------------------------------------------------- compilation
def test_one_compilation_per_bucket(pair):
  student, teacher = pair
  sampler.rollout.clear_cache()
  for i, n in enumerate([3, 9, 16, 1, 12]):   # all in the 16 bucket
    prompts = [[2] + list(range(3, 2 + n))][:1] * 2
    prompts = [p[:n] for p in prompts]
    # rng, K, temperatures and parameter values change too.
    s = student.replace(params=jax.tree.map(lambda x: x * (1 + 0.01 * i), student.params))
    _run(s, teacher, prompts=prompts, seed=i, top_k=1 + i, gamma=2, student_temperature=0.5 + i / 10)
  assert sampler.rollout._cache_size() == 1
  _run(student, teacher, prompts=[[2] * 20] * 2, top_k=3, gamma=2)   # bucket 32
  assert sampler.rollout._cache_size() == 2


# ----------------------------------------------------------------------------- devices
def test_data_parallel_mesh_equals_one_device(pair):
  student, teacher = pair
  prompts = [PROMPTS[i % 4] for i in range(8)]
  ref = _run(student, teacher, prompts=prompts, top_k=5, gamma=2)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  s = student.replace(params=jax.device_put(student.params, replicated))
  t = teacher.replace(params=jax.device_put(teacher.params, replicated))
  from skd_jax.sampling import api
  cfg = SamplerConfig(max_new_tokens=24, stop_ids=(), top_k=5, gamma=2)
  static, dyn, tokens, lengths = api.prepare(s, t, prompts, cfg)
  out = sampler.rollout(s.params, t.params, jax.device_put(tokens, rows),
                        jax.device_put(lengths, rows),
                        sampler.row_keys_for(jax.random.PRNGKey(0), len(prompts)), dyn,
                        static=static, student_cfg=s.config, teacher_cfg=t.config)
  assert len(out.tokens.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.rollout.tokens))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("prompts,kw,message", [
    ([[2], []], {}, r"Prompt 1 is empty"),
    ([[2] * 40], {"cache_length": 48}, r"needs \d+ cache slots but cache_length=48"),
    ([[2]], {"top_k": -1}, r"top_k=-1"),
    ([[2]], {"gamma": 0}, r"gamma=0"),
    ([[2, 500]], {}, r"token ids \[500\] outside the vocabulary"),
    ([[2]], {"method": "beam"}, r"Unknown sampling method 'beam'"),
    ([[2]], {"decode_layout": "fast"}, r"decode_layout='fast'"),
    ([[2]], {"student_rules": "nope"}, r"student_rules='nope'.*known"),
    ([[2]], {"teacher_rules": "studnet"}, r"teacher_rules='studnet'.*known"),
])
def test_bad_input_fails_before_compiling(pair, prompts, kw, message):
  student, teacher = pair
  sampler.rollout.clear_cache()
  with pytest.raises(ValueError, match=message):
    _run(student, teacher, prompts=prompts, **kw)
  assert sampler.rollout._cache_size() == 0


def test_mismatched_vocabularies(pair):
  student, _ = pair
  teacher = _model("tiny-gemma", 3, vocab_size=136)
  with pytest.raises(ValueError, match=r"vocabularies differ.*shared_vocab_size=128"):
    _run(student, teacher)
  out = _run(student, teacher, shared_vocab_size=128, top_k=5)
  assert max(max(c) for c in out.completions) < 128
