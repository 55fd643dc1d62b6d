"""SKD paper setup: Qwen2-7B-Instruct teacher -> Qwen2-0.5B-Instruct student; translation: Flores-200 Assamese->English, 1K examples, 10 epochs.

    python -m skd_jax.main --config=configs/qwen_translate.py          # the paper's run
    python -m skd_jax.main --config=configs/qwen_translate.py:tiny     # offline, ~1 min on CPU
"""
from skd_jax.config_files import sibling


def get_config(arg: str = ""):
  """The experiment; `arg` "tiny" gives the offline smoke-test version."""
  base = sibling(__file__, "base")
  c = base.get_config()
  c.name = "qwen_translate"
  c.student.path = "Qwen/Qwen2-0.5B-Instruct"
  c.teacher.path = "Qwen/Qwen2-7B-Instruct"
  # Qwen2-7B pads its embedding to 152,064 rows; the tokenizer has 151,646 ids.
  c.sampler.shared_vocab_size = 151_936
  c.task.name = "translation"  # Flores-200 Assamese -> English.
  c.task.train_size = 1000
  c.task.max_prompt_tokens = 256
  c.task.max_new_tokens = 256
  c.num_epochs = 10
  c.eval.metric = "bleu"  # The paper reports COMET; add it via task metrics when installed.
  if arg == "tiny":
    base.make_tiny(c, task="numbers_en_fr", family="qwen")
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':tiny' or nothing.")
  return c
