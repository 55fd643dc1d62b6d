"""TFDS array_record datasets built from a `Source`, read without TensorFlow.

`GeneratorBasedBuilder` with `file_format="array_record"` prepares and reads
array_record shards with no TensorFlow installed (verified with tfds 4.9.10):
`download_and_prepare` serialises the Records, `as_data_source` returns a
random-access `ArrayRecordDataSource` that grain reads directly.

One builder class serves every source; the builder config name is the source
name plus a fingerprint of its raw files, so changed data is re-prepared under a
new name instead of silently reusing a stale cache.
"""

from __future__ import annotations

import logging
import os
import re

import tensorflow_datasets as tfds

from skd_jax.data import sources as sources_lib

RECORD_FIELDS = ("id", "input", "target", "answer")


_CONFIG_NAMES: set[str] = set()   # Builder configs made here (one per source + data).


class _QuietCustomConfig(logging.Filter):
  """Drops tfds' "Using custom data configuration" warning for OUR configs.

  Every builder here has a per-source config by design (see the module doc), and
  tfds warns each time one is instantiated (4 lines per evaluation in a run).
  """

  def filter(self, record: logging.LogRecord) -> bool:
    if not str(record.msg).startswith("Using custom data configuration"):
      return True
    config = record.args[0] if isinstance(record.args, tuple) and record.args else None
    return getattr(config, "name", None) not in _CONFIG_NAMES


logging.getLogger("absl").addFilter(_QuietCustomConfig())


def default_data_dir() -> str:
  """Where prepared datasets go: `$SKD_DATA_DIR` or `~/.cache/skd_jax/tfds`."""
  return os.environ.get("SKD_DATA_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "skd_jax", "tfds"))


class SkdTextRecords(tfds.core.GeneratorBasedBuilder):
  """Records {"id", "input", "target", "answer"} of one `Source`."""

  VERSION = tfds.core.Version("1.0.0")
  # No checksums file next to the code. tfds would otherwise locate this module
  # through `importlib_resources`, which is not a dependency.
  code_path = None

  def __init__(self, *, source: sources_lib.Source, raw_dir: str | None = None,
               data_dir: str | None = None):
    self._source = source
    self._raw_dir = raw_dir
    fingerprint = sources_lib.fingerprint_source(source, raw_dir)
    name = re.sub(r"[^a-zA-Z0-9_]", "_", f"{source.name}_{fingerprint}")
    _CONFIG_NAMES.add(name)
    super().__init__(config=tfds.core.BuilderConfig(name=name, description=source.description),
                     data_dir=data_dir or default_data_dir(),
                     file_format="array_record")

  def _info(self) -> tfds.core.DatasetInfo:
    features = tfds.features.FeaturesDict(
        {field: tfds.features.Text() for field in RECORD_FIELDS})
    # disable_shuffling keeps the Source's order, so index i is record i and the
    # seeded training subsets do not depend on tfds's key hashing.
    return tfds.core.DatasetInfo(builder=self, description=self._source.description,
                                 features=features, disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager  # Files are resolved by the Source (local or hub).
    splits = self._source.make_splits(sources_lib.make_reader(self._source, self._raw_dir))
    return {split: self._generate_examples(records)
            for split, records in splits.items() if records}

  def _generate_examples(self, records):
    for index, record in enumerate(records):
      yield index, {field: str(record.get(field, "")) for field in RECORD_FIELDS}

  # tfds prints "Downloading and preparing dataset ..." (offline: nothing is
  # downloaded; local files are converted in seconds): logged at INFO instead.
  def _log_download_bytes(self) -> None:
    logging.getLogger(__name__).info("preparing %s in %s", self.name, self.data_dir)

  def _log_download_done(self) -> None:
    logging.getLogger(__name__).info("prepared %s in %s", self.name, self.data_dir)


def prepare_source(source: sources_lib.Source, *, raw_dir: str | None = None,
                   data_dir: str | None = None) -> SkdTextRecords:
  """Prepares `source` (once; later calls reuse the files) and returns the builder."""
  builder = SkdTextRecords(source=source, raw_dir=raw_dir, data_dir=data_dir)
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top
  shown = tqdm_utils._active  # pylint: disable=protected-access
  tqdm_utils.display_progress_bar(False)   # Its bars would break the run's.
  try:
    builder.download_and_prepare()
  finally:
    tqdm_utils.display_progress_bar(shown)
  return builder


def decode_record(example: dict) -> dict:
  """tfds returns Text as bytes; Records are str."""
  return {k: v.decode("utf-8") if isinstance(v, bytes) else str(v)
          for k, v in example.items()}
