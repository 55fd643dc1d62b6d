"""Task registry: data source, prompt template, stops, metrics and lengths per task.

    task = get_task("gsm8k", train_size=1000)
    prompt_text = task.render_prompt(tokenizer, record)
    stop_ids = task.stop_ids(tokenizer)

Paper tasks (need their raw files locally or the hub): "translation"
(Flores-200, Assamese->English by default), "summarization" (DialogSum),
"gsm8k", "math" (UltraInteract math CoT; MATH-500 / GSMplus / ASDiv / SVAMP
test sets) and "math_eval". Offline tasks shipped with the package:
"numbers_en_fr", "numbers_en_de", "arithmetic", "aclsum".

Splits are "train", "validation", "test". `train_size` selects the paper's
seeded training subsets (1000 or 100): the first `train_size` ids of a seeded
permutation of the train split, so the 100-example subset is inside the
1000-example one for the same seed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from skd_jax.data import sources as sources_lib
from skd_jax.data import templates
from skd_jax.data import tfds_builder

SPLITS = sources_lib.SPLITS

FLORES_LANGUAGE_NAMES = {
    "asm_Beng": "Assamese", "eng_Latn": "English", "fra_Latn": "French",
    "deu_Latn": "German", "hin_Latn": "Hindi", "ben_Beng": "Bengali",
    "spa_Latn": "Spanish", "zho_Hans": "Chinese", "jpn_Jpan": "Japanese",
}
MATH_INSTRUCTION = ("Solve the following math problem step-by-step.\n"
                    "Simplify your answer as much as possible. Present your final "
                    "answer as \\boxed{Your Answer}.\n")


@dataclasses.dataclass(frozen=True)
class Task:
  """Everything about one task that does not depend on the model.

  Attributes:
    name: registry name.
    source: where the records come from (see `sources.Source`).
    prompt_template: `str.format` template over a Record's fields ({input}).
    stop_strings: strings that end a completion (checked on decoded text).
    metrics: metric names for `skd_jax.evaluation.metrics.compute_metrics`.
    max_prompt_tokens: prompt budget in tokens (paper values for paper tasks).
    max_new_tokens: generation budget in tokens.
    train_size: size of the seeded training subset; None = the whole split.
    subset_seed: seed of that subset.
    raw_dir: folder with raw files (None: `$SKD_RAW_DATA_DIR` or the default).
    data_dir: folder for prepared tfds data (None: `$SKD_DATA_DIR` or default).
  """
  name: str
  source: sources_lib.Source
  prompt_template: str
  stop_strings: tuple[str, ...]
  metrics: tuple[str, ...]
  max_prompt_tokens: int
  max_new_tokens: int
  train_size: int | None = None
  subset_seed: int = 0
  raw_dir: str | None = None
  data_dir: str | None = None

  # -- prompts and stops ------------------------------------------------------

  def format_prompt(self, record: dict) -> str:
    """The user-turn content of `record` (before the chat template)."""
    return self.prompt_template.format(**record)

  def render_prompt(self, tokenizer, record: dict) -> str:
    """The full prompt text in the tokenizer's chat template."""
    return templates.render_prompt(tokenizer, self.format_prompt(record))

  def stop_ids(self, tokenizer, include_containing: bool = True) -> tuple[int, ...]:
    """Token ids that end a completion (EOS, end-of-turn, stop-string tokens)."""
    return templates.stop_token_ids(tokenizer, self.stop_strings, include_containing)

  def stop_sequences(self, tokenizer) -> tuple[tuple[int, ...], ...]:
    """Multi-token stop strings as token sequences (see templates.py)."""
    return templates.stop_token_sequences(tokenizer, self.stop_strings)

  def truncate_at_stop_strings(self, text: str) -> str:
    return templates.truncate_at_stop_strings(text, self.stop_strings)

  # -- data -------------------------------------------------------------------

  def builder(self) -> tfds_builder.SkdTextRecords:
    """The prepared tfds builder (prepares on first use)."""
    return tfds_builder.prepare_source(self.source, raw_dir=self.raw_dir,
                                       data_dir=self.data_dir)

  def data_source(self, split: str):
    """Random-access tfds `ArrayRecordDataSource` of `split` (all records).

    Items are dicts of bytes; `tfds_builder.decode_record` makes them str.
    """
    _check_split(split)
    builder = self.builder()
    if split not in builder.info.splits:
      raise ValueError(f"Task {self.name!r} has no {split!r} records (source "
                       f"{self.source.name!r} splits: {list(builder.info.splits)}).")
    return builder.as_data_source(split=split)

  def split_indices(self, split: str, num_records: int) -> np.ndarray:
    """Indices of the records used for `split`: a seeded subset for train."""
    _check_split(split)
    if split != "train" or self.train_size is None:
      return np.arange(num_records)
    if self.train_size > num_records:
      raise ValueError(f"train_size={self.train_size} but task {self.name!r} has "
                       f"only {num_records} training records; lower train_size.")
    order = np.random.default_rng(self.subset_seed).permutation(num_records)
    return np.sort(order[:self.train_size])

  def records(self, split: str) -> list[dict]:
    """The records of `split` (after subsetting), as str dicts, in order."""
    source = self.data_source(split)
    indices = self.split_indices(split, len(source))
    return [tfds_builder.decode_record(source[int(i)]) for i in indices]


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split={split!r}; expected one of {SPLITS}.")


