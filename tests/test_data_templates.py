"""Prompts render exactly the chat template's text; stops map to token ids."""
import pytest

from skd_jax.data import tasks
from skd_jax.data import templates
from skd_jax.data import testing

CONTENT = "Q: Ava has 3 apples. \n\nA:"


@pytest.fixture(scope="module")
def gemma():
  return testing.make_chat_tokenizer("gemma")


@pytest.fixture(scope="module")
def qwen():
  return testing.make_chat_tokenizer("qwen")


def test_gemma_prompt_is_exact(gemma):
  expected = f"<bos><start_of_turn>user\n{CONTENT}<end_of_turn>\n<start_of_turn>model\n"
  assert templates.render_prompt(gemma, CONTENT) == expected
  text, ids = templates.encode_prompt(gemma, CONTENT)
  assert text == expected
  assert ids.count(gemma.bos_token_id) == 1 and ids[0] == gemma.bos_token_id
  assert gemma.decode(ids) == expected


def test_chatml_prompt_is_exact(qwen):
  expected = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
              f"<|im_start|>user\n{CONTENT}<|im_end|>\n<|im_start|>assistant\n")
  assert templates.render_prompt(qwen, CONTENT) == expected
  assert qwen.decode(templates.encode_prompt(qwen, CONTENT)[1]) == expected


def test_task_prompt_templates():
  gsm = tasks.get_task("gsm8k")
  assert gsm.format_prompt({"input": "How many?"}) == "Q: How many? \n\nA:"
  tr = tasks.get_task("translation")
  assert tr.format_prompt({"input": "X"}) == (
      "Translate Assamese sentence into English. This is the Assamese sentence: X "
      "Here is the English translation:")
  assert tasks.get_task("numbers_en_fr").format_prompt({"input": "twelve"}) == (
      "Translate English to French: twelve")


def test_no_chat_template_falls_back_to_raw_prompt():
  plain = testing.make_chat_tokenizer("gemma", chat=False)
  assert templates.render_prompt(plain, CONTENT) == CONTENT


def test_turn_end_and_stop_ids(gemma, qwen):
  end_of_turn = gemma.convert_tokens_to_ids("<end_of_turn>")
  assert templates.completion_end_id(gemma) == end_of_turn
  assert templates.completion_end_id(qwen) == qwen.convert_tokens_to_ids("<|im_end|>")
  newline = gemma.encode("\n", add_special_tokens=False)
  assert len(newline) == 1
  ids = templates.stop_token_ids(gemma, ("\n",))
  assert {end_of_turn, gemma.eos_token_id, newline[0]} <= set(ids)
  # Every other stop id is a token whose text contains the stop string.
  for i in set(ids) - {end_of_turn, gemma.eos_token_id}:
    assert "\n" in gemma.decode([i])
  # A multi-token stop string is returned as a sequence, not as stop ids.
  stops = ("\n\n", "zq\n!")
  seqs = templates.stop_token_sequences(gemma, stops)
  assert seqs and all(len(s) > 1 for s in seqs)
  assert {gemma.decode(list(s)) for s in seqs} <= set(stops)


def test_truncate_and_decode_completion(gemma):
  assert templates.truncate_at_stop_strings("a\n\nb\nc", ("\n\n", "\n")) == "a"
  assert templates.truncate_at_stop_strings("abc", ("\n",)) == "abc"
  end = templates.completion_end_id(gemma)
  ids = gemma.encode("#### 12", add_special_tokens=False) + [end] + [7, 8]
  text = templates.decode_completion(gemma, ids, ("\n\n",), (end,))
  assert text == "#### 12"
