"""SKD paper setup: Qwen2-7B-Instruct teacher -> Qwen2-0.5B-Instruct student; arithmetic reasoning: GSM8K, 1K examples, 3 epochs, accuracy.

    python -m skd_jax.main --config=configs/qwen_gsm8k.py          # the paper's run
    python -m skd_jax.main --config=configs/qwen_gsm8k.py:tiny     # offline, ~1 min on CPU
"""
from skd_jax.config_files import sibling


def get_config(arg: str = ""):
  """The experiment; `arg` "tiny" gives the offline smoke-test version."""
  base = sibling(__file__, "base")
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
