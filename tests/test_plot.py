"""`python -m skd_jax.plot` on a finished tiny run writes non-blank PNGs."""
import os

import matplotlib.image
import numpy as np

from skd_jax import plot
from skd_jax.train import loop
from tests.test_methods import tiny_config


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
