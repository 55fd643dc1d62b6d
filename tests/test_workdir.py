"""Workdirs that never lie: a run refuses a workdir holding another run, resumes its own."""
import json
import os
import shutil

import pytest

from skd_jax import main as main_lib
from skd_jax.experiments import compare
from skd_jax.train import checkpointing
from skd_jax.train import fingerprints
from skd_jax.train import loop
from skd_jax.train import workdir as workdir_lib
from skd_jax.train.validate import ConfigError
from tests.tiny import tiny_config


def _read(workdir, name):
  with open(os.path.join(workdir, name), encoding="utf-8") as f:
    return f.read()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 2-step tiny run (checkpoint at step 2, no evaluation)."""
  workdir = str(tmp_path_factory.mktemp("workdir") / "run")
  out = loop.run(tiny_config(), workdir, "train")
  assert out["step"] == 2
  return workdir


def _copy(trained, tmp_path):
  out = str(tmp_path / "copy")
  shutil.copytree(trained, out)
  return out


# ----------------------------------------------------------------------------
# Fingerprints (no training).
# ----------------------------------------------------------------------------


def test_changed_keys_are_named_cosmetic_ones_ignored(tmp_path):
  workdir = str(tmp_path / "w")
  config = tiny_config()
  workdir_lib.record(workdir, config, workdir_lib.fingerprint(config))
  assert workdir_lib.mismatch(config, workdir) is None
  cosmetic = tiny_config(log_every_steps=7, **{"checkpoint.every_steps": 1,
                                                "eval.num_samples": 1})
  cosmetic.name = "renamed"
  assert workdir_lib.mismatch(cosmetic, workdir) is None
  message = workdir_lib.mismatch(tiny_config(max_steps=300, **{"sampler.top_k": 1}), workdir)
  assert "\n" not in message
  assert "sampler.top_k 25 vs 1" in message and "max_steps 2 vs 300" in message, message
  assert "a new --workdir" in message and "--overwrite" in message


def test_keys_a_method_never_reads_do_not_count(tmp_path):
  # The demo's K = 1 rerun: the SFT teacher and the ImitKD run never read
  # sampler.top_k (nor another method's knobs); the SKD run does.
  changed = {"sampler.top_k": 1, "sampler.gkd_temperature": 0.3, "mix.lmbda": 0.9}
  for method, refused in (("sft", False), ("imitkd", False), ("skd", True)):
    workdir = str(tmp_path / method)
    config = tiny_config(method=method)
    workdir_lib.record(workdir, config, workdir_lib.fingerprint(config))
    message = workdir_lib.mismatch(tiny_config(method=method, **changed), workdir)
    assert (message is not None) == refused, (method, message)
  assert "sampler.top_k 25 vs 1" in message and "lmbda" not in message, message
  imitkd = str(tmp_path / "imitkd")
  assert "mix.imitkd_fraction 0.5 vs 0.2" in workdir_lib.mismatch(
      tiny_config(method="imitkd", **{"mix.imitkd_fraction": 0.2}), imitkd)


def test_model_keys_say_different_model_and_eval_mode_checks_only_them(tmp_path):
  workdir = str(tmp_path / "w")
  config = tiny_config()
  workdir_lib.record(workdir, config, workdir_lib.fingerprint(config))
  os.makedirs(os.path.join(workdir, "checkpoints", "2"))
  wider = tiny_config(**{"student.overrides.num_layers": 2})
  assert "holds a different model (num_layers 1 vs 2)" in workdir_lib.mismatch(wider, workdir)
  assert "num_layers 1 vs 2" in workdir_lib.mismatch(wider, workdir, "eval")
  # Scoring the checkpoints with other eval settings (or method) is fine.
  other_eval = tiny_config(method="sft", **{"eval.final_split": "test", "eval.limit": 2})
  assert workdir_lib.mismatch(other_eval, workdir, "eval") is None
  assert workdir_lib.mismatch(other_eval, workdir, "train") is not None


def test_changed_checkpoint_files_change_the_fingerprint(tmp_path):
  teacher = tmp_path / "teacher"
  teacher.mkdir()
  (teacher / "config.json").write_text('{"num_hidden_layers": 2}')
  (teacher / "model.safetensors").write_bytes(b"\0" * 100)
  config = tiny_config(**{"teacher.path": str(teacher)})
  workdir = str(tmp_path / "w")
  workdir_lib.record(workdir, config, workdir_lib.fingerprint(config))
  (teacher / "config.json").write_text('{"num_hidden_layers": 3}')
  message = workdir_lib.mismatch(config, workdir)
  assert "data teacher.path.config.json changed" in message, message


def test_code_version_is_part_of_the_fingerprint(tmp_path, monkeypatch):
  workdir = str(tmp_path / "w")
  config = tiny_config()
  workdir_lib.record(workdir, config, workdir_lib.fingerprint(config))
  monkeypatch.setattr(fingerprints, "code_version", lambda: {"package": "0.1.0",
                                                            "sources": "0123456789ab"})
  message = workdir_lib.mismatch(config, workdir)
  assert "made with other code (code sources" in message and "SKD_ALLOW_CODE_CHANGE=1" in message
  monkeypatch.setenv("SKD_ALLOW_CODE_CHANGE", "1")    # Continue it, recorded.
  assert workdir_lib.mismatch(config, workdir) is None
  workdir_lib.record(workdir, config, workdir_lib.fingerprint(config))
  stored = workdir_lib.read_json(os.path.join(workdir, workdir_lib.FINGERPRINT))
  assert stored["code"]["sources"] == "0123456789ab"
  assert stored["info"]["earlier_code"][0]["sources"] != "0123456789ab"


def test_compare_reuses_a_finished_run_only_with_its_fingerprint(tmp_path):
  workdir = str(tmp_path / "skd")
  config = tiny_config()
  fp = workdir_lib.fingerprint(config)
  workdir_lib.record(workdir, config, fp)
  with open(os.path.join(workdir, "result.json"), "w") as f:
    json.dump({"final": {"chrf": 1.0}, "step": 2, "fingerprint": workdir_lib.digest(fp)}, f)
  assert compare.reusable(config, workdir)["final"] == {"chrf": 1.0}
  assert compare.reusable(tiny_config(**{"sampler.top_k": 3}), workdir) is None


def test_clear_deletes_only_workdirs(tmp_path):
  stranger = tmp_path / "home"
  stranger.mkdir()
  (stranger / "thesis.tex").write_text("precious")
  with pytest.raises(ConfigError, match="does not look like a skd_jax workdir"):
    workdir_lib.clear(str(stranger))
  assert (stranger / "thesis.tex").exists()
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text("{}")
  assert workdir_lib.clear(str(run)) and not run.exists()


def test_overwrite_flag_clears_a_mismatching_workdir_then_runs(tmp_path, monkeypatch, capsys):
  workdir = str(tmp_path / "w")
  old = tiny_config()
  workdir_lib.record(workdir, old, workdir_lib.fingerprint(old))
  new = tiny_config(**{"sampler.top_k": 1})
  calls = []
  monkeypatch.setattr(main_lib.loop, "run", lambda c, w, m: calls.append(
      (os.path.exists(os.path.join(w, "config.json")), m)))
  for name, value in (("_CONFIG", new), ("_WORKDIR", workdir), ("_MODE", "train"),
                      ("_OVERWRITE", False)):
    monkeypatch.setattr(main_lib, name, type("F", (), {"value": value})())
  with pytest.raises(SystemExit) as info:     # Without --overwrite: refused.
    main_lib.main([])
  assert info.value.code == 2 and calls == []
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "sampler.top_k 25 vs 1" in err, err
  monkeypatch.setattr(main_lib, "_OVERWRITE", type("F", (), {"value": True})())
  main_lib.main([])
  assert calls == [(False, "train")]          # Deleted first, then run afresh.


# ----------------------------------------------------------------------------
# Through the driver.
# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_driver_refuses_then_resumes(trained, capsys):
  before = _read(trained, "config.json")
  with pytest.raises(workdir_lib.WorkdirMismatch, match=r"sampler\.top_k 25 vs 1"):
    loop.run(tiny_config(**{"sampler.top_k": 1}), trained, "train")
  assert _read(trained, "config.json") == before      # Still describes the checkpoints.
  with pytest.raises(workdir_lib.WorkdirMismatch,
                     match=r"holds a different model \(num_layers 1 vs 2\)"):
    loop.run(tiny_config(**{"student.overrides.num_layers": 2}), trained, "train")
  capsys.readouterr()
  out = loop.run(tiny_config(log_every_steps=2), trained, "train")   # Cosmetic change.
  assert out["step"] == 2
  assert "resumed from step 2" in capsys.readouterr().err
  rows = [json.loads(line) for line in _read(trained, "metrics.jsonl").splitlines()]
  steps = [r["step"] for r in rows if r["kind"] == "train"]
  assert steps == sorted(set(steps)) == [1, 2]


@pytest.mark.slow
def test_checkpoint_of_another_model_is_named_not_an_orbax_traceback(trained, tmp_path):
  old = _copy(trained, tmp_path)       # A workdir from before fingerprints.
  os.remove(os.path.join(old, workdir_lib.FINGERPRINT))
  os.remove(os.path.join(old, workdir_lib.CONFIG))
  with pytest.raises(checkpointing.CheckpointMismatch,
                     match=r"holds a different model \(num_layers 1 vs 2\)"):
    loop.run(tiny_config(**{"student.overrides.num_layers": 2}), old, "train")
