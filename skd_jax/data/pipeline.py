"""Tokenised, bucketed, host-sharded, checkpointable batches with grain.

    encoded = encode_split(task, tokenizer, "train")        # once, host memory
    dataset = batch_dataset(encoded, batch_size=8, seed=0, num_epochs=3)
    iterator = iter(dataset)                                # grain DatasetIterator
    batch = next(iterator)
    state = iterator.get_state()                            # checkpoint with the model
    iterator.set_state(state)                               # ... and resume exactly

Order of operations and why:

1. `encode_split` reads the task's tfds data source (array_record) and
   tokenises every selected record once, applying the truncation policy; the
   counts go into ONE warning. Dropping happens here, before sharding, so every
   host sees the same example set and shard sizes differ by at most one.
2. `batch_dataset` shuffles with `seed` (reseeded every epoch), forms GLOBAL
   batches of `batch_size * shard_count` examples within an epoch, and gives
   host i the contiguous rows i * batch_size .. (i+1) * batch_size - 1 of each;
   then repeats. So the global batch sequence does not depend on how many
   hosts read it (an N-process run trains on exactly the 1-process batches),
   and host i's rows are the rows `make_array_from_process_local_data` puts on
   its devices. Each host collates (pads, decodes strings for) only its rows.
   grain's `MapDataset` makes all of it a pure function of the step index, so
   `get_state`/`set_state` resume exactly.

Batch layout (`Batch`): prompts right-padded to the smallest bucket that fits
(powers of two by default) with their lengths; reference completions likewise;
plus the ragged id lists (what the sampler takes) and the raw strings.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import grain
import jax
import numpy as np

from skd_jax import buckets
from skd_jax.data import templates
from skd_jax.data import tfds_builder

OVERLONG_POLICIES = ("truncate", "drop")
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EncodedExample:
  """One tokenised record.

  Attributes:
    index: position of the record in the task's split (after subsetting).
    id: the record's id.
    prompt_text: the prompt rendered in the chat template.
    prompt_ids: its token ids (chat template already holds BOS).
    target_ids: reference completion ids, ending in the completion end id
      (end-of-turn, else EOS) unless truncated.
    input: the raw input field; reference: the reference completion text;
    answer: the short answer metrics use.
  """
  index: int
  id: str
  prompt_text: str
  prompt_ids: tuple[int, ...]
  target_ids: tuple[int, ...]
  input: str
  reference: str
  answer: str


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
  """A tokenised split and what the truncation policy did to it."""
  examples: tuple[EncodedExample, ...]
  num_records: int
  prompt_truncated: int
  target_truncated: int
  dropped: int
  max_prompt_tokens: int
  max_target_tokens: int
  pad_id: int


@dataclasses.dataclass(frozen=True)
class Batch:
  """A batch of B examples.

  Attributes:
    prompt_tokens: int32 [B, P] right-padded with pad_id; P is the smallest
      bucket >= the longest prompt.
    prompt_lengths: int32 [B].
    target_tokens: int32 [B, T] right-padded reference completions.
    target_lengths: int32 [B].
    prompt_ids / target_ids: the same as ragged lists (the sampler's input).
    prompt_texts, inputs, references, answers, ids: the raw strings.
    indices: int64 [B] positions in the split (for bookkeeping).
  """
  prompt_tokens: np.ndarray
  prompt_lengths: np.ndarray
  target_tokens: np.ndarray
  target_lengths: np.ndarray
  prompt_ids: list[list[int]]
  target_ids: list[list[int]]
  prompt_texts: list[str]
  inputs: list[str]
  references: list[str]
  answers: list[str]
  ids: list[str]
  indices: np.ndarray

  def __len__(self) -> int:
    return len(self.ids)


# ----------------------------------------------------------------------------
# Encoding.
# ----------------------------------------------------------------------------


def _truncate_input(task, tokenizer, record: dict, max_tokens: int) -> tuple[str, list[int]]:
  """Shortens the record's input field, never the task template or the chat
  template around it (so "\n\nA:" and the generation prompt survive)."""
  input_ids = tokenizer.encode(record["input"], add_special_tokens=False)
  text, ids = templates.encode_prompt(tokenizer, task.format_prompt(record))
  for _ in range(4):  # Re-tokenisation at the cut can shift a token or two.
    excess = len(ids) - max_tokens
    if excess <= 0:
      return text, ids
    input_ids = input_ids[:max(0, len(input_ids) - excess)]
    shortened = dict(record, input=tokenizer.decode(input_ids))
    text, ids = templates.encode_prompt(tokenizer, task.format_prompt(shortened))
  if len(ids) > max_tokens:  # The templates alone are too long: keep the tail.
    ids = ids[len(ids) - max_tokens:]
  return text, ids


def encode_split(task, tokenizer, split: str, *, max_prompt_tokens: int | None = None,
                 max_target_tokens: int | None = None, overlong: str = "truncate",
                 limit: int | None = None) -> EncodedSplit:
  """Tokenises `task`'s `split` once.

  Args:
    task: a `tasks.Task`.
    tokenizer: a transformers tokenizer (its chat template renders prompts).
    split: "train", "validation" or "test" (train uses task.train_size).
    max_prompt_tokens: prompt budget; default task.max_prompt_tokens.
    max_target_tokens: reference budget; default task.max_new_tokens.
    overlong: "truncate" (the end of the record's input cut so the prompt fits,
      templates kept; reference cut to the budget, losing its end id) or "drop" (over-long examples removed).
    limit: keep only the first `limit` records (quick evaluations).

  Returns:
    An EncodedSplit. One warning summarises truncated / dropped counts.
  """
  if overlong not in OVERLONG_POLICIES:
    raise ValueError(f"overlong={overlong!r}; expected one of {OVERLONG_POLICIES}.")
  max_prompt = max_prompt_tokens or task.max_prompt_tokens
  max_target = max_target_tokens or task.max_new_tokens
  source = task.data_source(split)
  indices = task.split_indices(split, len(source))
  if limit is not None:
    indices = indices[:limit]
  # grain reads the tfds source; records come back as bytes dicts.
  records = grain.MapDataset.source(source).map(tfds_builder.decode_record)
  end_id = templates.completion_end_id(tokenizer)
  pad_id = templates.pad_id(tokenizer)

  examples, prompt_cut, target_cut, dropped = [], 0, 0, 0
  for position, record_index in enumerate(indices.tolist()):
    record = records[record_index]
    content = task.format_prompt(record)
    text, prompt_ids = templates.encode_prompt(tokenizer, content)
    target_ids = tokenizer.encode(record["target"], add_special_tokens=False)
    if end_id is not None:
      target_ids = target_ids + [int(end_id)]
    too_long = len(prompt_ids) > max_prompt or len(target_ids) > max_target
    if too_long and overlong == "drop":
      dropped += 1
      continue
    if len(prompt_ids) > max_prompt:
      text, prompt_ids = _truncate_input(task, tokenizer, record, max_prompt)
      prompt_cut += 1
    if len(target_ids) > max_target:
      target_ids = target_ids[:max_target]
      target_cut += 1
    examples.append(EncodedExample(
        index=position, id=record["id"], prompt_text=text,
        prompt_ids=tuple(int(i) for i in prompt_ids),
        target_ids=tuple(int(i) for i in target_ids), input=record["input"],
        reference=record["target"], answer=record["answer"]))
  if prompt_cut or target_cut or dropped:
    _LOG.warning(
        "Task %r split %r: %d of %d examples over budget (prompt %d / target %d "
        "tokens): %d prompts truncated, %d targets truncated, %d dropped "
        "(overlong=%r).", task.name, split, prompt_cut + target_cut + dropped,
        len(indices), max_prompt, max_target, prompt_cut, target_cut, dropped, overlong)
  return EncodedSplit(tuple(examples), len(indices), prompt_cut, target_cut, dropped,
                      max_prompt, max_target, pad_id)


# ----------------------------------------------------------------------------
# Padding and batching.
# ----------------------------------------------------------------------------


def pad_right(sequences: Sequence[Sequence[int]], length: int,
              pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """([B, length] int32 right-padded, [B] int32 lengths)."""
  tokens = np.full((len(sequences), length), pad_id, dtype=np.int32)
  lengths = np.zeros((len(sequences),), dtype=np.int32)
  for row, sequence in enumerate(sequences):
    tokens[row, :len(sequence)] = sequence
    lengths[row] = len(sequence)
  return tokens, lengths


def collate(examples: Sequence[EncodedExample], *, pad_id: int,
            prompt_buckets: Sequence[int], target_buckets: Sequence[int]) -> Batch:
  """EncodedExamples -> Batch, each side padded to its smallest fitting bucket."""
  prompts = [list(e.prompt_ids) for e in examples]
  targets = [list(e.target_ids) for e in examples]
  prompt_len = buckets.bucket(max(map(len, prompts)), prompt_buckets, what="prompt length")
  target_len = buckets.bucket(max(1, max(map(len, targets))), target_buckets,
                              what="target length")
  prompt_tokens, prompt_lengths = pad_right(prompts, prompt_len, pad_id)
  target_tokens, target_lengths = pad_right(targets, target_len, pad_id)
  return Batch(prompt_tokens=prompt_tokens, prompt_lengths=prompt_lengths,
               target_tokens=target_tokens, target_lengths=target_lengths,
               prompt_ids=prompts, target_ids=targets,
               prompt_texts=[e.prompt_text for e in examples],
               inputs=[e.input for e in examples],
               references=[e.reference for e in examples],
               answers=[e.answer for e in examples], ids=[e.id for e in examples],
               indices=np.asarray([e.index for e in examples], dtype=np.int64))


def default_shard() -> tuple[int, int]:
  """(jax.process_index(), jax.process_count())."""
  return jax.process_index(), jax.process_count()


def batch_dataset(encoded: EncodedSplit, *, batch_size: int, seed: int = 0,
                  shuffle: bool = True, num_epochs: int | None = 1,
                  drop_remainder: bool = False, shard_index: int | None = None,
                  shard_count: int | None = None,
                  prompt_buckets: Sequence[int] | None = None,
                  target_buckets: Sequence[int] | None = None) -> grain.IterDataset:
  """A grain IterDataset of `Batch`es for this host.

  Args:
    encoded: from `encode_split`.
    batch_size: examples per batch on this host.
    seed: shuffling seed (same on every host; each host shuffles its shard).
    shuffle: reshuffle every epoch; False keeps split order (evaluation).
    num_epochs: passes over the shard; None repeats forever.
    drop_remainder: drop each epoch's last partial global batch (fixed shapes).
      Without it, the last global batch is split into near-equal contiguous
      slices, and a host whose slice is empty gets no batch for it.
    shard_index, shard_count: this host's slice of every global batch; default
      (jax.process_index(), jax.process_count()). Every example is read by
      exactly one host once per epoch (drop_remainder aside).
    prompt_buckets, target_buckets: allowed padded lengths; default powers of
      two up to the encoding budgets.

  Returns:
    `iter(dataset)` is a grain DatasetIterator with get_state()/set_state().
  """
  if shard_index is None or shard_count is None:
    default_index, default_count = default_shard()
    shard_index = default_index if shard_index is None else shard_index
    shard_count = default_count if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index={shard_index} must be in [0, {shard_count}).")
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}; must be >= 1.")
  prompt_buckets = tuple(prompt_buckets or buckets.power_of_two(encoded.max_prompt_tokens))
  target_buckets = tuple(target_buckets or buckets.power_of_two(encoded.max_target_tokens))
  if not encoded.examples:
    raise ValueError("No examples to batch (all dropped, or an empty split).")

  def batch_fn(examples):
    return collate(examples, pad_id=encoded.pad_id, prompt_buckets=prompt_buckets,
                   target_buckets=target_buckets)

  def host_rows(examples):
    return batch_fn(examples) if examples else None

  def host_slice(global_examples):
    return host_rows(_host_slice(list(global_examples), batch_size, shard_index, shard_count))

  dataset = grain.MapDataset.source(list(encoded.examples))
  if shuffle:
    dataset = dataset.shuffle(seed=seed)
  # Batch before repeat: batches never straddle epochs, and repeat reseeds the
  # shuffle every epoch.
  if shard_count == 1:
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, batch_fn=batch_fn)
  else:
    dataset = dataset.batch(batch_size * shard_count, drop_remainder=drop_remainder,
                            batch_fn=lambda examples: examples).map(host_slice)
  dataset = dataset.repeat(num_epochs).to_iter_dataset()
  return dataset if shard_count == 1 else dataset.filter(lambda b: b is not None)


def _host_slice(examples: list, batch_size: int, index: int, count: int) -> list:
  """Host `index`'s contiguous rows of one global batch of `examples`.

  A full global batch (batch_size * count rows) gives every host batch_size
  rows; a short last one is split into near-equal contiguous slices.
  """
  if len(examples) == batch_size * count:
    return examples[index * batch_size:(index + 1) * batch_size]
  bounds = np.linspace(0, len(examples), count + 1).round().astype(int)
  return examples[bounds[index]:bounds[index + 1]]


def make_dataset(task, tokenizer, split: str, *, batch_size: int, seed: int = 0,
                 shuffle: bool | None = None, num_epochs: int | None = 1,
                 overlong: str = "truncate", **kw) -> grain.IterDataset:
  """`encode_split` + `batch_dataset`; shuffles only the train split by default.

  Keyword arguments go to `batch_dataset` (drop_remainder, shard_index, ...).
  """
  encoded = encode_split(task, tokenizer, split, overlong=overlong)
  shuffle = split == "train" if shuffle is None else shuffle
  return batch_dataset(encoded, batch_size=batch_size, seed=seed, shuffle=shuffle,
                       num_epochs=num_epochs, **kw)


def concat_prompt_and_target(batch: Batch, pad_id: int,
                             length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Teacher-forcing inputs: each prompt followed by its reference completion.

  Returns:
    tokens: int32 [B, L] right-padded; L = `length` or the longest row.
    completion_mask: bool [B, L], True at completion-token positions.
  """
  rows = [p + t for p, t in zip(batch.prompt_ids, batch.target_ids)]
  length = length or max(map(len, rows))
  tokens, _ = pad_right(rows, length, pad_id)
  mask = np.zeros(tokens.shape, dtype=bool)
  for row, (p, t) in enumerate(zip(batch.prompt_ids, batch.target_ids)):
    mask[row, len(p):len(p) + len(t)] = True
  return tokens, mask
