"""What the driver hands the sampler: the task's stop strings and each model's rules."""
import pytest

from skd_jax import sharding
from skd_jax.train import loop
from skd_jax.train import methods
from skd_jax.train import rollout
from skd_jax.train import run_setup
from tests.tiny import tiny_config


@pytest.fixture(scope="module")
def env():
  # "\n\n" (the GSM8K stop) is two tokens of the tiny tokenizer: only a stop
  # sequence can end a completion on it.
  sharding.RULE_SETS.setdefault("my_fsdp", sharding.get_rules("student"))
  config = tiny_config("gemma_gsm8k", **{"student.rules": "my_fsdp"})
  return run_setup.setup(config, "/tmp/skdtests/wiring")


def test_rollouts_and_evaluation_stop_on_multi_token_stop_strings(env):
  newline = env.tokenizer.encode("\n", add_special_tokens=False)
  assert env.tokenizer.encode("a\n\nb", add_special_tokens=False).count(newline[0]) == 2
  expected = env.task.stop_sequences(env.tokenizer)
  assert expected == (tuple(newline * 2),)
  for source in (methods.STUDENT, methods.SKD, methods.TEACHER):
    assert rollout.rollout_sampler_config(env, source).stop_sequences == expected
  assert rollout.eval_sampler_config(env).stop_sequences == expected


def test_each_models_rule_table_reaches_the_sampler(env):
  for scfg in (rollout.rollout_sampler_config(env, methods.SKD), rollout.eval_sampler_config(env)):
    assert (scfg.student_rules, scfg.teacher_rules) == ("my_fsdp", "teacher")


def test_final_score_covers_the_whole_split_unless_final_limit(tmp_path):
  # eval.limit bounds periodic evaluations only; the paper scores whole test sets.
  import json
  import os
  config = tiny_config(**{"eval.final_split": "test", "eval.limit": 4, "eval.final_limit": 0,
                          "eval.batch_size": 50, "eval.agreement_batches": 0})
  scores = loop.run(config, str(tmp_path / "all"), "eval")
  assert scores["num_examples"] == 100          # numbers_en_fr's whole test split.
  with open(os.path.join(tmp_path, "all", "result.json")) as f:
    result = json.load(f)
  assert result["final"]["num_examples"] == 100 and result["step"] == 0
  config.eval.final_limit = 10
  assert loop.run(config, str(tmp_path / "ten"), "eval")["num_examples"] == 10
