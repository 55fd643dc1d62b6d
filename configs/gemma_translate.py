"""SKD paper setup: Gemma-7B-it teacher -> Gemma-2B-it student; translation: Flores-200 Assamese->English, 1K examples, 10 epochs.

    python -m skd_jax.main --config=configs/gemma_translate.py          # the paper's run
    python -m skd_jax.main --config=configs/gemma_translate.py:tiny     # offline, ~1 min on CPU
"""
from skd_jax.config_files import sibling


def get_config(arg: str = ""):
  """The experiment; `arg` "tiny" gives the offline smoke-test version."""
  base = sibling(__file__, "base")
  c = base.get_config()
  c.name = "gemma_translate"
  c.loss.chunk_size = 16             # V ~ 256K: 8 x 1,024 rows keep the loss under 1 GB (bench/loss_memory.py: 0.89 GB; 32: 1.22 GB).
  c.student.path = "google/gemma-2b-it"
  c.teacher.path = "google/gemma-7b-it"
  c.task.name = "translation"  # Flores-200 Assamese -> English.
  c.task.train_size = 1000
  c.task.max_prompt_tokens = 256
  c.task.max_new_tokens = 256
  c.num_epochs = 10
  c.eval.metric = "bleu"  # The paper reports COMET; add it via task metrics when installed.
  if arg == "tiny":
    base.make_tiny(c, task="numbers_en_fr", family="gemma")
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':tiny' or nothing.")
  return c
