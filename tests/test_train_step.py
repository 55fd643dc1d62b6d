"""Tests of the training step: loss positions, accumulation, sharding, SFT, optim."""
import dataclasses
import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from skd_jax import losses
from skd_jax.models import transformer
from skd_jax.train import optim
from skd_jax.train import step as step_lib
from skd_jax.train.state import TrainState
from tests import tiny

# Student: Gemma (tied head). Teacher: Qwen2 (untied head, other hidden size).
STUDENT, TEACHER = tiny.STUDENT, tiny.TEACHER
VOCAB = STUDENT.vocab_size
L = 12
_params = tiny.params   # (student, teacher), cached


# (prompt length, end of completion) per row: micro-batches of any strided split
# hold different token counts, and row 1 has nothing to learn from.
ROWS = ((2, 12), (0, 0), (5, 7), (3, 11), (1, 4), (6, 12), (4, 9), (2, 3))


def _ragged_batch(seed=0, rows=ROWS, length=L):
  """Right-padded prompt + completion rows of different lengths."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, VOCAB, (len(rows), length))
  loss_mask = np.zeros(tokens.shape, bool)
  for b, (prompt, end) in enumerate(rows):
    loss_mask[b, prompt:end] = True
    tokens[b, max(end, prompt + 1):] = 0
  return dict(tokens=jnp.asarray(tokens, jnp.int32),
              loss_mask=jnp.asarray(loss_mask))


# One transformation object each, so that states re-created in different tests
# share the jit cache of the step (the tx is a static field).
B = len(ROWS)
SGD = optax.sgd(1.0)
ADAMW = dict(learning_rate=3e-3, schedule="constant", weight_decay=0.1)
LOSS = step_lib.LossConfig(chunk_size=5)


def _sgd_state(params):
  """A state whose update is params - grads: exposes gradients exactly."""
  params = jax.tree.map(jnp.copy, params)  # The step donates the state.
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=SGD.init(params), rng=jax.random.PRNGKey(0),
                    tx=SGD, lr_schedule=_ONE)


def _ONE(step):
  del step
  return 1.0


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _mean(pair):
  return float(pair[0]) / max(float(pair[1]), 1.0)


def test_loss_positions_shift_by_one():
  loss_mask = jnp.asarray([
      [0, 0, 1, 1, 0, 0],  # prompt of 2, completion of 2, padding
      [0, 0, 0, 0, 1, 1],  # completion runs to the end
      [1, 1, 0, 0, 0, 0],  # completion starts at token 0 (nothing predicts it)
      [0, 0, 0, 0, 0, 0],
  ], bool)
  want = np.asarray([
      [0, 1, 1, 0, 0, 0],  # position 1 predicts the first completion token
      [0, 0, 0, 1, 1, 0],  # the last position predicts past the sequence
      [1, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0],
  ], bool)
  np.testing.assert_array_equal(step_lib.loss_positions(loss_mask), want)
  np.testing.assert_array_equal(
      step_lib.next_tokens(jnp.asarray([[5, 6, 7]])), [[6, 7, 0]])


def _full_logits(params, tokens, cfg):
  return transformer.forward(params, tokens, cfg)[0]


def _train(state, batch, loss_cfg=LOSS, student_cfg=STUDENT):
  _, teacher = _params()
  return step_lib.train_step(state, teacher, batch, student_cfg=student_cfg,
                             teacher_cfg=TEACHER, loss_cfg=loss_cfg)


def test_distill_loss_and_grads_equal_naive_full_vocab_loss():
  student, teacher = _params()
  batch = _ragged_batch(1)
  loss_cfg = step_lib.LossConfig(divergence=losses.JSD(beta=0.3), chunk_size=5)
  # Loss positions built by hand from the completion mask, not by the code.
  mask = np.asarray(batch["loss_mask"])
  positions = np.zeros_like(mask)
  positions[:, :-1] = mask[:, 1:]

  @jax.jit
  @jax.value_and_grad
  def naive(params, positions):
    return losses.divergence(
        "jsd", _full_logits(teacher, batch["tokens"], TEACHER),
        _full_logits(params, batch["tokens"], STUDENT), positions, beta=0.3)

  want, want_grads = naive(student, positions)
  grads, loss_sum, count = jax.jit(functools.partial(
      step_lib.distill_grads, student_cfg=STUDENT, teacher_cfg=TEACHER,
      loss_cfg=loss_cfg))(student, teacher, batch)
  assert count == positions.sum()
  np.testing.assert_allclose(loss_sum / count, want, rtol=1e-5)
  _assert_trees_close(grads, want_grads)
  # The unshifted window gives a different loss: the test sees the shift.
  assert abs(float(naive(student, mask)[0]) - float(want)) > 1e-4


# Vocabularies that differ by padding rows only (Qwen2-7B has 152,064 rows and
# Qwen2-0.5B 151,936, one tokenizer): the loss compares the first SHARED ids.
SHARED = VOCAB


def _dot_widths(jaxpr) -> set[int]:
  """Last-axis sizes of every dot_general output, nested jaxprs included."""
  widths = set()
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      widths.update(v.aval.shape[-1] for v in eqn.outvars)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          widths |= _dot_widths(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          widths |= _dot_widths(sub)
  return widths


@pytest.mark.parametrize("student_vocab,teacher_vocab", [(136, 128), (128, 136)])
def test_shared_vocab_compares_the_first_ids(student_vocab, teacher_vocab):
  # Student tiny Gemma (tied embedding), teacher tiny Qwen2 (untied lm_head).
  student_cfg = STUDENT.replace(vocab_size=student_vocab)
  teacher_cfg = TEACHER.replace(vocab_size=teacher_vocab)
  student = transformer.init_params(student_cfg, jax.random.PRNGKey(0))
  teacher = transformer.init_params(teacher_cfg, jax.random.PRNGKey(1), std=0.3)
  batch = _ragged_batch(8)  # Token ids < SHARED.
  loss_cfg = step_lib.loss_config(dict(divergence="jsd", beta=0.3, chunk_size=5),
                                  shared_vocab_size=SHARED)
  positions = step_lib.loss_positions(batch["loss_mask"])

  @jax.jit
  @jax.value_and_grad
  def by_hand(params):  # Logits sliced by hand.
    return losses.divergence(
        "jsd", _full_logits(teacher, batch["tokens"], teacher_cfg)[..., :SHARED],
        _full_logits(params, batch["tokens"], student_cfg)[..., :SHARED], positions,
        beta=0.3)

  want, want_grads = by_hand(student)
  distill = functools.partial(step_lib.distill_grads, student_cfg=student_cfg,
                              teacher_cfg=teacher_cfg, loss_cfg=loss_cfg)
  grads, loss_sum, count = jax.jit(distill)(student, teacher, batch)
  np.testing.assert_allclose(loss_sum / count, want, rtol=1e-5)
  _assert_trees_close(grads, want_grads)
  if student_vocab > SHARED:  # The student's padding rows get no gradient.
    assert np.all(np.asarray(grads["embed"])[SHARED:] == 0)
    assert np.any(np.asarray(grads["embed"])[:SHARED] != 0)
  # Neither head ever forms logits wider than the shared vocabulary.
  widths = _dot_widths(jax.make_jaxpr(distill)(student, teacher, batch).jaxpr)
  assert SHARED in widths and max(student_vocab, teacher_vocab) not in widths
  state, metrics = step_lib.train_step(_sgd_state(student), teacher, batch,
                                       student_cfg=student_cfg, teacher_cfg=teacher_cfg,
                                       loss_cfg=loss_cfg)
  np.testing.assert_allclose(_mean(metrics["loss"]), want, rtol=1e-5)
  # Without a shared size the vocabularies must match; the error says how to fix it.
  with pytest.raises(ValueError, match=rf"teacher vocabulary {teacher_vocab} != student "
                     rf"vocabulary {student_vocab}.*shared_vocab_size={SHARED}"):
    step_lib.distill_grads(student, teacher, batch, student_cfg=student_cfg,
                           teacher_cfg=teacher_cfg, loss_cfg=LOSS)


def test_microbatches_equal_one_big_batch():
  student, _ = _params()
  batch = _ragged_batch(2)
  k = 4
  many = dataclasses.replace(LOSS, num_microbatches=k)
  state_1, metrics_1 = _train(_sgd_state(student), batch)
  state_k, metrics_k = _train(_sgd_state(student), batch, many)
  # SGD with lr 1: the params compare the gradients themselves.
  _assert_trees_close(state_k.params, state_1.params)
  for name in metrics_1:
    np.testing.assert_allclose(metrics_k[name], metrics_1[name], rtol=1e-5)
  assert float(metrics_1["grad_norm"][0]) > 1e-3  # Not a vacuous comparison.
  # The micro-batches hold different token counts, so a mean of micro-batch
  # means would differ from the global mean and fail the comparison above.
  micro = step_lib.split_microbatches(batch, k)
  counts = step_lib.loss_positions(micro["loss_mask"].reshape(-1, L)).reshape(
      k, -1).sum(-1)
  assert len(set(np.asarray(counts).tolist())) == k, counts


def test_sequence_reduction_accumulates_exactly():
  # Accumulation for the per-sequence pair, on a linear "model" (fast to compile).
  rng = np.random.default_rng(3)
  teacher_logits = jnp.asarray(rng.normal(size=(B, L, 16)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(16, 16)), jnp.float32)
  batch = dict(x=teacher_logits, loss_mask=_ragged_batch()["loss_mask"])

  def sum_and_count(w, b):
    return losses.divergence("fkl", b["x"], b["x"] @ w, b["loss_mask"],
                             reduction="sequence_sum")

  whole = jax.value_and_grad(
      lambda w: losses.safe_mean(*sum_and_count(w, batch)))(w)
  grads, total, count = step_lib.accumulate_gradients(sum_and_count, w, batch,
                                                      4)
  assert count == sum(1 for p, e in ROWS if e > p)
  np.testing.assert_allclose(total / count, whole[0], rtol=1e-6)
  np.testing.assert_allclose(grads, whole[1], rtol=1e-5, atol=1e-7)


def test_data_parallel_over_8_devices_equals_one_device():
  assert len(jax.devices()) == 8
  student, teacher = _params()
  batch = _ragged_batch(3)
  state, metrics = _train(_sgd_state(student), batch)

  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  replicated = NamedSharding(mesh, P())
  state_8, metrics_8 = step_lib.train_step(
      jax.device_put(_sgd_state(student), replicated),
      jax.device_put(teacher, replicated),
      jax.device_put(batch, NamedSharding(mesh, P("data"))),
      student_cfg=STUDENT, teacher_cfg=TEACHER, loss_cfg=LOSS)
  assert len(state_8.params["embed"].sharding.device_set) == 8
  _assert_trees_close(state_8.params, state.params)
  for name in metrics:
    np.testing.assert_allclose(metrics_8[name], metrics[name], rtol=1e-5)


def _adamw_state(params):
  return TrainState.create(params, jax.random.PRNGKey(0), ADAMW)


def test_loss_decreases_over_20_steps():
  student, _ = _params()
  batch = _ragged_batch(4)
  state = _adamw_state(student)
  history = []
  for _ in range(20):
    state, metrics = _train(state, batch)
    history.append(_mean(metrics["loss"]))
  assert int(state.step) == 20
  assert history[-1] < 0.5 * history[0], history
  assert np.all(np.diff(history[:5]) < 0), history


def test_all_zero_mask_gives_zero_loss_and_no_update():
  student, _ = _params()
  batch = dict(_ragged_batch(5))
  batch["loss_mask"] = jnp.zeros_like(batch["loss_mask"])
  state, metrics = _train(_adamw_state(student), batch)
  assert float(metrics["loss"][0]) == 0.0 and float(metrics["loss"][1]) == 0.0
  assert float(metrics["grad_norm"][0]) == 0.0
  assert float(metrics["tokens"][0]) == 0.0
  # AdamW with zero gradients moves params only by decoupled weight decay.
  decay = 1 - ADAMW["learning_rate"] * ADAMW["weight_decay"]
  want = jax.tree.map(lambda p: p * decay, student)
  _assert_trees_close(state.params, want, rtol=1e-6, atol=0)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))


def _np_log_softmax(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_sft_step_equals_numpy_cross_entropy():
  student, _ = _params()
  batch = _ragged_batch(6)
  tokens, mask = np.asarray(batch["tokens"]), np.asarray(batch["loss_mask"])
  logp = _np_log_softmax(_full_logits(student, batch["tokens"], STUDENT))
  # Completion token t is predicted by position t - 1.
  want = np.mean([-logp[b, t - 1, tokens[b, t]]
                  for b in range(B) for t in range(1, L) if mask[b, t]])
  loss_cfg = dataclasses.replace(LOSS, num_microbatches=2)
  state, metrics = step_lib.sft_step(_sgd_state(student), batch,
                                     student_cfg=STUDENT, loss_cfg=loss_cfg)
  np.testing.assert_allclose(_mean(metrics["loss"]), want, rtol=1e-5)
  # Gradients equal those of the naive full-vocabulary loss (SGD, lr 1).
  positions = step_lib.loss_positions(batch["loss_mask"])

  @jax.jit
  @jax.grad
  def naive(params):
    nll = losses.token_cross_entropy(
        _full_logits(params, batch["tokens"], STUDENT),
        step_lib.next_tokens(batch["tokens"]))
    return losses.safe_mean(*losses.masked_sum_and_count(nll, positions))

  _assert_trees_close(state.params, jax.tree.map(lambda p, g: p - g, student,
                                                 naive(student)))


def test_bfloat16_compute_keeps_float32_master_weights():
  student, _ = _params()
  batch = _ragged_batch(7)
  _, metrics_32 = _train(_adamw_state(student), batch)
  state_16, metrics_16 = _train(_adamw_state(student), batch,
                                student_cfg=STUDENT.replace(dtype="bfloat16"))
  for leaf in jax.tree.leaves((state_16.params, state_16.opt_state)):
    assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
  loss_32, loss_16 = _mean(metrics_32["loss"]), _mean(metrics_16["loss"])
  np.testing.assert_allclose(loss_16, loss_32, rtol=3e-2)
  assert loss_16 != loss_32  # The compute dtype really changed.


def test_default_optimizer_is_the_official_one():
  c = optim.OptimizerConfig(total_steps=10)
  schedule = optim.make_schedule(c)
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(10)],
                             [1e-5, 5e-6, 0.0], atol=1e-12)
  # One update from zero state: clip to norm 1, then Adam's m / (sqrt(v) + eps).
  params = {"w": jnp.zeros(4)}
  grads = {"w": jnp.asarray([3.0, -4.0, 0.0, 1e-7])}
  tx = optim.make_optimizer(c)
  updates, _ = tx.update(grads, tx.init(params), params)
  clipped = np.asarray(grads["w"]) / np.linalg.norm(grads["w"])
  want = -1e-5 * clipped / (np.abs(clipped) + 1e-6)
  np.testing.assert_allclose(updates["w"], want, rtol=1e-5, atol=1e-12)


def test_warmup_cosine_schedule():
  s = optim.make_schedule(dict(learning_rate=1.0, schedule="cosine",
                               warmup_steps=2, total_steps=12))
  np.testing.assert_allclose([s(0), s(1), s(2), s(7), s(12)],
                             [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)
  with pytest.raises(TypeError):
    optim.optimizer_config(dict(learning_rte=1.0))
