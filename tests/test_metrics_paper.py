"""ROUGE-L as HF evaluate computes it; GSM8K answers as the official grader reads them."""
from fractions import Fraction

import numpy as np
import pytest

from skd_jax.evaluation import metrics

# Seven pairs whose per-pair F-measures are skewed enough that the bootstrap
# median (seed 0) differs from the plain mean.
PREDS = ["a b c d", "x y", "p q r s t", "the cat", "one two three four five six seven",
         "alpha", "b a"]
REFS = ["a c e", "x y", "z", "the cat sat on a mat today", "one", "alpha", "a b c"]


def _evaluate_rouge_l(predictions, references, seed):
  """What `evaluate.load("rouge").compute(predictions=..., references=...)`
  returns for "rougeL" after `np.random.seed(seed)` (huggingface/evaluate
  metrics/rouge/rouge.py `_compute`: use_stemmer=False, tokenizer=None,
  use_aggregator=True -> BootstrapAggregator().aggregate()[key].mid.fmeasure)."""
  from rouge_score import rouge_scorer, scoring  # pylint: disable=g-import-not-at-top
  scorer = rouge_scorer.RougeScorer(rouge_types=["rougeL"], use_stemmer=False, tokenizer=None)
  aggregator = scoring.BootstrapAggregator()
  for ref, pred in zip(references, predictions):
    aggregator.add_scores(scorer.score(ref, pred))
  np.random.seed(seed)
  return aggregator.aggregate()["rougeL"].mid.fmeasure


def test_rouge_l_stemming_is_off_by_default_and_rouge_l_stem_turns_it_on():
  # Tokens: [the, cats, are, running] vs [the, cat, is, running]; LCS "the
  # running" = 2 of 4 each way: F = 1/2. Porter stemming (tokens > 3 chars)
  # makes cats -> cat, running -> run: LCS "the cat run" = 3 of 4: F = 3/4.
  pred, ref = ["The cats are running."], ["the cat is running"]
  assert metrics.rouge_l(pred, ref) == pytest.approx(50.0)
  assert metrics.rouge_l(pred, ref, use_stemmer=True) == pytest.approx(75.0)
  out = metrics.compute_metrics(["rougeL", "rougeL_stem"], pred, ref)
  assert out == pytest.approx({"rougeL": 50.0, "rougeL_stem": 75.0})


def test_rouge_l_is_rougeL_not_rougeLsum():
  # rougeLsum would split at newlines and take the union LCS per sentence;
  # rougeL treats the text as one sequence: "b a" vs "a b" has LCS 1 (F = 1/2)
  # whatever the newlines.
  assert metrics.rouge_l(["b\na"], ["a\nb"]) == pytest.approx(50.0)


def test_rouge_l_aggregate_equals_hf_evaluate_bootstrap_mid():
  expected = 100 * _evaluate_rouge_l(PREDS, REFS, seed=metrics.ROUGE_BOOTSTRAP_SEED)
  assert metrics.rouge_l(PREDS, REFS) == expected  # Bit for bit.
  assert metrics.compute_metrics(["rougeL"], PREDS, REFS)["rougeL"] == expected
  for seed in (1, 2):
    assert metrics.rouge_l(PREDS, REFS, seed=seed) == 100 * _evaluate_rouge_l(PREDS, REFS, seed)
  # The median of resampled means is not the mean here (it would be for a
  # metric that averaged), but it is close to it.
  mean = metrics.rouge_l(PREDS, REFS, aggregate="mean")
  assert mean == pytest.approx(100 * (4 / 7 + 1 + 0 + 4 / 9 + 1 / 4 + 1 + 2 / 5) / 7)
  assert expected != pytest.approx(mean, abs=1e-6)
  assert expected == pytest.approx(mean, abs=1.0)


def test_rouge_l_leaves_numpy_global_rng_alone():
  np.random.seed(123)
  want = np.random.rand(3)
  np.random.seed(123)
  metrics.rouge_l(PREDS, REFS)
  np.testing.assert_array_equal(np.random.rand(3), want)
  with pytest.raises(ValueError, match="aggregate"):
    metrics.rouge_l(PREDS, REFS, aggregate="median")


@pytest.mark.parametrize("text, value", [
    ("#### 1,000", Fraction(1000)),
    ("#### 1,234,567", Fraction(1234567)),
    ("#### 5.0", Fraction(5)),
    ("#### 0.75", Fraction(3, 4)),
    ("#### 3/4", Fraction(3, 4)),
    ("#### 3 / 4 cups", Fraction(3, 4)),
    ("#### - 5", Fraction(-5)),          # Space after the minus sign.
    ("####-5", Fraction(-5)),
    ("#### \u22125", Fraction(-5)),       # Unicode minus.
    ("#### $18", Fraction(18)),
    ("#### $ 1,200.50", Fraction(240100, 200)),
    ("#### -$7", Fraction(-7)),
    ("#### 18.", Fraction(18)),          # Trailing period.
    ("#### $18.", Fraction(18)),
    ("#### 50%", Fraction(50)),          # The percent sign is ignored, not scaled.
    ("#### 7 apples", Fraction(7)),
    ("#### 3 #### 4", Fraction(3)),      # The first "####" counts.
    ("#### 3\nmore text\n#### 4", Fraction(3)),
    ("so it is 12.\n#### 12\n", Fraction(12)),
    ("The answer is 7.", None),          # No "####": wrong.
    ("####\n7", None),                   # Nothing on the "####" line.
    ("#### the answer is 7", None),      # The line must start with the number.
    ("#### x", None),
    ("#### 1/0", None),
    ("####", None),
    ("#### " + "9" * 5000, None),        # Past Python's int-conversion limit: no crash.
])
def test_extract_gsm8k_answer_adversarial(text, value):
  assert metrics.extract_gsm8k_answer(text) == value


@pytest.mark.parametrize("pred, ref, correct", [
    ("#### 1,000", "#### 1000", True),
    ("#### 1000", "1,000", True),
    ("#### 5.0", "5", True),             # Same number: equal.
    ("#### 5.00", "#### 5", True),
    ("#### 5.01", "5", False),
    ("#### 10001", "10000", False),      # No relative tolerance (1e-4 would accept).
    ("#### 500", "5", False),            # No percent scaling (the official grader accepts).
    ("#### 0.05", "5", False),
    ("#### 3/4", "0.75", True),
    ("#### - 5", "-5", True),
    ("#### 5", "-5", False),
    ("#### $18.", "#### 18", True),
    ("#### 4 #### 3", "3", False),       # The first "####" counts ...
    ("#### 3 #### 4", "3", True),        # ... even when a later one is right.
    ("The answer is 3", "3", False),
    ("3", "3", False),                   # A bare number is not an answer.
])
def test_gsm8k_accuracy_adversarial(pred, ref, correct):
  assert metrics.gsm8k_accuracy([pred], [ref]) == (100.0 if correct else 0.0)


def test_gsm8k_unreadable_reference_raises():
  with pytest.raises(ValueError, match="no number"):
    metrics.gsm8k_accuracy(["#### 3"], ["#### three"])
