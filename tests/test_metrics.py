"""Metrics against hand-computed values."""
import pytest

from skd_jax.evaluation import metrics


def test_bleu_identical_is_100_and_disjoint_is_0():
  refs = ["the cat sat on the mat today", "a quick brown fox jumps high"]
  assert metrics.bleu(refs, refs) == pytest.approx(100.0)
  assert metrics.bleu(["zz yy xx ww vv uu", "qq rr ss tt oo pp"], refs) == pytest.approx(0.0)


def test_chrf_identical_is_100():
  refs = ["trois cent douze", "neuf cent"]
  assert metrics.chrf(refs, refs) == pytest.approx(100.0)
  assert metrics.chrf(["abc", "def"], refs) < 20


def test_rouge_l_hand_computed_from_lcs():
  # pred "a b c d", ref "a c e": LCS = "a c" (2). P = 2/4, R = 2/3,
  # F = 2PR/(P+R) = 2*(1/2)*(2/3)/(1/2+2/3) = (2/3)/(7/6) = 4/7.
  score = metrics.rouge_l(["a b c d"], ["a c e"])
  assert score == pytest.approx(100 * 4 / 7)
  # Two pairs (second identical, F = 1): resampled means are 4/7, 11/14 or 1
  # with probabilities 1/4, 1/2, 1/4, so the bootstrap median is the mean 11/14.
  score = metrics.rouge_l(["a b c d", "x y"], ["a c e", "x y"])
  assert score == pytest.approx(100 * (4 / 7 + 1) / 2)


@pytest.mark.parametrize("text, value", [
    ("so 3 + 4 = 7\n#### 7", 7.0),
    ("#### 1,234", 1234.0),
    ("#### -5", -5.0),
    ("#### $2.50.", 2.5),
    ("#### 3 #### 4", 3.0),    # The first "####" counts, as in the official grader.
    ("The answer is 7", None),
])
def test_extract_gsm8k_answer(text, value):
  assert metrics.extract_gsm8k_answer(text) == value


def test_gsm8k_accuracy():
  preds = ["x\n#### 1,000", "#### 5", "no answer 3", "#### -2.0"]
  refs = ["y\n#### 1000", "#### 6", "#### 3", "-2"]
  assert metrics.gsm8k_accuracy(preds, refs) == pytest.approx(50.0)


def test_boxed_accuracy():
  preds = [r"\boxed{\frac{1}{2}}", r"\boxed{1,000}", r"\boxed{3}", "7"]
  refs = ["0.5", "1000", "4", "7"]
  assert metrics.boxed_accuracy(preds, refs) == pytest.approx(50.0)


def test_exact_match_and_dispatch():
  out = metrics.compute_metrics(["exact_match", "bleu"], ["Trois cent ", "deux"],
                                ["trois cent", "un"])
  assert out["exact_match"] == pytest.approx(50.0)
  with pytest.raises(ValueError, match="Unknown metric"):
    metrics.compute_metrics(["nope"], ["a"], ["a"])
  with pytest.raises(ValueError, match="align"):
    metrics.bleu(["a"], ["a", "b"])


def test_comet_missing_gives_install_hint():
  try:
    import comet  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    pytest.skip("comet installed")
  except ImportError:
    pass
  with pytest.raises(ImportError, match=r"skd_jax\[comet\]"):
    metrics.comet(["a"], ["a"], ["a"])
