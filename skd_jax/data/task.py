"""The task type and its registry: data source, prompt template, stops, metrics.

    task = get_task("gsm8k", train_size=1000)
    prompt_text = task.render_prompt(tokenizer, record)
    stop_ids = task.stop_ids(tokenizer)

Each task lives in one file of `skd_jax/data/tasks/` (its source and its
`@register_task` factory); importing `skd_jax.data` loads them all. Splits are
"train", "validation", "test". `train_size` selects the paper's seeded training
subsets (1000 or 100): the first `train_size` ids of a seeded permutation of the
train split, so the 100-example subset is inside the 1000-example one for the
same seed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from skd_jax.data import sources as sources_lib
from skd_jax.data import templates
from skd_jax.data import tfds_builder

SPLITS = sources_lib.SPLITS


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
# Generators of the tasks shipped in data/offline/ (regenerated by
# scripts/make_offline_tasks.py): name -> generate(seed) -> {split: records}.
_GENERATORS: dict[str, Callable[[int], dict[str, list[dict]]]] = {}


def register_task(name: str, generate: Callable[[int], dict[str, list[dict]]] | None = None):
  """Decorator: `@register_task("name")` on a factory `(**kw) -> Task`.

  generate: for a task shipped in `data/offline/<name>/`, the function that
    writes its records (`generate(seed) -> {split: [Record]}`).
  """
  def wrap(factory):
    if name in _REGISTRY:
      raise ValueError(f"Task {name!r} is already registered.")
    _REGISTRY[name] = factory
    if generate is not None:
      _GENERATORS[name] = generate
    return factory
  return wrap


def offline_generators() -> dict[str, Callable[[int], dict[str, list[dict]]]]:
  """Shipped offline task name -> its generator, in registration order."""
  return dict(_GENERATORS)


def list_tasks() -> list[str]:
  return sorted(_REGISTRY)


def get_task(name: str, **kw) -> Task:
  """The task `name`; keyword arguments go to its factory (and to `Task` fields
  such as train_size, subset_seed, raw_dir, data_dir, max_new_tokens)."""
  if name not in _REGISTRY:
    raise ValueError(f"Unknown task {name!r}; registered: {list_tasks()}.")
  return _REGISTRY[name](**kw)


def make_task(name: str, source: sources_lib.Source, template: str, stops: Sequence[str],
              metrics: Sequence[str], max_prompt: int, max_new: int, **overrides) -> Task:
  """A `Task`; `overrides` are `Task` fields (train_size, raw_dir, ...) from `get_task`."""
  fields = dict(name=name, source=source, prompt_template=template,
                stop_strings=tuple(stops), metrics=tuple(metrics),
                max_prompt_tokens=max_prompt, max_new_tokens=max_new)
  unknown = set(overrides) - {f.name for f in dataclasses.fields(Task)}
  if unknown:
    raise TypeError(f"Unknown arguments {sorted(unknown)} for task {name!r}.")
  fields.update(overrides)
  return Task(**fields)
