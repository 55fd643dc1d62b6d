"""`python -m skd_jax.plan --config=...`: the planner reads the experiment config."""
import pytest

from skd_jax import plan as plan_lib
from skd_jax.models import config as mconfig

GEMMA = "configs/gemma_translate.py"
QWEN = "configs/qwen_translate.py"


def test_hub_ids_of_the_paper_configs_map_to_presets_with_their_vocabularies():
  for hub_id, vocab in (("google/gemma-2b-it", 256_000), ("google/gemma-7b-it", 256_000),
                        ("Qwen/Qwen2-0.5B-Instruct", 151_936), ("Qwen/Qwen2-7B-Instruct", 152_064)):
    preset = mconfig.preset_for_hub_id(hub_id)
    assert preset is not None, hub_id
    assert mconfig.get_config(preset).vocab_size == vocab
  assert mconfig.preset_for_hub_id("nobody/nothing") is None


def test_plan_reads_the_experiment_config(capsys):
  config = plan_lib.load_config(GEMMA)
  (report,) = plan_lib.main([f"--config={GEMMA}", "--num_devices=8"])
  assert "PEAK" in capsys.readouterr().out
  assert (report.student, report.teacher) == (config.student.path, config.teacher.path)
  assert report.mesh == {"data": 1, "fsdp": 8, "tensor": 1}          # config.mesh, -1 resolved
  assert report.batch == config.batch_size == 8
  assert report.seq_len == 512                                          # prompt 256 + 256 new
  student, teacher = plan_lib.model_configs(config)
  assert (student.vocab_size, student.num_layers, student.dtype) == (256_000, 18, "bfloat16")
  assert (teacher.num_layers, teacher.param_dtype) == (28, "bfloat16")
  # The same numbers as the explicit-flag planner with the config's settings.
  explicit = plan_lib.plan(student, teacher, "1,8,1", 8, 512, chunk_size=config.loss.chunk_size,
                           remat=config.loss.remat, cache_length=512 + config.sampler.gamma,
                           driver_copy=True)
  assert report.peak == explicit.peak


def test_explicit_flags_and_config_overrides_win_over_the_config():
  (a,) = plan_lib.main([f"--config={GEMMA}", "--mesh=1,1,8", "--batch=16",
                        "--teacher_rules=student", "--config.loss.remat=True"])
  assert a.mesh == {"data": 1, "fsdp": 1, "tensor": 8} and a.batch == 16
  (b,) = plan_lib.main([f"--config={GEMMA}", "--mesh=1,1,8", "--batch=16",
                        "--teacher_rules=student"])
  assert a.activations.total < b.activations.total            # remat saves activations
  (c,) = plan_lib.main([f"--config={GEMMA}", "--mesh=1,1,8", "--student=gemma-3-1b"])
  assert c.student == "gemma-3-1b"


def test_qwen_pair_plans_with_its_padded_teacher_vocabulary():
  (report,) = plan_lib.main([f"--config={QWEN}", "--num_devices=4", "--mesh=1,1,4"])
  assert report.teacher_params > report.student_params / 4   # 7.6B bf16 vs 0.5B fp32


def test_config_errors_exit_2_with_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    plan_lib.main([f"--config={GEMMA}"])         # fsdp:-1 and no device count
  assert e.value.code == 2
  assert "--num_devices" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    plan_lib.main(["--config=configs/nope.py", "--num_devices=8"])
  assert "no such config file" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    plan_lib.main([f"--config={GEMMA}", "--num_devices=8", "--config.loss.nope=1"])
  assert "no such key" in capsys.readouterr().err