# ----------------------------------------------------------------------------
# Registry.
# ----------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(name: str):
  """Decorator: `@register_task("name")` on a factory `(**kw) -> Task`."""
  def wrap(factory):
    if name in _REGISTRY:
      raise ValueError(f"Task {name!r} is already registered.")
    _REGISTRY[name] = factory
    return factory
  return wrap


def list_tasks() -> list[str]:
  return sorted(_REGISTRY)


def get_task(name: str, **kw) -> Task:
  """The task `name`; keyword arguments go to its factory (and to `Task` fields
  such as train_size, subset_seed, raw_dir, data_dir, max_new_tokens)."""
  if name not in _REGISTRY:
    raise ValueError(f"Unknown task {name!r}; registered: {list_tasks()}.")
  return _REGISTRY[name](**kw)


def _task(name, source, template, stops, metrics, max_prompt, max_new, **overrides):
  fields = dict(name=name, source=source, prompt_template=template,
                stop_strings=tuple(stops), metrics=tuple(metrics),
                max_prompt_tokens=max_prompt, max_new_tokens=max_new)
  unknown = set(overrides) - {f.name for f in dataclasses.fields(Task)}
  if unknown:
    raise TypeError(f"Unknown arguments {sorted(unknown)} for task {name!r}.")
  fields.update(overrides)
  return Task(**fields)


@register_task("translation")
def translation_task(src: str = "asm_Beng", tgt: str = "eng_Latn",
                     src_name: str | None = None, tgt_name: str | None = None,
                     metrics: Sequence[str] = ("bleu", "chrf"),
                     validation_size: int = 100, **kw) -> Task:
  """Flores-200 `src`->`tgt` (codes like "asm_Beng"); paper: COMET and BLEU.

  Train on devtest (1012 pairs; `train_size=1000` is the paper's 1K), validate
  on 100 seeded dev pairs, test on the other 897 (see `sources.flores_source`).
  Add "comet" to `metrics` when `unbabel-comet` and its model are available.
  """
  src_name = src_name or FLORES_LANGUAGE_NAMES.get(src, src)
  tgt_name = tgt_name or FLORES_LANGUAGE_NAMES.get(tgt, tgt)
  template = (f"Translate {src_name} sentence into {tgt_name}. This is the "
              f"{src_name} sentence: {{input}} Here is the {tgt_name} translation:")
  return _task("translation", sources_lib.flores_source(src, tgt, validation_size), template, ("\n",),
               metrics, 256, 256, **kw)


@register_task("summarization")
def summarization_task(**kw) -> Task:
  """DialogSum; the prompt is the dialogue alone; ROUGE-L."""
  return _task("summarization", sources_lib.dialogsum_source(), "{input}", ("\n",),
               ("rougeL",), 1024, 128, **kw)


@register_task("gsm8k")
def gsm8k_task(validation_size: int = 200, **kw) -> Task:
  """GSM8K; "Q: {question} \\n\\nA:"; accuracy of the number after "####"."""
  return _task("gsm8k", sources_lib.gsm8k_source(validation_size), "Q: {input} \n\nA:",
               ("\n\n",), ("gsm8k_accuracy",), 256, 512, **kw)


@register_task("math")
def math_task(test_set: str = "math500", validation_size: int = 200, **kw) -> Task:
  """UltraInteract math CoT for training; `test_set` (math500, gsmplus, asdiv,
  svamp) for test; accuracy of the last \\boxed{} answer."""
  test_source = sources_lib.math_eval_source(test_set, instruction=MATH_INSTRUCTION)
  source = sources_lib.ultrainteract_math_source(validation_size, test_source=test_source)
  return _task("math", source,
               "{input}", (), ("boxed_accuracy",), 1024, 1024, **kw)


@register_task("math_eval")
def math_eval_task(test_set: str = "math500", **kw) -> Task:
  """A test-only math set with the UltraInteract instruction prepended."""
  source = sources_lib.math_eval_source(test_set, instruction=MATH_INSTRUCTION)
  return _task("math_eval", source, "{input}", (), ("boxed_accuracy",), 1024, 1024,
               **kw)


# -- Offline tasks (shipped in data/offline/) ----------------------------------


def _numbers_task(lang: str, **kw) -> Task:
  language = {"fr": "French", "de": "German"}[lang]
  return _task(f"numbers_en_{lang}", sources_lib.offline_source(f"numbers_en_{lang}"),
               f"Translate English to {language}: {{input}}", ("\n",),
               ("exact_match", "chrf", "bleu"), 64, 32, **kw)


@register_task("numbers_en_fr")
def numbers_en_fr_task(**kw) -> Task:
  """English number words (0-999) -> French words; exact match, chrF, BLEU."""
  return _numbers_task("fr", **kw)


@register_task("numbers_en_de")
def numbers_en_de_task(**kw) -> Task:
  """English number words (0-999) -> German words; exact match, chrF, BLEU."""
  return _numbers_task("de", **kw)


@register_task("arithmetic")
def arithmetic_task(**kw) -> Task:
  """Templated 2-3 step word problems, GSM8K format and metric."""
  return _task("arithmetic", sources_lib.offline_source("arithmetic"),
               "Q: {input} \n\nA:", ("\n\n",), ("gsm8k_accuracy",), 128, 128, **kw)


@register_task("aclsum")
def aclsum_task(**kw) -> Task:
  """ACLSum abstract -> one-sentence aspect summary; ROUGE-L."""
  return _task("aclsum", sources_lib.offline_source("aclsum"), "{input}", ("\n",),
               ("rougeL",), 512, 96, **kw)
