"""Bad checkpoints give one clear error naming the file and the problem."""
import json
import os
import shutil

import pytest

import skd_jax
from skd_jax import CheckpointError
from hf_models import save_tiny_hf_model


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("good"))
  save_tiny_hf_model("gemma", directory)
  return directory


def _copy(good_dir, tmp_path):
  out = str(tmp_path / "ckpt")
  shutil.copytree(good_dir, out)
  return out


def _with_config(good_dir, tmp_path, **changes):
  """A copy of the good checkpoint whose config.json has `changes`."""
  d = _copy(good_dir, tmp_path)
  path = os.path.join(d, "config.json")
  with open(path) as f:
    cfg = json.load(f)
  with open(path, "w") as f:
    json.dump({**cfg, **changes}, f)
  return d


def test_directory_without_config(good_dir, tmp_path):
  d = _copy(good_dir, tmp_path)
  os.remove(os.path.join(d, "config.json"))
  with pytest.raises(CheckpointError, match=r"ckpt: no config\.json"):
    skd_jax.load_model(d)


def test_unsupported_architecture(good_dir, tmp_path):
  d = _with_config(good_dir, tmp_path, model_type="mamba")
  with pytest.raises(CheckpointError, match=r"config\.json: Unsupported architecture model_type='mamba'"):
    skd_jax.load_model(d)


def test_weights_disagree_with_config(good_dir, tmp_path):
  d = _with_config(good_dir, tmp_path, intermediate_size=96)
  with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'model\.layers\.0\.mlp\.\w+_proj\.weight' "
                     r"has shape .* but config\.json implies"):
    skd_jax.load_model(d)


def test_truncated_safetensors(good_dir, tmp_path):
  d = _copy(good_dir, tmp_path)
  path = os.path.join(d, "model.safetensors")
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(size // 2)
  with pytest.raises(CheckpointError, match=r"model\.safetensors: (truncated|not a readable)"):
    skd_jax.load_model(d)


def test_missing_path_and_wrong_file(tmp_path):
  with pytest.raises(CheckpointError, match="no such file or directory"):
    skd_jax.load_model(str(tmp_path / "nope"))
  other = tmp_path / "weights.bin"
  other.write_bytes(b"x")
  with pytest.raises(CheckpointError, match=r"weights\.bin: a file that is not `\.gguf`"):
    skd_jax.load_model(str(other))
