"""Tiny offline tokenizers with real chat templates, for tests and demos.

`make_chat_tokenizer("gemma")` / `("qwen")` trains a byte-level BPE on a few
hundred lines of the shipped offline tasks (well under a second) and wraps it in
`transformers.PreTrainedTokenizerFast` with the family's special tokens and
chat template. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import gzip
import json
import os

from skd_jax.data import sources

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role']=='assistant' else message['role'] }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")

# Qwen2-Instruct's template (default system prompt when none is given).
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

_SPECIALS = {
    "gemma": dict(pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                  unk_token="<unk>",
                  additional_special_tokens=["<start_of_turn>", "<end_of_turn>"]),
    "qwen": dict(pad_token="<|endoftext|>", eos_token="<|im_end|>",
                 additional_special_tokens=["<|im_start|>"]),
}


def _training_lines(limit: int = 400) -> list[str]:
  lines = []
  for task in ("arithmetic", "numbers_en_fr", "numbers_en_de"):
    path = os.path.join(sources.OFFLINE_DIR, task, "train.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
      for i, line in enumerate(f):
        if i >= limit:
          break
        row = json.loads(line)
        lines += [row["input"], row["target"]]
  return lines


@functools.lru_cache(maxsize=4)
def make_chat_tokenizer(style: str = "gemma", vocab_size: int = 600, chat: bool = True):
  """A small byte-level BPE tokenizer with `style`'s chat template and specials.

  Args:
    style: "gemma" (<bos>, <start_of_turn>, <end_of_turn>) or "qwen" (ChatML).
    vocab_size: BPE vocabulary size (specials included).
    chat: False gives the same tokenizer without a chat template.
  """
  import tokenizers  # pylint: disable=g-import-not-at-top
  from tokenizers import decoders, models, pre_tokenizers, trainers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  if style not in _SPECIALS:
    raise ValueError(f"style={style!r}; expected one of {sorted(_SPECIALS)}.")
  specials = _SPECIALS[style]
  special_list = [v for k, v in specials.items() if k != "additional_special_tokens"]
  special_list += specials["additional_special_tokens"]
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_list,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tok.train_from_iterator(_training_lines(), trainer=trainer)
  wrapped = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
  if chat:
    wrapped.chat_template = GEMMA_CHAT_TEMPLATE if style == "gemma" else QWEN2_CHAT_TEMPLATE
  return wrapped
