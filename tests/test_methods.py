"""Methods as data-source policies: coin flips, batch layout, the rows each method trains on."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from skd_jax import losses as losses_lib
from skd_jax.models import transformer
from skd_jax.train import loop
from skd_jax.train import rollout
from skd_jax.train import run_setup
from skd_jax.train import training
from skd_jax.train import methods
from skd_jax.train import step as step_lib
from skd_jax.train import validate
from tests import tiny
from tests.tiny import tiny_config

ROOT = tiny.ROOT   # Until every test imports it from tests/tiny.py.


MIX = ml_collections.ConfigDict(dict(lmbda=0.5, gkd_per_sequence=True, gkd_seq_kd=False,
                                     imitkd_fraction=0.5, skd_fraction=0.5,
                                     two_stage_fraction=0.5))


def test_row_sources_fixed_methods():
  key = methods.source_key(jax.random.PRNGKey(0), 3)
  expect = {"sft": methods.GROUND_TRUTH, "supervised_kd": methods.GROUND_TRUTH,
            "seq_kd": methods.TEACHER, "seq_kd_divergence": methods.TEACHER,
            "on_policy": methods.STUDENT, "skd": methods.SKD}
  for name, source in expect.items():
    assert (methods.row_sources(name, MIX, key, 4, 3, 10) == source).all()


def test_seq_kd_is_mle_on_teacher_samples_and_its_divergence_variant_is_not():
  # SeqKD (Kim & Rush 2016; the paper's and the official code's baseline):
  # cross-entropy on teacher samples. The divergence on them has its own name.
  seq_kd, variant = methods.METHODS["seq_kd"], methods.METHODS["seq_kd_divergence"]
  assert (seq_kd.objective, seq_kd.sources) == ("sft", (methods.TEACHER,))
  assert (variant.objective, variant.sources) == ("distill", (methods.TEACHER,))
  assert methods.METHODS["sft"].objective == "sft"
  assert {m.objective for m in methods.METHODS.values()} == {"sft", "distill"}


def test_registry_entries_carry_their_sample_source_and_checks():
  # --mode=sample shows a method's first sampled source; reference-only methods the student.
  want = {"sft": methods.STUDENT, "supervised_kd": methods.STUDENT, "seq_kd": methods.TEACHER,
          "skd": methods.SKD, "skd_mixed": methods.SKD, "gkd": methods.STUDENT}
  assert {n: methods.METHODS[n].sample_source for n in want} == want
  with pytest.raises(ValueError, match="already registered"):
    methods.register(methods.METHODS["skd"])
  with pytest.raises(ValueError, match="no rows function"):
    methods.register(methods.Method("x", "distill", (methods.SKD, methods.TEACHER), "", "x"))
  with pytest.raises(ValueError, match="objective='kl'"):
    methods.register(methods.Method("y", "kl", (methods.SKD,), "", "y"))
  assert "x" not in methods.METHODS and "y" not in methods.METHODS


def test_row_sources_coins_are_keyed_and_fair():
  run_key = jax.random.PRNGKey(0)
  draws = [methods.row_sources("imitkd", MIX, methods.source_key(run_key, s), 64, s, 100)
           for s in range(8)]
  again = methods.row_sources("imitkd", MIX, methods.source_key(run_key, 0), 64, 0, 100)
  np.testing.assert_array_equal(draws[0], again)          # A function of (key, step).
  assert not np.array_equal(draws[0], draws[1])          # Fresh coins every step.
  frac = np.mean(np.concatenate(draws) == methods.STUDENT)
  assert 0.4 < frac < 0.6
  assert set(np.concatenate(draws).tolist()) == {methods.STUDENT, methods.GROUND_TRUTH}
  mixed = methods.row_sources("skd_mixed", MIX, methods.source_key(run_key, 0), 64, 0, 100)
  assert set(mixed.tolist()) == {methods.SKD, methods.GROUND_TRUTH}


def test_gkd_per_batch_and_seq_kd():
  mix = ml_collections.ConfigDict(MIX.to_dict())
  mix.gkd_per_sequence = False
  mix.gkd_seq_kd = True
  run_key = jax.random.PRNGKey(1)
  rows = [methods.row_sources("gkd", mix, methods.source_key(run_key, s), 8, s, 100)
          for s in range(20)]
  assert all(len(set(r.tolist())) == 1 for r in rows)    # One coin per batch (TRL).
  assert {r[0] for r in rows} == {methods.STUDENT, methods.TEACHER}
  mix.lmbda = 1.0
  assert (methods.row_sources("gkd", mix, methods.source_key(run_key, 0), 8, 0, 9)
          == methods.STUDENT).all()
  mix.lmbda = 0.0
  assert (methods.row_sources("gkd", mix, methods.source_key(run_key, 0), 8, 0, 9)
          == methods.TEACHER).all()


def _base_config():
  return tiny.config_module("base").get_config()


# The official settings (docs/DRIVER.md, "Sampling settings"): the SKD code
# (google-research speculative_kd, ddp_skd.py, kd_train.yaml) and TRL's GKD.
# (temperature, top_p, sampling_top_k) of the model that samples.
OFFICIAL = {
    ("skd", methods.SKD): (0.2, 0.5, 50),            # teacher T / top-p, HF top-k 50
    ("skd_mixed", methods.SKD): (0.2, 0.5, 50),
    ("seq_kd", methods.TEACHER): (0.2, 0.5, 50),
    ("seq_kd_divergence", methods.TEACHER): (0.2, 0.5, 50),
    ("on_policy", methods.STUDENT): (0.5, 0.5, 50),  # student T / top-p, HF top-k 50
    ("imitkd", methods.STUDENT): (1.0, 1.0, 50),     # "mixed": generate() defaults
    ("two_stage", methods.STUDENT): (1.0, 1.0, 50),  # "mixed_train": the same
    ("gkd", methods.STUDENT): (0.9, 1.0, 0),         # TRL GKDConfig / GKDTrainer
}


def _settings(scfg):
  temperature = (scfg.student_temperature if scfg.method == "student"
                 else scfg.teacher_temperature)
  return temperature, scfg.top_p, scfg.sampling_top_k


@pytest.mark.parametrize("method,source", sorted(OFFICIAL))
def test_sampling_defaults_are_the_official_ones(method, source):
  c = _base_config()
  scfg = methods.sampler_config(source, c.sampler, max_new_tokens=8, stop_ids=(1,),
                                method=method)
  assert scfg.method == {methods.SKD: "skd", methods.TEACHER: "teacher",
                         methods.STUDENT: "student"}[source]
  assert _settings(scfg) == OFFICIAL[method, source]
  if source == methods.SKD:  # Both models sample with the teacher's settings.
    assert (scfg.student_temperature, scfg.top_k, scfg.gamma) == (0.2, 25, 5)


@pytest.mark.parametrize("method", ["on_policy", "imitkd", "two_stage", "gkd"])
def test_each_student_sampling_setting_is_its_own_knob(method):
  c = _base_config()
  c.sampler[f"{method}_temperature"] = 0.31
  c.sampler[f"{method}_top_p"] = 0.77
  c.sampler[f"{method}_sampling_top_k"] = 7
  for name in OFFICIAL:
    if name[1] != methods.STUDENT:
      continue
    scfg = methods.sampler_config(methods.STUDENT, c.sampler, max_new_tokens=8,
                                  stop_ids=(), method=name[0])
    want = (0.31, 0.77, 7) if name[0] == method else OFFICIAL[name]
    assert _settings(scfg) == want, name
  # Without a method (and for methods that never sample the student alone, e.g.
  # --mode=sample of sft): the on-policy knobs.
  for name in (None, "sft"):
    scfg = methods.sampler_config(methods.STUDENT, c.sampler, max_new_tokens=8,
                                  stop_ids=(), method=name)
    assert _settings(scfg) == ((0.31, 0.77, 7) if method == "on_policy"
                               else OFFICIAL["on_policy", methods.STUDENT])


def test_bad_sampling_knob_of_the_method_is_a_config_error():
  config = tiny_config(method="imitkd", **{"sampler.imitkd_top_p": 0.0})
  with pytest.raises(validate.ConfigError, match=r"sampler.imitkd_top_p=0.0 must be in"):
    validate.validate_config(config, len(jax.devices()))
  validate.validate_config(tiny_config(method="skd", **{"sampler.imitkd_top_p": 0.0}),
                           len(jax.devices()))  # Knobs of other methods are not read.
  with pytest.raises(validate.ConfigError, match=r"sampler.temperature=-1.0 must be >= 0"):
    validate.validate_config(tiny_config(method="seq_kd", **{"sampler.temperature": -1.0}),
                             len(jax.devices()))


def test_two_stage_switches_at_fraction():
  key = jax.random.PRNGKey(0)
  sources = [methods.row_sources("two_stage", MIX, key, 2, s, 10)[0] for s in range(10)]
  assert sources == [methods.GROUND_TRUTH] * 5 + [methods.STUDENT] * 5


def test_assemble_batch_layout():
  class FakeRollout:
    tokens = np.array([[0, 0, 0, 0, 0, 0], [7, 8, 9, 4, 5, 0]])
    from_teacher = np.array([[0] * 6, [0, 0, 0, 1, 0, 0]], bool)
    prompt_length = np.array([0, 3])
    length = np.array([0, 5])
  batch = methods.assemble_batch([[1, 2], [7, 8, 9]], [[3, 4, 5], [99]],
                                 np.array([methods.GROUND_TRUTH, methods.SKD]),
                                 {methods.SKD: FakeRollout}, pad_id=0, buckets=(4, 8))
  np.testing.assert_array_equal(batch["tokens"], [[1, 2, 3, 4, 5, 0, 0, 0],
                                                  [7, 8, 9, 4, 5, 0, 0, 0]])
  np.testing.assert_array_equal(batch["loss_mask"].astype(int), [[0, 0, 1, 1, 1, 0, 0, 0],
                                                                 [0, 0, 0, 1, 1, 0, 0, 0]])
  assert batch["from_teacher"][1].tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
  assert batch["sampled"].tolist() == [False, True]


@pytest.fixture(scope="module")
def env():
  return run_setup.setup(tiny_config(), "/tmp/skdtests/unused")


def _train_rows(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r.get("kind") == "train"]


# One method per (objective, sources) kind: the reference with cross-entropy, teacher
# samples with cross-entropy, SKD and reference rows with the divergence.
@pytest.mark.parametrize("method,sampled", [("sft", 0.0), ("seq_kd", 1.0), ("skd_mixed", None)])
def test_methods_train_end_to_end(method, sampled, tmp_path):
  config = tiny_config(method=method)
  result = loop.run(config, str(tmp_path), "train")
  assert result["step"] == 2
  rows = _train_rows(tmp_path)
  assert [r["step"] for r in rows] == [1, 2]
  assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in rows), rows
  if sampled is not None:   # The logged share of sampled rows is the method's.
    assert all(r["sampled_fraction"] == sampled for r in rows), rows
  assert os.path.isdir(tmp_path / "checkpoints" / "2")
  with open(tmp_path / "samples" / "step_2.jsonl") as f:
    samples = [json.loads(line) for line in f]
  assert 0 < len(samples) <= config.eval.num_samples
  assert all(set(s) == {"id", "prompt", "prediction", "reference"} for s in samples)


@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_every_method_trains_on_rows_from_the_sources_it_claims(env, method):
  """Reference rows are the dataset's prompt + target; sampled rows keep the prompt and
  learn from the completion only; the teacher's share of sampled tokens is 0 for student
  rollouts, 1 for teacher rollouts and in between for SKD."""
  _set_method(env, method)
  dataset, _ = training.train_dataset(env)
  data = next(iter(dataset))
  state = training.create_state(env, 20)
  step, total = 12, 20   # Past two_stage's switch (fraction 0.5).
  batch, stats = rollout.make_train_batch(env, state, data, step, total)
  sources = methods.row_sources(method, env.config.mix, methods.source_key(state.rng, step),
                                env.config.batch_size, step, total)
  assert set(sources.tolist()) <= set(methods.METHODS[method].sources)
  max_new = int(env.config.task.max_new_tokens)
  for b, source in enumerate(sources.tolist()):
    prompt, target = list(data.prompt_ids[b]), list(data.target_ids[b])
    tokens, learn = batch["tokens"][b], np.flatnonzero(batch["loss_mask"][b])
    assert tokens[:len(prompt)].tolist() == prompt, (method, b)
    if source == methods.GROUND_TRUTH:
      assert tokens[len(prompt):len(prompt) + len(target)].tolist() == target, (method, b)
      assert learn.tolist() == list(range(len(prompt), len(prompt) + len(target)))
    else:   # A completion of 1..max_new_tokens tokens right after the prompt.
      assert 1 <= len(learn) <= max_new and learn.tolist() == list(
          range(len(prompt), len(prompt) + len(learn))), (method, b)
  sampled = sources != methods.GROUND_TRUTH
  assert stats["sampled_fraction"] == pytest.approx(np.mean(sampled))
  rollout_sources = set(sources[sampled].tolist())
  if rollout_sources == {methods.STUDENT}:
    assert stats["replacement_rate"] == 0.0
  elif rollout_sources == {methods.TEACHER}:
    assert stats["replacement_rate"] == 1.0
  elif rollout_sources == {methods.SKD}:
    assert 0.0 < stats["replacement_rate"] < 1.0
    assert 0.0 < stats["acceptance_rate"] < 1.0


@pytest.mark.parametrize("method", ["sft", "supervised_kd"])
def test_fixed_batch_loss_decreases(env, method):
  env.config.unlock()
  env.config.method = method
  env.config.lock()
  dataset, _ = training.train_dataset(env)
  state = training.create_state(env, 20)
  batch, _ = rollout.make_train_batch(env, state, next(iter(dataset)), 0, 20)
  losses = []
  for _ in range(20):
    state, metrics = training.apply_step(env, state, batch)
    losses.append(training.mean_of(metrics["loss"]))
  assert losses[-1] < losses[0], losses
  assert sum(b < a for a, b in zip(losses, losses[1:])) >= 15, losses


def _set_method(env, method):
  env.config.unlock()
  env.config.method = method
  env.config.lock()


@pytest.mark.parametrize("method", ["seq_kd", "seq_kd_divergence"])
def test_seq_kd_trains_on_teacher_rows_with_its_objective(env, method):
  """The driver's step on a seq_kd batch is cross-entropy on the teacher's rows;
  on a seq_kd_divergence batch it is the divergence to the teacher."""
  _set_method(env, method)
  dataset, _ = training.train_dataset(env)
  state = training.create_state(env, 20)
  batch, stats = rollout.make_train_batch(env, state, next(iter(dataset)), 0, 20)
  assert stats["sampled_fraction"] == 1.0  # Every row is a teacher sample ...
  assert stats["replacement_rate"] == 1.0  # ... made of teacher tokens only.
  assert batch["loss_mask"].any()
  tokens = jnp.asarray(batch["tokens"])
  positions = step_lib.loss_positions(jnp.asarray(batch["loss_mask"]))
  per_sequence = env.loss_cfg.reduction == "sequence"
  student = transformer.forward(state.params, tokens, env.student.config)[0]
  teacher = transformer.forward(env.teacher.params, tokens, env.teacher.config)[0]
  nll = losses_lib.token_cross_entropy(student, step_lib.next_tokens(tokens))
  cross_entropy = losses_lib.safe_mean(*losses_lib.masked_sum_and_count(
      nll, positions, per_sequence=per_sequence))
  divergence = losses_lib.divergence(
      env.loss_cfg.divergence, teacher, student, positions,
      reduction=env.loss_cfg.reduction, temperature=env.loss_cfg.temperature)
  assert abs(float(cross_entropy) - float(divergence)) > 1e-2
  _, metrics = training.apply_step(env, state, batch)  # Donates state.
  want = cross_entropy if method == "seq_kd" else divergence
  np.testing.assert_allclose(training.mean_of(metrics["loss"]), float(want), rtol=1e-4)


def _completions(workdir) -> list:
  """Completion ids of the latest evaluation written in WORKDIR/eval."""
  latest = sorted(os.listdir(os.path.join(workdir, "eval")))[-1]
  with open(os.path.join(workdir, "eval", latest, "predictions.jsonl")) as f:
    return [json.loads(line)["completion_ids"] for line in f]


def test_eval_mode_starts_from_restore_from(tmp_path):
  """`--mode=eval` with checkpoint.restore_from scores the restored student (the
  comparison's "student, SFT init" row), not the random initial one."""
  trained = str(tmp_path / "trained")
  loop.run(tiny_config(method="sft", max_steps=6, **{"optimizer.learning_rate": 1e-2}),
           trained, "train")
  def evaluate(workdir, restore=""):
    loop.run(tiny_config(**{"checkpoint.restore_from": restore,
                            "eval.final_split": "validation"}), workdir, "eval")
    return _completions(workdir)
  own = evaluate(trained)   # The trained workdir's own latest checkpoint.
  restored = evaluate(str(tmp_path / "restored"), os.path.join(trained, "checkpoints"))
  initial = evaluate(str(tmp_path / "initial"))
  assert restored == own
  assert restored != initial
