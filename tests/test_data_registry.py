"""The task registry: one file per task, generated sources, shipped-task generators."""
import pytest

from skd_jax.data import offline_tasks
from skd_jax.data import sources
from skd_jax.data import task as task_lib
from skd_jax.data import tasks


def test_every_task_is_registered_by_its_own_file():
  modules = {name: task_lib._REGISTRY[name].__module__  # pylint: disable=protected-access
             for name in tasks.list_tasks()}
  assert all(m.startswith("skd_jax.data.tasks.") for m in modules.values()), modules
  assert modules["gsm8k"] == "skd_jax.data.tasks.gsm8k"
  assert modules["numbers_en_fr"] == modules["numbers_en_de"] == "skd_jax.data.tasks.numbers"


def test_a_name_is_registered_once():
  with pytest.raises(ValueError, match="'gsm8k' is already registered"):
    tasks.register_task("gsm8k")(lambda **kw: None)


def test_shipped_tasks_register_their_generators():
  assert sorted(tasks.offline_generators()) == ["aclsum", "arithmetic", "numbers_en_de",
                                                "numbers_en_fr"]
  with pytest.raises(ValueError, match=r"No offline generator for tasks \['gsm8k'\]"):
    offline_tasks.write_offline_tasks("/nonexistent", tasks=["gsm8k"])


def _generated(answer: str) -> sources.Source:
  records = {"train": [{"id": "a", "input": "1 + 1", "target": answer, "answer": answer}]}
  return sources.generated_source("adder", lambda: records)


def test_a_generated_source_is_keyed_by_its_records():
  """Its tfds cache name changes with what the generator makes, not otherwise."""
  same, again, other = _generated("2"), _generated("2"), _generated("3")
  assert sources.fingerprint_source(same) == sources.fingerprint_source(again)
  assert sources.fingerprint_source(same) != sources.fingerprint_source(other)
  splits = same.make_splits(sources.make_reader(same))
  assert splits == {"train": [{"id": "a", "input": "1 + 1", "target": "2", "answer": "2"}],
                    "validation": [], "test": []}
  bad = sources.generated_source("bad", lambda: {"dev": []})
  with pytest.raises(ValueError, match=r"generated splits \['dev'\]"):
    bad.make_splits(sources.make_reader(bad))
