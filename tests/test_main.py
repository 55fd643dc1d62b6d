"""The driver's entry point: bad configs give one message and exit 2, no traceback."""
import os
import subprocess
import sys

import pytest

from skd_jax import main as main_lib
from skd_jax.train import run_setup
from skd_jax.train.validate import ConfigError
from tests.tiny import ROOT, tiny_config

BAD = [
    ({"sampler.top_k": -1}, "sampler.top_k=-1"),
    ({"loss.beta": 1.5}, "loss.beta=1.5 must be in [0, 1]"),
    ({"mix.lmbda": -0.1}, "mix.lmbda=-0.1 must be in [0, 1]"),
    ({"method": "dpo"}, "unknown method 'dpo'"),
    ({"loss.divergence": "kl"}, "unknown divergence"),
    ({"teacher.overrides.vocab_size": 500}, "vocabulary mismatch"),
    ({"task.max_new_tokens": 1000}, "needs 1066 positions"),
    ({"sampler.cache_length": 40}, "cache slots but sampler.cache_length=40"),
    ({"num_devices": 0, "batch_size": 4}, "not divisible by the data-parallel size 8"),
    ({"checkpoint.restore_from": "/nonexistent/ckpt"}, "no such checkpoint directory"),
    ({"student.path": "/nonexistent/model"}, "no such file or directory"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[m for _, m in BAD])
def test_bad_config_message(overrides, message, capsys, monkeypatch):
  config = tiny_config(**overrides)
  with pytest.raises(ConfigError, match=None) as info:
    run_setup.setup(config, "/tmp/skdtests/bad")
  assert message in str(info.value), str(info.value)
  # main's error path: "error: ..." on stderr, exit status 2.
  monkeypatch.setattr(main_lib, "_CONFIG", type("F", (), {"value": config})())
  monkeypatch.setattr(main_lib, "_WORKDIR", type("F", (), {"value": "/tmp/skdtests/bad"})())
  monkeypatch.setattr(main_lib, "_MODE", type("F", (), {"value": "train"})())
  with pytest.raises(SystemExit) as exit_info:
    main_lib.main([])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err, err
  assert "Traceback" not in err


def test_offline_hub_id_says_how_to_use_a_local_copy(monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  config = tiny_config(**{"teacher.path": "google/gemma-7b-it"})
  with pytest.raises(ConfigError, match="--config.teacher.path=DIR"):
    run_setup.setup(config, "/tmp/skdtests/bad")


@pytest.mark.parametrize("flag,message", [
    ("--config.sampler.top_k=-3", "error: sampler.top_k=-3"),
    ("--config.loss.beta=2.0", "error: loss.beta=2.0 must be in [0, 1]"),
])
def test_subprocess_exit_code_and_no_traceback(flag, message):
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "skd_jax.main", "--config=configs/gemma_translate.py:tiny", flag,
       "--workdir=/tmp/skdtests/bad"], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr + proc.stdout
  # Preflight stops it before the run's header; one process prints no jax.process_count line.
  assert "jax.process_count()" not in proc.stdout
