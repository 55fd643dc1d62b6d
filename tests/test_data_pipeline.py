"""Host sharding, resumable iteration, bucketing, truncation policy, subsets."""
import collections
import logging

import numpy as np
import pytest

from skd_jax import buckets
from skd_jax.data import pipeline
from skd_jax.data import tasks
from skd_jax.data import testing


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def tokenizer():
  return testing.make_chat_tokenizer("gemma")


@pytest.fixture(scope="module")
def encoded(data_dir, tokenizer):
  task = tasks.get_task("numbers_en_fr", data_dir=data_dir)
  return pipeline.encode_split(task, tokenizer, "validation")  # 100 examples.


def _ids(batches):
  return [i for b in batches for i in b.ids]


@pytest.mark.parametrize("hosts", [2, 4])
def test_every_example_read_once_per_epoch(encoded, hosts):
  n, batch, epochs = len(encoded.examples), 7, 2
  per_host = [list(pipeline.batch_dataset(encoded, batch_size=batch, seed=3,
                                          num_epochs=epochs, shard_index=host,
                                          shard_count=hosts)) for host in range(hosts)]
  all_ids = [i for batches in per_host for i in _ids(batches)]
  per_epoch = collections.Counter(all_ids)
  assert len(per_epoch) == n and set(per_epoch.values()) == {epochs}
  # Full global batches give each host exactly `batch` rows.
  full = (n // (batch * hosts)) * epochs
  for batches in per_host:
    assert all(len(b) == batch for b in batches[:n // (batch * hosts)])
    assert len(batches) >= full


@pytest.mark.parametrize("hosts", [2, 4])
def test_global_batches_do_not_depend_on_the_host_count(encoded, hosts):
  """Host i's rows are rows i*b..(i+1)*b-1 of the 1-host global batch."""
  batch = 6
  one_host = [b.ids for b in pipeline.batch_dataset(
      encoded, batch_size=batch * hosts, seed=4, num_epochs=2, drop_remainder=True,
      shard_index=0, shard_count=1)]
  per_host = [[b.ids for b in pipeline.batch_dataset(
      encoded, batch_size=batch, seed=4, num_epochs=2, drop_remainder=True,
      shard_index=host, shard_count=hosts)] for host in range(hosts)]
  assert len(one_host) == 2 * (len(encoded.examples) // (batch * hosts))
  for step, global_ids in enumerate(one_host):
    joined = [i for host in range(hosts) for i in per_host[host][step]]
    assert joined == list(global_ids)


def test_epochs_reshuffle_and_seed_is_deterministic(encoded):
  make = lambda seed: _ids(pipeline.batch_dataset(
      encoded, batch_size=10, seed=seed, num_epochs=2, shard_index=0, shard_count=1))
  a, b, c = make(0), make(0), make(1)
  assert a == b and a != c
  n = len(encoded.examples)
  assert a[:n] != a[n:] and sorted(a[:n]) == sorted(a[n:])


def test_resume_from_state_gives_same_continuation(encoded):
  ds = pipeline.batch_dataset(encoded, batch_size=8, seed=5, num_epochs=3,
                              shard_index=1, shard_count=2)
  it = iter(ds)
  for _ in range(9):  # Past the first epoch boundary (50 examples / 8).
    next(it)
  state = it.get_state()
  rest = [(b.ids, b.prompt_tokens.tolist()) for b in it]
  resumed = iter(pipeline.batch_dataset(encoded, batch_size=8, seed=5, num_epochs=3,
                                        shard_index=1, shard_count=2))
  resumed.set_state(state)
  assert [(b.ids, b.prompt_tokens.tolist()) for b in resumed] == rest
  assert len(rest) > 0


def test_batch_padding_and_buckets(encoded, tokenizer):
  ds = pipeline.batch_dataset(encoded, batch_size=16, shuffle=False, shard_index=0,
                              shard_count=1, prompt_buckets=(8, 16, 32, 64),
                              target_buckets=(4, 8, 16, 32))
  batch = next(iter(ds))
  longest = max(len(p) for p in batch.prompt_ids)
  expected = min(b for b in (8, 16, 32, 64) if b >= longest)
  assert batch.prompt_tokens.shape == (16, expected)
  for row, ids in enumerate(batch.prompt_ids):
    assert batch.prompt_lengths[row] == len(ids)
    assert batch.prompt_tokens[row, :len(ids)].tolist() == ids
    assert (batch.prompt_tokens[row, len(ids):] == encoded.pad_id).all()
    assert tokenizer.decode(ids) == batch.prompt_texts[row]
  end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
  for ids, ref in zip(batch.target_ids, batch.references):
    assert ids[-1] == end
    assert tokenizer.decode(ids[:-1]) == ref
  assert buckets.bucket(17, (8, 16, 32)) == 32
  assert buckets.power_of_two(100) == (16, 32, 64, 100)


def test_truncation_policy_counts_and_single_warning(data_dir, tokenizer, caplog):
  task = tasks.get_task("arithmetic", data_dir=data_dir)
  full = pipeline.encode_split(task, tokenizer, "validation")
  lengths = [len(e.prompt_ids) for e in full.examples]
  budget = int(np.median(lengths))
  over = sum(length > budget for length in lengths)
  assert 0 < over < len(lengths)
  with caplog.at_level(logging.WARNING, logger="skd_jax.data.pipeline"):
    cut = pipeline.encode_split(task, tokenizer, "validation", max_prompt_tokens=budget)
    dropped = pipeline.encode_split(task, tokenizer, "validation",
                                    max_prompt_tokens=budget, overlong="drop")
  warnings = [r for r in caplog.records if r.name == "skd_jax.data.pipeline"]
  assert len(warnings) == 2  # One summary per call, not one per example.
  assert cut.prompt_truncated == over and len(cut.examples) == len(lengths)
  assert max(len(e.prompt_ids) for e in cut.examples) <= budget
  assert dropped.dropped == over and len(dropped.examples) == len(lengths) - over
  # Truncation shortens the question, never the "\n\nA:" cue or chat template.
  for e in cut.examples:
    assert e.prompt_text.endswith("\n\nA:<end_of_turn>\n<start_of_turn>model\n")
  with pytest.raises(ValueError, match="overlong"):
    pipeline.encode_split(task, tokenizer, "validation", overlong="keep")


def test_seeded_training_subsets_are_nested_and_deterministic(data_dir):
  small = tasks.get_task("arithmetic", data_dir=data_dir, train_size=100).records("train")
  big = tasks.get_task("arithmetic", data_dir=data_dir, train_size=1000).records("train")
  again = tasks.get_task("arithmetic", data_dir=data_dir, train_size=100).records("train")
  other = tasks.get_task("arithmetic", data_dir=data_dir, train_size=100,
                         subset_seed=1).records("train")
  assert len(small) == 100 and len(big) == 1000
  assert small == again and small != other
  assert {r["id"] for r in small} <= {r["id"] for r in big}
  with pytest.raises(ValueError, match="train_size"):
    tasks.get_task("arithmetic", data_dir=data_dir, train_size=10**6).records("train")


def test_concat_prompt_and_target_mask(encoded):
  batch = next(iter(pipeline.batch_dataset(encoded, batch_size=4, shuffle=False,
                                           shard_index=0, shard_count=1)))
  tokens, mask = pipeline.concat_prompt_and_target(batch, pad_id=encoded.pad_id)
  for row in range(4):
    p, t = batch.prompt_ids[row], batch.target_ids[row]
    assert tokens[row, :len(p) + len(t)].tolist() == p + t
    assert mask[row].sum() == len(t) and mask[row, len(p)]
