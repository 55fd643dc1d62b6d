"""Plots: a finished tiny run gives non-blank PNGs; the figures themselves are checked for
what issue 14 asked (final test score a separate marker, agreement on its own axis,
legends off the curves) by inspecting the matplotlib objects."""
import os

import matplotlib.image
import numpy as np
import pytest

from skd_jax import plot
from skd_jax.train import loop
from tests.tiny import tiny_config


def test_plot_finished_run(tmp_path):
  config = tiny_config(method="skd", max_steps=3)
  loop.run(config, str(tmp_path), "train")
  assert plot.main(["plot", str(tmp_path)]) == 0
  for name in ("loss.png", "eval.png", "replacement_rate.png"):
    path = tmp_path / "plots" / name
    assert os.path.getsize(path) > 5000, name
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and np.var(image[..., :3]) > 0, name


def test_plot_missing_run(tmp_path, capsys):
  assert plot.main(["plot", str(tmp_path)]) == 2
  assert "error:" in capsys.readouterr().err


def _evals(val_chrf, test_chrf, val_split="validation"):
  """Eval rows as the driver writes them: periodic ones, then the final test row."""
  rows = [{"kind": "eval", "step": 10 * (i + 1), "split": val_split, "chrf": c,
           "top1_agreement": 0.2 + 0.1 * i, "num_examples": 16} for i, c in enumerate(val_chrf)]
  last = rows[-1]["step"]
  rows.append({"kind": "eval", "step": last, "split": "test", "chrf": test_chrf,
               "top1_agreement": 0.55, "num_examples": 100})
  return rows, {"final": {"chrf": test_chrf}, "step": last, "split": "test"}


def _lines(ax):
  return {line.get_label(): line for line in ax.get_lines()}


def _legend_clear_of_axes(fig):
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
  assert legends, "no legend"
  for legend in legends:
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
      assert not box.overlaps(ax.get_window_extent(renderer)), "the legend covers an axes"


@pytest.mark.parametrize("val_split", ["validation", "test"])
def test_comparison_marks_the_final_test_score_separately(val_split):
  runs = {"SKD": _evals([40.0, 60.0, 70.0], 20.0, val_split),
          "on-policy KD": _evals([30.0, 35.0], 10.0, val_split)}
  fig = plot.comparison_figure(runs, "chrf", rate_runs=())
  ax = fig.axes[0]
  lines = _lines(ax)
  for label, (val, test) in {"SKD": ([40, 60, 70], 20), "on-policy KD": ([30, 35], 10)}.items():
    curve = lines[f"{label}, validation"]
    assert list(curve.get_ydata()) == val            # the test score is not joined onto it
    marker = lines[f"{label}, test (final)"]
    assert marker.get_linestyle() == "None" and marker.get_marker() == plot.FINAL_MARKER
    assert list(marker.get_ydata()) == [test]
    assert list(marker.get_xdata()) == [curve.get_xdata()[-1]]
    assert marker.get_color() == curve.get_color()
  _legend_clear_of_axes(fig)


def test_eval_puts_agreement_on_its_own_axis():
  rows, result = _evals([40.0, 60.0], 50.0)
  fig = plot.eval_figure(rows, result)
  score_ax, frac_ax = fig.axes
  assert score_ax.get_shared_x_axes().joined(score_ax, frac_ax)    # a twin of one x axis
  score_lines, frac_lines = _lines(score_ax), _lines(frac_ax)
  assert set(score_lines) == {"validation/chrf", "test/chrf (final)"}
  assert set(frac_lines) == {"validation/top1_agreement", "test/top1_agreement (final)"}
  assert list(frac_lines["validation/top1_agreement"].get_ydata()) == pytest.approx([0.2, 0.3])
  low, high = frac_ax.get_ylim()
  assert -0.1 < low <= 0 and 1 <= high < 1.1                       # the 0-1 scale, not 0-100
  assert score_ax.get_ylim()[1] >= 60
  assert frac_lines["test/top1_agreement (final)"].get_linestyle() == "None"
  _legend_clear_of_axes(fig)


def test_is_fraction():
  assert plot.is_fraction("top1_agreement") and plot.is_fraction("replacement_rate")
  assert not any(plot.is_fraction(n) for n in ("chrf", "bleu", "exact_match", "rougeL"))
