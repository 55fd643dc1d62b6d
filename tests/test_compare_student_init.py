"""compare.student_init_task: every method starts from an SFT on a related task."""
import os

from skd_jax import main as main_lib
from skd_jax.experiments import compare
from tests import tiny


def _demo(**compare_keys):
  c = tiny.config_module("demo").get_config("tiny")
  c.compare.update(compare_keys)
  return c


def test_plan_trains_the_start_first_and_every_method_restores_it(tmp_path):
  c = _demo(student_init_task="numbers_en_de", student_init_steps=7)
  plan = compare.planned_runs(c, str(tmp_path))
  names = [os.path.basename(run_dir) for _, run_dir, _, _ in plan]
  assert names[:3] == ["teacher", "student_init", "untrained"]
  init = plan[1][0]
  assert (init.task.name, init.method, init.max_steps) == ("numbers_en_de", "sft", 7)
  assert not init.checkpoint.restore_from
  start = str(tmp_path / "student_init" / "checkpoints")
  for run_config, run_dir, mode, made in plan[2:]:
    assert run_config.checkpoint.restore_from == start, run_dir
    assert run_config.task.name == "numbers_en_fr"
    assert "restore_from" in made and "teacher" in made
  assert compare.start_label(c) == "student, numbers_en_de SFT (start)"
  # Preflight accepts the plan although the start checkpoint is made by the job itself.
  assert main_lib._checks(c, str(tmp_path), "train", overwrite=False) == []  # pylint: disable=protected-access


def test_without_a_start_task_the_plan_is_unchanged(tmp_path):
  weak = _demo(student_init_task="")   # the demo's default is the competent start
  plan = compare.planned_runs(weak, str(tmp_path))
  names = [os.path.basename(run_dir) for _, run_dir, _, _ in plan]
  assert names[:2] == ["teacher", "untrained"] and "student_init" not in names
  assert all(not run_config.checkpoint.restore_from for run_config, _, _, _ in plan)
  assert compare.start_label(weak) == "student, untrained"
