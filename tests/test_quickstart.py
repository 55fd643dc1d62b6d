"""Issue 8: the quickstart notebook runs the tiny demo end to end and shows what it computed.

One execution serves every check: the notebook (`notebooks/quickstart.ipynb`, the
`configs/demo.py:tiny` comparison) and the demo's outputs in its workdir. The
notebook's cells must run in order without errors, the table and plot it displays
must be the files the comparison wrote, the scores must be sane, and its SKD rollout
cell must print one completion per prompt whose teacher marks agree with the printed
replacement rates.
"""
import ast
import base64
import json
import math
import os

import nbclient
import nbformat
import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START = "student, numbers_en_de SFT (start)"   # the demo's competent student, before distillation
ROWS = ["teacher (SFT)", START, "supervised FT", "supervised KD",
        "on-policy KD", "ImitKD", "SKD"]
METRICS = ("exact_match", "chrf")   # 0-100 scales (skd_jax/evaluation/metrics.py); no BLEU (configs/demo.py)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("quickstart"))
  os.environ["SKD_QUICKSTART_WORKDIR"] = workdir
  nb = nbformat.read(os.path.join(ROOT, "notebooks", "quickstart.ipynb"), as_version=4)
  client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                                   resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}})
  client.execute()
  return nb, workdir


def _code_cells(nb):
  return [c for c in nb.cells if c.cell_type == "code"]


def _printed(cell) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", [])
                 if o.get("output_type") == "stream")


def test_notebook_runs_every_cell_in_order_without_errors(executed):
  nb, _ = executed
  cells = _code_cells(nb)
  assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
  errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
  assert not errors, errors


def test_notebook_displays_the_table_and_plot_the_comparison_wrote(executed):
  nb, workdir = executed
  shown = [o["data"] for c in _code_cells(nb) for o in c.get("outputs", [])
           if o.get("output_type") == "display_data"]
  markdown = [d["text/markdown"] for d in shown if "text/markdown" in d]
  images = [d["image/png"] for d in shown if "image/png" in d]
  with open(os.path.join(workdir, "comparison.md")) as f:
    assert markdown == [f.read()]
  with open(os.path.join(workdir, "plots", "comparison.png"), "rb") as f:
    assert [base64.b64decode(i) for i in images] == [f.read()]


def test_demo_table_structure_and_teacher_beats_the_starting_student(executed):
  _, workdir = executed
  with open(os.path.join(workdir, "comparison.json")) as f:
    scores = json.load(f)
  assert list(scores) == ROWS
  for row in ROWS:
    assert set(METRICS) <= set(scores[row])
    for metric in METRICS:
      assert 0.0 <= scores[row][metric] <= 100.0, (row, metric, scores[row][metric])
  table = open(os.path.join(workdir, "comparison.md")).read().splitlines()
  assert table[0] == "| model | exact_match | chrf |"
  assert [line.split("|")[1].strip() for line in table[2:]] == ROWS
  for line in table[2:]:   # The table shows the JSON's numbers (one decimal).
    row, *cells = [c.strip() for c in line.strip("|").split("|")]
    assert [float(c) for c in cells] == [round(scores[row][m], 1) for m in METRICS], line
  assert scores["teacher (SFT)"]["chrf"] > scores[START]["chrf"] + 5
  assert os.path.getsize(os.path.join(workdir, "plots", "comparison.png")) > 10_000


def test_skd_rollout_cell_marks_the_teacher_tokens_it_counts(executed):
  nb, _ = executed
  lines = _printed(_code_cells(nb)[-1]).splitlines()
  rates_line = [l for l in lines if l.startswith("replacement rate per sequence:")]
  replies_line = [l for l in lines if l.startswith("replies:")]
  assert len(rates_line) == 1 and len(replies_line) == 1, lines
  rates = ast.literal_eval(rates_line[0].split(":", 1)[1].strip())
  replies = ast.literal_eval(replies_line[0].split(":", 1)[1].strip())
  completions = lines[:lines.index(replies_line[0])]
  assert len(rates) == len(replies) == len(completions) == 3   # One per prompt.
  assert all(isinstance(r, str) for r in replies)
  for line, rate in zip(completions, rates):
    assert 0.0 <= rate <= 1.0 and math.isfinite(rate)
    # Teacher-sampled tokens are printed in brackets: some exactly when the rate is > 0.
    assert ("[" in line) == (rate > 0), (line, rate)
