"""Offline tokenizers with the paper models' real id layouts and chat templates.

`testing:qwen2-real` is Qwen2-Instruct-shaped (151,646 ids, specials at their
real ids); `testing:gemma3-gguf` is the real Gemma 3 tokenizer from the
packaged GGUF.
"""
import importlib.util
import random
import time
import unicodedata

import pytest

from skd_jax.data import templates
from skd_jax.data import testing

CONTENT = "Q: Ava has 3 apples. \n\nA:"


@pytest.fixture(scope="module")
def qwen2():
  return testing.make_chat_tokenizer("qwen2-real")


def _random_unicode(rng, length):
  """NFC text from all planes (no surrogates, no unassigned code points)."""
  chars = []
  while len(chars) < length:
    plane = rng.choice((0x80, 0x800, 0x3000, 0x10000, 0x1F600, 0x20000))
    c = chr(rng.randrange(0x20, plane + 0x100))
    if unicodedata.category(c) not in ("Cs", "Cn"):
      chars.append(c)
  return unicodedata.normalize("NFC", "".join(chars))


def test_qwen2_real_id_layout(qwen2):
  assert len(qwen2) == testing.QWEN2_SIZE == 151646
  assert qwen2.vocab_size == 151643
  assert [qwen2.convert_tokens_to_ids(t) for t in
          ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [151643, 151644, 151645]
  assert (qwen2.eos_token, qwen2.eos_token_id) == ("<|im_end|>", 151645)
  assert (qwen2.pad_token, qwen2.pad_token_id) == ("<|endoftext|>", 151643)
  assert qwen2.bos_token is None and qwen2.bos_token_id is None
  assert qwen2.unk_token is None
  assert templates.completion_end_id(qwen2) == 151645
  assert testing.make_chat_tokenizer("qwen2-real") is testing.make_qwen2_tokenizer()
  with pytest.raises(ValueError, match="151646"):
    testing.make_chat_tokenizer("qwen2-real", vocab_size=600)


def test_qwen2_real_builds_offline_fast():
  start = time.perf_counter()
  tok = testing._build_qwen2(chat=False)  # pylint: disable=protected-access  # Uncached.
  seconds = time.perf_counter() - start
  assert len(tok) == 151646 and not tok.chat_template
  assert seconds < 15  # ~1.7 s alone; generous for a shared CPU.


def test_qwen2_real_chat_template_is_qwen2_instruct(qwen2):
  expected = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
              f"<|im_start|>user\n{CONTENT}<|im_end|>\n<|im_start|>assistant\n")
  assert templates.render_prompt(qwen2, CONTENT) == expected
  text, ids = templates.encode_prompt(qwen2, CONTENT)
  assert ids[0] == 151644 and ids.count(151645) == 2 and ids.count(151644) == 3
  assert qwen2.decode(ids) == expected


def test_qwen2_real_round_trips_any_text(qwen2):
  rng = random.Random(0)
  texts = ["Héllo wörld 😀 অসমীয়া ১২৩ 12345\n\n#### 7", "\t\r\n  trailing  ",
           "\\boxed{\\frac{\\sqrt{3}}{2}}", "\x00\x7f"]
  texts += [_random_unicode(rng, rng.randint(1, 60)) for _ in range(200)]
  for text in texts:
    ids = qwen2.encode(text, add_special_tokens=False)
    assert qwen2.decode(ids) == text, text
    assert max(ids) < testing.QWEN2_NUM_REGULAR
  # Fillers are never produced (ids past the trained vocabulary stay unused).
  trained = max(max(qwen2.encode(t, add_special_tokens=False)) for t in texts)
  assert trained < 8192 and qwen2.decode([9000]) == "<unused_9000>"
  # Qwen2 normalises to NFC, so decomposed text comes back composed.
  assert qwen2.decode(qwen2.encode("e\u0301", add_special_tokens=False)) == "\u00e9"
  # Qwen2's pre-tokenizer isolates every digit.
  assert [qwen2.decode([i]) for i in qwen2.encode("2024", add_special_tokens=False)] == [
      "2", "0", "2", "4"]


def test_qwen2_real_stop_ids(qwen2):
  ids = templates.stop_token_ids(qwen2, ("\n",))
  newline = qwen2.encode("\n", add_special_tokens=False)
  assert len(newline) == 1 and {newline[0], 151645} <= set(ids)
  assert all(i < 8192 or i == 151645 for i in ids)  # No filler ids.
