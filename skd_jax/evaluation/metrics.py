"""Task metrics from the field's libraries (scores on a 0-100 scale).

* "bleu", "chrf": sacrebleu corpus-level scores (default tokenisation: 13a).
* "rougeL": ROUGE-L F-measure x100 exactly as HF `evaluate`'s "rouge" metric
  (the official SKD summarisation evaluation) computes it: rouge-score's
  default tokenizer, NO stemming, per-pair F aggregated by rouge-score's
  `BootstrapAggregator` (mid = median of 1000 resampled means), seeded with 0.
  "rougeL_stem": the same with Porter stemming.
* "gsm8k_accuracy": % of predictions whose number right after the FIRST
  "####" (as the official grader reads it) equals the reference's exactly, as
  rationals ("1,000" == "1000", "5.0" == "5", "3/4" == "0.75", "- 5" == "-5").
* "boxed_accuracy": % whose last \\boxed{} answer equals the reference answer
  by `grader.math_equal` (string, numeric, then sympy under a time limit).
* "exact_match": % of predictions equal to the reference after stripping
  surrounding whitespace and case-folding.
* "comet": optional, Unbabel COMET (default model Unbabel/wmt22-comet-da), x100.

`compute_metrics(names, predictions, references, sources=...)` dispatches by
name; predictions are completions already cut at the task's stop strings.
"""

from __future__ import annotations

import fractions
import os
import re
from typing import Callable, Sequence

from skd_jax.evaluation import grader

def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
  if len(predictions) != len(references):
    raise ValueError(f"{len(predictions)} predictions but {len(references)} "
                     "references; they must align one to one.")
  if not predictions:
    raise ValueError("No predictions to score.")


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
  """sacrebleu corpus BLEU (one reference per example)."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  _check_lengths(predictions, references)
  return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
  """sacrebleu corpus chrF (character n-gram F-score, beta 2)."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  _check_lengths(predictions, references)
  return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


ROUGE_BOOTSTRAP_SEED = 0


