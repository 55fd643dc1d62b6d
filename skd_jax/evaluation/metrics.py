"""Task metrics from the field's libraries (scores on a 0-100 scale).

* "bleu", "chrf": sacrebleu corpus-level scores (default tokenisation: 13a).
* "rougeL": rouge-score ROUGE-L F-measure (with Porter stemming, as usual for
  summarisation), averaged over examples, x100.
* "gsm8k_accuracy": % of predictions whose number after the last "####"
  equals the reference's (thousands separators, negatives, decimals read).
* "boxed_accuracy": % whose last \\boxed{} answer equals the reference answer
  by `grader.math_equal` (string, numeric, then sympy under a time limit).
* "exact_match": % of predictions equal to the reference after stripping
  surrounding whitespace and case-folding.
* "comet": optional, Unbabel COMET (default model Unbabel/wmt22-comet-da), x100.

`compute_metrics(names, predictions, references, sources=...)` dispatches by
name; predictions are completions already cut at the task's stop strings.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Sequence

from skd_jax.evaluation import grader

_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


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


def rouge_l(predictions: Sequence[str], references: Sequence[str],
            use_stemmer: bool = True) -> float:
  """Mean ROUGE-L F-measure x100 (rouge-score; LCS over its tokenisation)."""
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  _check_lengths(predictions, references)
  scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
  scores = [scorer.score(ref, pred)["rougeL"].fmeasure
            for pred, ref in zip(predictions, references)]
  return 100.0 * sum(scores) / len(scores)


def extract_gsm8k_answer(text: str) -> float | None:
  """The number after the last "####" ("1,234", "-5", "2.50", "$7" read), or None."""
  if "####" not in text:
    return None
  tail = text.rsplit("####", 1)[1].replace("$", "").strip()
  match = _NUMBER.search(tail)
  if match is None:
    return None
  digits = match.group(0).replace(",", "")
  try:
    return float(digits)
  except ValueError:
    return None


def gsm8k_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
  """% of predictions whose "####" number equals the reference's (or the
  reference itself when it is a bare number)."""
  _check_lengths(predictions, references)
  correct = 0
  for pred, ref in zip(predictions, references):
    ref_value = extract_gsm8k_answer(ref if "####" in ref else f"#### {ref}")
    pred_value = extract_gsm8k_answer(pred)
    if ref_value is None:
      raise ValueError(f"Reference {ref!r} has no number after '####'.")
    correct += pred_value is not None and grader.numbers_close(pred_value, ref_value)
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
    "bleu": bleu, "chrf": chrf, "rougeL": rouge_l, "gsm8k_accuracy": gsm8k_accuracy,
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
