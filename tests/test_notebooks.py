"""Notebook structure (issue 14): a Colab badge, an install cell that needs no editing,
quiet progress, and saved outputs of a real run in the quickstart. Fast: nothing trains
here (tests/test_quickstart.py executes the quickstart)."""
import os
import subprocess

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ("quickstart.ipynb", "tpu_vm.ipynb")


def read(name):
  return nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_colab_badge_and_install_cell(name, tmp_path, monkeypatch):
  nb = read(name)
  first = nb.cells[0]
  assert first.cell_type == "markdown" and "colab-badge.svg" in first.source
  assert "colab.research.google.com/github/" in first.source and f"notebooks/{name}" in first.source
  install = nb.cells[1].source
  assert "REPO_URL" not in install
  # Run from the notebooks/ folder of this checkout: it finds the checkout, installs nothing.
  calls = []
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
  monkeypatch.chdir(os.path.join(ROOT, "notebooks"))
  namespace = {}
  exec(compile(install, f"{name} install cell", "exec"), namespace)  # pylint: disable=exec-used
  assert os.path.samefile(namespace["ROOT"], ROOT) and os.path.samefile(os.getcwd(), ROOT)
  assert not calls, f"the install cell ran {calls} inside an installed checkout"
  # Outside any checkout it clones (here: the call is recorded, not run).
  monkeypatch.chdir(tmp_path)
  try:
    exec(compile(install, f"{name} install cell", "exec"), {})  # pylint: disable=exec-used
  except (FileNotFoundError, OSError):
    pass   # chdir into the clone that the recorded call did not make
  assert calls and calls[0][0][:2] == ["git", "clone"]


def test_quickstart_is_quiet_and_saved_with_outputs():
  nb = read("quickstart.ipynb")
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert "TQDM_DISABLE" in "".join(c.source for c in code)
  assert all(c.get("outputs") for c in code), "a code cell has no saved output"
  outputs = [o for c in code for o in c.outputs]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  text = "".join(o.get("text", "") for o in outputs)
  assert "IProgress" not in text and "%|" not in text          # no widget warning, no bars
  train = next(c for c in code if "run_comparison" in c.source)
  assert len(train.outputs) < 40
  assert "Test-set scores" in "".join(o.get("text", "") for o in train.outputs)
  assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
             for o in outputs)
