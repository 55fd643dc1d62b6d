"""Preflight: every bad input reported at once, with its fix, before any weights load."""
import os
import subprocess
import sys

import pytest

from skd_jax import main as main_lib
from skd_jax.models.model import Model
from skd_jax.train import preflight
from tests.tiny import ROOT, tiny_config


def _broken_config(tmp_path):
  """Seven independent problems: two hub ids offline, a tokenizer path, four
  Flores files, plus a workdir that is a file."""
  config = tiny_config(**{"student.path": "google/gemma-2b-it",
                          "teacher.path": "google/gemma-7b-it",
                          "tokenizer": str(tmp_path / "no_tokenizer"),
                          "task.name": "translation",
                          "task.raw_dir": str(tmp_path / "raw")})
  workdir = tmp_path / "a_file"
  workdir.write_text("not a directory")
  return config, str(workdir)


def test_lists_every_missing_input_with_its_fix(tmp_path):
  config, workdir = _broken_config(tmp_path)
  problems = preflight.check(config, workdir)
  keys = [p.key for p in problems]
  assert keys.count("student.path") == 1 and keys.count("teacher.path") == 1, problems
  assert "tokenizer" in keys and "workdir" in keys
  assert keys.count("task.raw_dir") == 4, problems    # Flores: dev + devtest, both languages.
  text = "\n".join(map(str, problems))
  # The current huggingface_hub CLI, not the removed huggingface-cli.
  assert "hf download google/gemma-2b-it --local-dir" in text
  assert "--config.teacher.path=" in text and "huggingface-cli" not in text
  assert "--repo-type dataset" in text and "is a file, not a directory" in text
  assert all(p.fix for p in problems), [p for p in problems if not p.fix]


def test_main_prints_them_all_before_loading_any_weights(tmp_path, monkeypatch, capsys):
  # Local presets (weights would load at once) with a missing data file and a
  # file as workdir: main must stop in preflight, never reaching the run.
  config = tiny_config(**{"task.name": "translation", "task.raw_dir": str(tmp_path / "raw")})
  workdir = tmp_path / "file"
  workdir.write_text("x")
  calls = []
  monkeypatch.setattr(Model, "random", classmethod(lambda *a, **k: calls.append("random")))
  monkeypatch.setattr(main_lib.loop, "run", lambda *a, **k: calls.append("run"))
  monkeypatch.setattr(main_lib, "_CONFIG", type("F", (), {"value": config})())
  monkeypatch.setattr(main_lib, "_WORKDIR", type("F", (), {"value": str(workdir)})())
  monkeypatch.setattr(main_lib, "_MODE", type("F", (), {"value": "train"})())
  monkeypatch.setattr(main_lib, "_OVERWRITE", type("F", (), {"value": False})())
  with pytest.raises(SystemExit) as info:
    main_lib.main([])
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: 5 problems"), err     # 4 Flores files + the workdir.
  assert err.count("Fix: ") == 5 and "Traceback" not in err
  assert calls == []                                    # No weights, no run.


@pytest.mark.parametrize("overrides,needle", [
    ({"num_devices": 16}, "num_devices=16 but only 8 devices"),
    ({"task.max_new_tokens": 1000}, "needs 1066 positions"),
    ({"student.path": "/nonexistent/model"}, "no such file or directory"),
    ({"student.path": "google/gemma-2b-it"}, "hf download google/gemma-2b-it"),
    ({"tokenizer": "", "student.path": "tiny-gemma"}, "preset without a tokenizer"),
])
def test_single_problems(overrides, needle, tmp_path):
  problems = preflight.check(tiny_config(**overrides), str(tmp_path / "w"))
  assert len(problems) == 1 and needle in str(problems[0]), problems


def test_a_good_config_has_no_problems(tmp_path):
  assert preflight.check(tiny_config(), str(tmp_path / "w")) == []


def test_unknown_config_key_suggests_the_nearest():
  argv = ["skd", "--config=configs/demo.py:tiny", "--config.sampler.topk=5"]
  os.chdir(ROOT)
  assert main_lib.unknown_key_message(argv) == (
      "--config.sampler.topk: no such config key; did you mean --config.sampler.top_k?")
  assert main_lib.unknown_key_message(
      ["skd", "--config=configs/demo.py", "--config.sampler.top_k=5"]) is None


def test_typo_key_is_one_line_in_a_subprocess():
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "skd_jax.main", "--config=configs/demo.py:tiny",
       "--config.sampler.topk=5"], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip() == ("error: --config.sampler.topk: no such config key; did you "
                                 "mean --config.sampler.top_k?"), proc.stderr[-2000:]