def rouge_l(predictions: Sequence[str], references: Sequence[str],
            use_stemmer: bool = False, aggregate: str = "bootstrap",
            seed: int = ROUGE_BOOTSTRAP_SEED, n_samples: int = 1000) -> float:
  """ROUGE-L F-measure x100 as HF `evaluate`'s "rouge" metric computes it.

  rouge-score's `RougeScorer(["rougeL"], use_stemmer=...)` with its default
  tokenizer (lower-cased, runs of [a-z0-9]; Porter-stemmed tokens longer than
  3 characters when `use_stemmer`) scores each (reference, prediction) pair by
  the longest common subsequence.

  Args:
    use_stemmer: False as in `evaluate` and the official SKD evaluation.
    aggregate: "bootstrap" (`evaluate`'s default, `use_aggregator=True`): the
      `mid` F-measure of rouge-score's `BootstrapAggregator`, i.e. the median
      of `n_samples` means of resamples of the per-pair F-measures, with numpy's
      global generator seeded with `seed` (and restored afterwards), so it
      equals `evaluate` run right after `np.random.seed(seed)`; "mean": the
      plain mean of the per-pair F-measures (which the bootstrap median
      estimates, within Monte-Carlo noise of about 0.01 points on 1.5K pairs).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  from rouge_score import scoring  # pylint: disable=g-import-not-at-top
  _check_lengths(predictions, references)
  scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
  scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
  if aggregate == "mean":
    return 100.0 * sum(s["rougeL"].fmeasure for s in scores) / len(scores)
  if aggregate != "bootstrap":
    raise ValueError(f"aggregate={aggregate!r}; expected 'bootstrap' or 'mean'.")
  aggregator = scoring.BootstrapAggregator(n_samples=n_samples)
  for score in scores:
    aggregator.add_scores(score)
  state = np.random.get_state()
  np.random.seed(seed)
  try:
    result = aggregator.aggregate()
  finally:
    np.random.set_state(state)
  return 100.0 * float(result["rougeL"].mid.fmeasure)


def rouge_l_stem(predictions: Sequence[str], references: Sequence[str]) -> float:
  """`rouge_l` with Porter stemming (not the paper's setting)."""
  return rouge_l(predictions, references, use_stemmer=True)


# After the first "####" on its line: an optional "$", a sign (spaces allowed
# after it: "- 5"), digits with commas, an optional decimal part, an optional
# "/ denominator". Whatever follows the number ("." "%" " apples") is ignored.
_GSM8K_NUMBER = re.compile(
    r"^\$?\s*(?P<sign>[-\u2212+]?)\s*\$?\s*"
    r"(?P<num>\d[\d,]*(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d[\d,]*(?:\.\d+)?))?")


def extract_gsm8k_answer(text: str) -> fractions.Fraction | None:
  """The exact number right after the FIRST "####" (on that line), or None.

  As the official SKD grader (`text.split("####")[1].split("\\n")[0]`) and
  OpenAI's GSM8K `extract_answer` (first match): a later "####" is ignored.
  Reads "1,234" (commas dropped), "-5" and "- 5", "2.50", "$7", "3/4"; a
  trailing "." or "%" or unit is ignored. None without "####", when the line
  after it does not start with a number, or for a zero denominator.
  """
  if "####" not in text:
    return None
  line = text.split("####", 2)[1].split("\n", 1)[0].strip()
  match = _GSM8K_NUMBER.match(line)
  if match is None:
    return None
  try:
    value = fractions.Fraction(match.group("num").replace(",", ""))
    den = fractions.Fraction((match.group("den") or "1").replace(",", ""))
  except ValueError:  # More digits than Python converts (sys.get_int_max_str_digits).
    return None
  if den == 0:
    return None
  value /= den
  return -value if match.group("sign") in ("-", "\u2212") else value


def gsm8k_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
  """% of predictions whose first-"####" number equals the reference's exactly.

  References are GSM8K answers ("... #### 72") or bare numbers ("72"). Values
  are compared as exact rationals: "5.0" == "5", "1,000" == "1000",
  "3/4" == "0.75", but 10001 != 10000 (no tolerance, no percent scaling).
  """
  _check_lengths(predictions, references)
  correct = 0
  for pred, ref in zip(predictions, references):
    ref_value = extract_gsm8k_answer(ref if "####" in ref else f"#### {ref}")
    if ref_value is None:
      raise ValueError(f"Reference {ref!r} has no number after '####'.")
    correct += extract_gsm8k_answer(pred) == ref_value
  return 100.0 * correct / len(predictions)


def boxed_accuracy(predictions: Sequence[str], references: Sequence[str],
                   timeout: float = grader.DEFAULT_TIMEOUT_S) -> float:
  """% of predictions whose last \\boxed{} matches the reference (an answer
  or a solution with \\boxed{})."""
  _check_lengths(predictions, references)
  correct = sum(grader.boxed_correct(p, r, timeout) for p, r in zip(predictions, references))
  return 100.0 * correct / len(predictions)


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
  _check_lengths(predictions, references)
  correct = sum(p.strip().casefold() == r.strip().casefold()
                for p, r in zip(predictions, references))
  return 100.0 * correct / len(predictions)


COMET_DEFAULT_MODEL = "Unbabel/wmt22-comet-da"


def comet(predictions: Sequence[str], references: Sequence[str], sources: Sequence[str],
          model: str = COMET_DEFAULT_MODEL, batch_size: int = 16, gpus: int = 0) -> float:
  """COMET system score x100 (optional dependency).

  Args:
    model: a hub id (downloaded when online) or a local checkpoint path
      (`.../checkpoints/model.ckpt`), e.g. from `$COMET_MODEL`.

  Raises:
    ImportError: `comet` is not installed.
    FileNotFoundError: the model is not available offline.
  """
  _check_lengths(predictions, references)
  try:
    import comet as comet_lib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("The COMET metric needs `pip install skd_jax[comet]` "
                      "(unbabel-comet>=2.2), then the model "
                      f"{COMET_DEFAULT_MODEL!r}: online it downloads itself; offline "
                      "pass model='/path/to/checkpoints/model.ckpt' or set "
                      "$COMET_MODEL.") from e
  model = os.environ.get("COMET_MODEL", model)
  if os.path.exists(model):
    path = model
  else:
    try:
      path = comet_lib.download_model(model)
    except Exception as e:  # pylint: disable=broad-except  # Offline / no access.
      raise FileNotFoundError(
          f"COMET model {model!r} is not available ({e}). Download it once online "
          "(`comet.download_model(...)`, it is gated on the hub: accept its "
          "licence) and pass model= or $COMET_MODEL as the local "
          "checkpoints/model.ckpt path.") from e
  scorer = comet_lib.load_from_checkpoint(path)
  data = [{"src": s, "mt": p, "ref": r} for s, p, r in zip(sources, predictions, references)]
  output = scorer.predict(data, batch_size=batch_size, gpus=gpus, progress_bar=False)
  return 100.0 * float(output.system_score)


_METRICS: dict[str, Callable[..., float]] = {
    "bleu": bleu, "chrf": chrf, "rougeL": rouge_l, "rougeL_stem": rouge_l_stem,
    "gsm8k_accuracy": gsm8k_accuracy,
    "boxed_accuracy": boxed_accuracy, "exact_match": exact_match,
}


def compute_metrics(names: Sequence[str], predictions: Sequence[str],
                    references: Sequence[str],
                    sources: Sequence[str] | None = None) -> dict[str, float]:
  """{name: score} for each metric name; "comet" needs `sources`."""
  out = {}
  for name in names:
    if name == "comet":
      if sources is None:
        raise ValueError("The comet metric needs sources= (the inputs).")
      out[name] = comet(predictions, references, sources)
    elif name in _METRICS:
      out[name] = _METRICS[name](predictions, references)
    else:
      raise ValueError(f"Unknown metric {name!r}; known: {sorted(_METRICS) + ['comet']}.")
  return out
