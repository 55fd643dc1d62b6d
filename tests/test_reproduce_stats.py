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
