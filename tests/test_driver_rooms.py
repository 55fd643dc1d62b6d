"""The driver's small rules, one at a time: what is due, evaluators by name, one
tokenisation per split, the one "offline", the one bucket rule, the shared rule prefix."""
import types

import ml_collections
import pytest

from skd_jax import buckets
from skd_jax import hub
from skd_jax import sharding
from skd_jax.data import pipeline
from skd_jax.train import evaluators
from skd_jax.train.loop import Due
from skd_jax.train.validate import ConfigError


def _schedule(total, log, every, save):
  config = ml_collections.ConfigDict(dict(log_every_steps=log, eval=dict(every_steps=every),
                                          checkpoint=dict(every_steps=save)))
  due = {done: Due.at(done, total, config) for done in range(1, total + 1)}
  return ([d for d, x in due.items() if x.log], [d for d, x in due.items() if x.evaluate],
          [d for d, x in due.items() if x.checkpoint])


def test_due_logs_evaluates_and_checkpoints_on_their_intervals_and_at_the_end():
  assert _schedule(7, log=2, every=3, save=5) == ([2, 4, 6, 7], [3, 6, 7], [3, 5, 6, 7])
  # eval.every_steps=0: only the last step evaluates (and so is checkpointed).
  assert _schedule(4, log=10, every=0, save=100) == ([4], [4], [4])


def _eval_config(**kw):
  return ml_collections.ConfigDict(dict(eval=dict(agreement_batches=1, batch_size=4, **kw)))


def test_evaluators_are_named_in_the_config_and_unknown_names_fail():
  assert evaluators.evaluator_names(_eval_config()) == ("task_metrics", "top1_agreement",
                                                         "samples")
  assert evaluators.evaluator_names(_eval_config(evaluators="samples, task_metrics")) == (
      "samples", "task_metrics")
  with pytest.raises(ConfigError, match=r"eval.evaluators='bleu_only'.*unknown \['bleu_only'\]"):
    evaluators.evaluator_names(_eval_config(evaluators="bleu_only"))


def test_each_split_is_tokenised_once_with_the_most_examples_asked(monkeypatch):
  calls = []

  def fake_encode(task, tokenizer, split, limit=None):
    calls.append((split, limit))
    examples = tuple(range(limit if limit is not None else 100))
    return types.SimpleNamespace(examples=examples)
  monkeypatch.setattr(pipeline, "encode_split", fake_encode)
  run = types.SimpleNamespace(config=_eval_config(), task=None, tokenizer=None)
  evaluation = evaluators.Evaluation(run)
  for _ in range(3):  # Periodic evaluations of 2 examples; agreement reads 1 batch of 4.
    assert len(evaluation.encoded("validation", 2).examples) == 4
  assert len(evaluation.encoded("test", None).examples) == 100   # The whole split.
  assert len(evaluation.encoded("test", 10).examples) == 100     # Covered by the cache.
  assert calls == [("validation", 4), ("test", None)]
  assert len(evaluation.encoded("validation", 8).examples) == 8  # More than cached: again.
  assert calls[-1] == ("validation", 8)


@pytest.mark.parametrize("value,offline", [("1", True), ("true", True), ("ON", True),
                                           ("0", False), ("", False), ("2", False)])
def test_offline_is_parsed_as_huggingface_hub_parses_it(monkeypatch, value, offline):
  monkeypatch.setenv("HF_HUB_OFFLINE", value)
  monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
  assert hub.offline() is offline
  monkeypatch.setenv("HF_HUB_OFFLINE", "0")
  monkeypatch.setenv("TRANSFORMERS_OFFLINE", value)
  assert hub.offline() is offline


def test_one_bucket_rule_in_any_order_and_an_error_past_the_largest():
  assert buckets.bucket(17, (64, 16, 32)) == 32
  assert buckets.bucket(16, (64, 16, 32)) == 16
  assert buckets.power_of_two(100) == (16, 32, 64, 100)
  assert buckets.power_of_two()[-1] == 2 ** 16
  with pytest.raises(ValueError, match=r"prompt length 65 exceeds the largest bucket 64 of "
                                       r"\(16, 32, 64\); add one"):
    buckets.bucket(65, (64, 32, 16), what="prompt length", fix="add one")


def test_student_and_teacher_tables_share_their_first_rules_and_differ_in_params():
  n = len(sharding.SHARED_RULES)
  assert sharding.STUDENT_RULES[:n] == sharding.TEACHER_RULES[:n] == sharding.SHARED_RULES
  assert dict(sharding.STUDENT_RULES[n:])["embed"] == "fsdp"
  assert dict(sharding.TEACHER_RULES[n:])["embed"] is None
  assert sharding.REPLICATED_RULES[:2] == sharding.BATCH_RULES
