"""`python -m skd_jax.compile`: the driver's functions compiled for a TPU topology.

libtpu's compiler runs on this CPU-only host (abstract inputs, no TPU); the
suite's JAX_PLATFORMS=cpu does not stop it.
"""
import json
import sys

import jax
import pytest

pytest.importorskip("libtpu", reason="needs libtpu (pip install -e .[test])")

from skd_jax import compile as compile_lib  # noqa: E402
from skd_jax import plan as plan_lib  # noqa: E402
from skd_jax.models import config as mconfig  # noqa: E402

CONFIG = "configs/gemma_translate.py:tiny"
# The tiny config, widened so that (1) every per-chip shard is whole TPU tiles
# (128 lanes on the last axis: D / fsdp = 128) and the compiled argument bytes
# are the shapes' bytes, and (2) the train step's memory is dominated by what
# the planner models at full scale (the state and 32 layers' saved values):
# XLA:TPU keeps a small program's transient buffers (gradients, one layer's
# backward) in on-chip memory, outside the HBM figures, so at tiny sizes the
# planner overestimates by their size (here about 5%).
SHAPES = ["--config.student.overrides.hidden_size=512", "--config.teacher.overrides.hidden_size=512",
          "--config.student.overrides.head_dim=128", "--config.teacher.overrides.head_dim=128",
          "--config.student.overrides.intermediate_size=2048",
          "--config.teacher.overrides.intermediate_size=2048",
          "--config.student.overrides.num_heads=4", "--config.teacher.overrides.num_heads=4",
          "--config.student.overrides.num_layers=32", "--config.teacher.overrides.num_layers=1",
          "--config.student.dtype=bfloat16", "--config.teacher.dtype=bfloat16",
          "--config.task.max_prompt_tokens=128", "--config.task.max_new_tokens=64",
          "--config.sampler.prompt_buckets=(128,)", "--config.eval.batch_size=8",
          "--config.num_devices=0"]
MESH = {"data": 1, "fsdp": 4, "tensor": 1}
BATCH, LENGTH = 16, 128 + 64


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
  path = tmp_path_factory.mktemp("compile") / "out.json"
  # conftest.py asks for "highest" matmul precision; the driver runs with the default.
  with jax.default_matmul_precision("default"):
    result = compile_lib.main([f"--config={CONFIG}", "--topology=v5e:2x2", "--mesh=1,4,1",
                               f"--batch_size={BATCH}", f"--json={path}",
                               "--functions=train_step,skd_rollout,teacher_logits", *SHAPES])
  return result, json.loads(path.read_text())


@pytest.mark.slow
def test_train_step_arguments_are_the_state_divided_as_the_mesh_says(compiled):
  result, _ = compiled
  student, teacher = result.setup.student_cfg, result.setup.teacher_cfg
  assert result.setup.axis_sizes == MESH
  # Every student weight has an "embed" axis, split 4 ways over fsdp: fp32 params
  # and AdamW's two moments, a quarter each. The teacher rules replicate the
  # teacher over fsdp (its bf16 weights whole on every chip). The batch
  # [16, 192] int32 tokens + bool mask is split over fsdp.
  state = 3 * 4 * student.num_params() // 4
  teacher_bytes = 2 * teacher.num_params()
  batch = BATCH * LENGTH * (4 + 1) // 4
  expected = state + teacher_bytes + batch
  train = {r.name: r for r in result.results}["train_step"]
  # + step, rng key and AdamW's count: a few scalars (each padded to a tile).
  assert 0 <= train.argument_bytes - expected <= 64 * 1024, (train.argument_bytes, expected)
  # The donated state comes back in place.
  assert train.alias_bytes == pytest.approx(state, rel=0.001)


@pytest.mark.slow
def test_planner_within_10_percent_of_the_compiled_peak(compiled):
  result, data = compiled
  planner = data["planner"]
  assert abs(planner["errors"]["train_step"]) <= 0.10, planner
  # The run's peak (the largest function's peak plus what the driver holds meanwhile).
  assert abs(planner["error"]) <= 0.10, planner
  assert data["run_peak_bytes"] == data["functions"]["train_step"]["run_peak_bytes"]


@pytest.mark.slow
def test_json_follows_the_design_schema(compiled):
  _, data = compiled
  assert data["topology"] == "v5e:2x2" and data["devices"] == 4 and data["mesh"] == MESH
  assert data["hbm_bytes_per_chip"] == 16 * 2 ** 30 and data["fits"] is True
  for name, fn in data["functions"].items():
    for key in ("argument_bytes", "output_bytes", "temp_bytes", "alias_bytes", "peak_bytes",
                "flops", "bytes_accessed", "roofline_seconds"):
      assert isinstance(fn[key], (int, float)), (name, key)
    assert fn["peak_bytes"] == (fn["argument_bytes"] + fn["output_bytes"] + fn["temp_bytes"]
                                - fn["alias_bytes"])
    assert fn["roofline_seconds"] > 0
  assert any("train" in n for n in data["functions"])
  assert any("rollout" in n for n in data["functions"])
  assert data["functions"]["skd_rollout"]["tokens_per_second"] > 0
  assert data["planner"]["peak_bytes"] > 0


def _exit_message(capsys, argv) -> str:
  with pytest.raises(SystemExit) as e:
    compile_lib.main(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


def test_bad_topology_mesh_and_batch_exit_2_with_one_line(capsys):
  base = [f"--config={CONFIG}", "--config.num_devices=0"]
  msg = _exit_message(capsys, base + ["--topology=v5e-8"])
  assert "v5e:2x2" in msg and "v4:2x2x1" in msg
  msg = _exit_message(capsys, base + ["--topology=v5e:1x1"])
  assert "libtpu rejected it" in msg
  msg = _exit_message(capsys, base + ["--topology=v5e:2x2", "--mesh=1,8,1"])
  assert "4 devices" in msg
  msg = _exit_message(capsys, base + ["--topology=v5e:2x2", "--mesh=1,4,1", "--batch_size=6"])
  assert "batch_size=6" in msg and "data-parallel size 4" in msg


def test_missing_libtpu_names_the_pip_line(monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "libtpu", None)   # `import libtpu` raises ImportError
  msg = _exit_message(capsys, [f"--config={CONFIG}", "--topology=v5e:2x2"])
  assert 'pip install "jax[tpu]==' in msg


@pytest.mark.slow
def test_analytic_flops_match_xla_where_no_loop_repeats(compiled):
  # cost_analysis() counts a scan body once: on the one-layer teacher's logits
  # nothing repeats, so XLA's count checks the analytic one the roofline uses.
  _, data = compiled
  fn = data["functions"]["teacher_logits"]
  assert fn["flops"] == pytest.approx(fn["xla_flops"], rel=0.05)
  # The 32-layer train step: XLA sees one layer of 32.
  train = data["functions"]["train_step"]
  assert train["flops"] > 10 * train["xla_flops"]


def test_analytic_flops_count_every_layer_and_decode_step():
  cfg = mconfig.get_config("gemma-2b")
  one = compile_lib.forward_flops(cfg, rows=1, new=1, keys=1)
  # ~2 FLOPs per parameter per token (embedding as the tied LM head).
  assert one == pytest.approx(2 * cfg.num_params(), rel=0.01)
  assert compile_lib.expected_tokens_per_round(5, 1.0) == 5
  assert compile_lib.expected_tokens_per_round(5, 0.0) == 1
  assert plan_lib.load_config(CONFIG).task.max_new_tokens == 8
