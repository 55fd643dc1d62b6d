"""scripts/reproduce.py's paired statistics: the exact sign test, the bootstrap interval,
the paired-difference table (the acceptance-variant setting of docs/RESULTS.md)."""
import math

import pytest

from tests import tiny


@pytest.fixture(scope="module")
def reproduce():
  return tiny.script_module("reproduce")


def test_sign_test_is_exact(reproduce):
  assert reproduce.sign_test([1.0, 2.0, 3.0]) == 0.25            # 2 * (1/2)^3: the 3-seed floor
  assert reproduce.sign_test([-1.0, -2.0, -3.0]) == 0.25
  assert reproduce.sign_test([1.0, -2.0, 3.0]) == 1.0
  assert reproduce.sign_test([1.0] * 10) == 2 / 2 ** 10
  # 8 of 10 positive: 2 * P(X <= 2), X ~ Bin(10, 1/2).
  assert math.isclose(reproduce.sign_test([1.0] * 8 + [-1.0] * 2),
                      2 * sum(math.comb(10, i) for i in range(3)) / 2 ** 10)
  assert reproduce.sign_test([0.0, 1.0, 2.0]) == 0.5               # zeros are dropped
  assert reproduce.sign_test([0.0, 0.0]) == 1.0


def test_bootstrap_interval_is_seeded_and_brackets_the_mean(reproduce):
  diffs = [0.5, 2.0, 3.5, -1.0, 4.0]
  low, high = reproduce.bootstrap_interval(diffs)
  assert (low, high) == reproduce.bootstrap_interval(diffs)
  assert min(diffs) <= low < sum(diffs) / len(diffs) < high <= max(diffs)
  assert reproduce.bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_paired_table(reproduce):
  results = {"SKD raw": {"chrf": [40.0, 50.0, 45.0], "top1_agreement": [0.5, 0.6, 0.55]},
             "SKD warped": {"chrf": [45.0, 52.0, 44.0], "top1_agreement": [0.6, 0.6, 0.6]}}
  table = reproduce.paired_table(results, "chrf", "SKD raw")
  assert "| SKD warped | +5.0 / +2.0 / -1.0 | +2.0 | 1.00 |" in table
  table = reproduce.paired_table(results, "top1_agreement", "SKD raw")
  assert "top1_agreement x 100" in table and "+10.0 / +0.0 / +5.0" in table
  assert set(reproduce.VARIANTS) >= {"raw", "warped", "top_p"}
  assert reproduce.VARIANTS["top_p"] == dict(acceptance="warped", acceptance_top_p=1.0)


def test_paired_table_reference_minus_label(reproduce):
  results = {"supervised KD": {"chrf": [60.0, 66.0, 61.0]},
             "SKD (K = 25)": {"chrf": [62.0, 65.0, 64.0]},
             "student, untrained": {"chrf": [0.0, 0.0, 0.0]}}
  table = reproduce.paired_table(results, "chrf", "SKD (K = 25)", minus_reference=False)
  assert "| SKD (K = 25) minus |" in table
  assert "| supervised KD | +2.0 / -1.0 / +3.0 | +1.3 | 1.00 |" in table
  assert "untrained" not in table            # starting points are not methods


def test_stronger_teacher_changes_the_teacher_and_names_its_folder(reproduce):
  import argparse
  config = reproduce.demo_config("arithmetic", "")
  args = argparse.Namespace(teacher_layers=6, teacher_width=192, teacher_steps=1200)
  assert reproduce.stronger_teacher(config, args) == "_teacher_L6_d192_s1200"
  o = config.teacher.overrides
  assert (o.num_layers, o.hidden_size, o.intermediate_size, o.head_dim) == (6, 192, 768, 48)
  assert config.compare.teacher_steps == 1200
  assert config.student.overrides.hidden_size == 64       # the student is untouched
  none = argparse.Namespace(teacher_layers=0, teacher_width=0, teacher_steps=0)
  assert reproduce.stronger_teacher(reproduce.demo_config("arithmetic", ""), none) == ""


def test_competent_student_starts_from_the_related_task(reproduce, monkeypatch, tmp_path):
  import argparse
  from skd_jax.experiments import compare
  trained = []
  monkeypatch.setattr(compare, "_train_once", lambda c, d: trained.append((c, d)))
  c = reproduce.demo_config("numbers_en_fr", "")
  args = argparse.Namespace(student_init="competent", init_task="numbers_en_de",
                            init_steps=123, sft_init_steps=50)
  reproduce.start_student(c, args, str(tmp_path))
  (init, folder), = trained
  assert init.task.name == "numbers_en_de" and init.method == "sft"
  assert init.max_steps == 123 and init.student.init_seed == c.student.init_seed
  assert c.task.name == "numbers_en_fr"                   # the target task is unchanged
  assert c.checkpoint.restore_from == str(tmp_path / "init_numbers_en_de" / "checkpoints")
  assert folder == str(tmp_path / "init_numbers_en_de")
