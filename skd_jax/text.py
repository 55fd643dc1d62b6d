"""Text in, text out: strings to prompt ids for `sample`, completions back to strings.

    tokenizer = skd_jax.load_tokenizer(path)            # HF directory or .gguf
    prompts = skd_jax.text.encode_prompts(tokenizer, ["Name a city in France."])
    out = skd_jax.sample(student, teacher, prompts, config=config, rng=rng)
    replies = skd_jax.text.decode_completions(tokenizer, out.completions)

or in one call, `skd_jax.sample(..., prompts=[str, ...], tokenizer=tokenizer)`,
whose `SampleOutput.texts` holds the replies. Prompts go through the tokenizer's
chat template by default (one user turn, ready for the model's reply), so an
instruction-tuned model answers them; `chat=False` encodes the raw strings.
"""
from __future__ import annotations

from typing import Sequence

from skd_jax.data import templates


def encode_prompts(tokenizer, texts: Sequence[str], *, chat: bool = True) -> list[list[int]]:
  """Token-id prompts (ragged lists) of `texts`.

  chat=True renders each text as one user turn of the tokenizer's chat template
  (Gemma: `<bos><start_of_turn>user\\n{text}<end_of_turn>\\n<start_of_turn>model\\n`);
  a tokenizer without a template, or chat=False, encodes the raw text with its
  special tokens (e.g. BOS).
  """
  if isinstance(texts, str):
    raise TypeError(f"texts must be a list of strings, not one string ({texts[:40]!r}); "
                    "wrap it in a list.")
  if chat:
    return [templates.encode_prompt(tokenizer, t)[1] for t in texts]
  return [list(tokenizer.encode(t)) for t in texts]


def stop_ids(tokenizer) -> tuple[int, ...]:
  """EOS and the chat template's end-of-turn id (Gemma `<end_of_turn>`), sorted.

  What `SamplerConfig(stop_ids=...)` needs to end a chat reply; models loaded with
  `skd_jax.load_model` already have these among their EOS ids (the default).
  """
  return templates.stop_token_ids(tokenizer)


def cut_at_stop(ids: Sequence[int], stop: Sequence[int]) -> list[int]:
  """`ids` up to (not including) the first id in `stop`."""
  stop = set(int(s) for s in stop)
  out = []
  for t in ids:
    if int(t) in stop:
      break
    out.append(int(t))
  return out


def decode_completions(tokenizer, completions: Sequence[Sequence[int]], *,
                       stop: Sequence[int] | None = None,
                       skip_special_tokens: bool = True) -> list[str]:
  """Completion strings: each completion up to its first stop id, decoded.

  stop: ids that end a completion (default `stop_ids(tokenizer)`: EOS and the
    end-of-turn token); the stop id itself is not part of the text.
  """
  stop = stop_ids(tokenizer) if stop is None else stop
  return [tokenizer.decode(cut_at_stop(c, stop), skip_special_tokens=skip_special_tokens)
          for c in completions]


def is_text(prompts) -> bool:
  """Whether `prompts` is a list of strings (rather than token-id lists)."""
  return isinstance(prompts, str) or (len(prompts) > 0 and all(isinstance(p, str) for p in prompts))
