"""SKD paper setup: Qwen2-7B-Instruct teacher -> Qwen2-0.5B-Instruct student; arithmetic reasoning: GSM8K, 1K examples, 3 epochs, accuracy.

    python -m skd_jax.main --config=configs/qwen_gsm8k.py          # the paper's run
    python -m skd_jax.main --config=configs/qwen_gsm8k.py:tiny     # offline, ~1 min on CPU
"""
import importlib.util
import os


def _base():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py")
  spec = importlib.util.spec_from_file_location("skd_configs_base", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str = ""):
  """The experiment; `arg` "tiny" gives the offline smoke-test version."""
  base = _base()
  c = base.get_config()
  c.name = "qwen_gsm8k"
  c.student.path = "Qwen/Qwen2-0.5B-Instruct"
  c.teacher.path = "Qwen/Qwen2-7B-Instruct"
  # Qwen2-7B pads its embedding to 152,064 rows; the tokenizer has 151,646 ids.
  c.sampler.shared_vocab_size = 151_936
  c.task.name = "gsm8k"
  c.task.train_size = 1000
  c.task.max_prompt_tokens = 256
  c.task.max_new_tokens = 512
  c.num_epochs = 3
  c.eval.metric = "gsm8k_accuracy"
  if arg == "tiny":
    base.make_tiny(c, task="arithmetic", family="qwen")
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':tiny' or nothing.")
  return c
