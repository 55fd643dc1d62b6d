"""`sample`: the user-facing sampler over token-id lists or strings (validation, buckets, lists out)."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from skd_jax import buckets
from skd_jax import sharding
from skd_jax import text as text_lib
from skd_jax.models.model import Model
from skd_jax.sampling import config as sconfig
from skd_jax.sampling import sampler
from skd_jax.sampling.config import SamplerConfig


@dataclasses.dataclass
class SampleOutput:
  """Completions and their provenance, one entry per prompt.

  completions: token ids after the prompt (stop id / stop sequence included when hit).
  from_teacher: per completion token, whether the teacher sampled it.
  replacement_rate: per sequence, the fraction of completion tokens from the teacher.
  acceptance_rate: per sequence, accepted / tested student drafts, counting only
    tokens the completion keeps (drafts cut by a stop or the budget are not
    tested), so it is the same for every gamma; nan if none tested ("student",
    "teacher", or an empty completion).
  rounds: while-loop iterations of the batch.
  rollout: the raw arrays of the jittable core (`sampler.Rollout`).
  texts: with `sample(..., tokenizer=)`, each completion decoded up to (not
    including) its stop id, special tokens dropped; else None.
  """
  completions: list[list[int]]
  from_teacher: list[list[bool]]
  replacement_rate: list[float]
  acceptance_rate: list[float]
  rounds: int
  rollout: sampler.Rollout
  texts: list[str] | None = None


def _vocab_size(student: Model | None, teacher: Model | None, config: SamplerConfig) -> int:
  sizes = {name: m.config.vocab_size for name, m in (("student", student), ("teacher", teacher))
           if m is not None}
  if len(set(sizes.values())) > 1:
    if config.shared_vocab_size is None:
      raise ValueError(f"Student and teacher vocabularies differ: {sizes}. Distillation needs one "
                       "tokenizer; if they share one and the larger vocabulary is only padding "
                       "(e.g. Qwen2-7B vs Qwen2-0.5B), set "
                       f"SamplerConfig.shared_vocab_size={min(sizes.values())}.")
  if config.shared_vocab_size is not None:
    if config.shared_vocab_size > min(sizes.values()):
      raise ValueError(f"shared_vocab_size={config.shared_vocab_size} exceeds a vocabulary {sizes}.")
    return config.shared_vocab_size
  return next(iter(sizes.values()))


def validate(student: Model | None, teacher: Model | None, prompts: Sequence[Sequence[int]],
             config: SamplerConfig) -> tuple[int, int]:
  """Raises ValueError naming the bad value and the fix; runs before any compilation.

  Returns:
    (the vocabulary size sampled over, the prompt bucket).
  """
  if config.method not in sconfig.METHODS:
    raise ValueError(f"Unknown sampling method {config.method!r}; use one of {sconfig.METHODS}.")
  if config.method != "teacher" and student is None:
    raise ValueError(f"method={config.method!r} needs a student model.")
  if config.method != "student" and teacher is None:
    raise ValueError(f"method={config.method!r} needs a teacher model.")
  # top_k, gamma, temperatures, top-p, acceptance: SamplerConfig.__post_init__.
  if config.decode_layout not in ("auto", "stacked", "per_layer"):
    raise ValueError(f"decode_layout={config.decode_layout!r}; use 'auto', 'stacked' or "
                     "'per_layer'.")
  for name in ("student_rules", "teacher_rules"):
    if getattr(config, name) not in sharding.RULE_SETS:
      raise ValueError(f"{name}={getattr(config, name)!r}: unknown sharding rule table; "
                       f"known: {sorted(sharding.RULE_SETS)}.")
  if not prompts:
    raise ValueError("No prompts given.")
  vocab = _vocab_size(student, teacher, config)
  for i, p in enumerate(prompts):
    if len(p) == 0:
      raise ValueError(f"Prompt {i} is empty; every prompt needs at least one token (e.g. BOS).")
    bad = [t for t in p if not 0 <= int(t) < vocab]
    if bad:
      raise ValueError(f"Prompt {i} has token ids {bad[:5]} outside the vocabulary [0, {vocab}).")
  bucket = buckets.bucket(max(len(p) for p in prompts),
                          config.prompt_buckets or buckets.power_of_two(), what="prompt length",
                          fix="add a larger bucket to SamplerConfig.prompt_buckets")
  need = bucket + config.max_new_tokens + (config.gamma if config.method == "skd" else 1)
  if config.cache_length is not None and need > config.cache_length:
    raise ValueError(f"Prompt bucket {bucket} + max_new_tokens {config.max_new_tokens} + gamma "
                     f"needs {need} cache slots but cache_length={config.cache_length}; shorten "
                     "the prompt or max_new_tokens, or raise cache_length.")
  for m in (student, teacher):
    if m is not None and need > m.config.max_position_embeddings:
      raise ValueError(f"Prompt bucket {bucket} + max_new_tokens {config.max_new_tokens} needs "
                       f"{need} positions; {m.config.name} supports "
                       f"{m.config.max_position_embeddings}.")
  return vocab, bucket


def stop_ids_of(student: Model | None, teacher: Model | None, config: SamplerConfig) -> tuple[int, ...]:
  if config.stop_ids is not None:
    return config.stop_ids
  ids = set()
  for m in (student, teacher):
    if m is not None:
      ids.update(m.config.eos_ids)
  return tuple(sorted(ids))


def prepare(student, teacher, prompts, config: SamplerConfig):
  """Validated static/dynamic settings and padded prompt arrays."""
  vocab, bucket = validate(student, teacher, prompts, config)
  static, dyn = sconfig.split(config, stop_ids_of(student, teacher, config), vocab)
  tokens = np.zeros((len(prompts), bucket), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, :len(p)] = p
  lengths = np.asarray([len(p) for p in prompts], np.int32)
  return static, dyn, tokens, lengths


def _as_key(rng) -> jax.Array:
  if isinstance(rng, int):
    raise TypeError("rng must be a JAX key, e.g. jax.random.PRNGKey(0), not an int.")
  return rng


def run_rollout(student: Model | None, teacher: Model | None, prompt_tokens, prompt_length,
                row_keys, dyn, static) -> sampler.Rollout:
  """`sampler.rollout` on `Model`s, from `prepare`'s outputs.

  Passes only the models the method runs, with their weights laid out for the
  loop (`sampler.loop_params`).
  """
  use_student, use_teacher = static.method != "teacher", static.method != "student"
  return sampler.rollout(
      sampler.loop_params(student.params, student.config, static) if use_student else None,
      sampler.loop_params(teacher.params, teacher.config, static) if use_teacher else None,
      prompt_tokens, prompt_length, row_keys, dyn, static=static,
      student_cfg=student.config if use_student else None,
      teacher_cfg=teacher.config if use_teacher else None)


def _token_prompts(prompts, tokenizer, chat: bool) -> Sequence[Sequence[int]]:
  """Token-id prompts; strings are encoded with `tokenizer` (through its chat template)."""
  if not text_lib.is_text(prompts):
    return prompts
  if tokenizer is None:
    raise TypeError("prompts are strings; pass tokenizer=skd_jax.load_tokenizer(path) to "
                    "encode them (chat template applied), or give token-id lists.")
  return text_lib.encode_prompts(tokenizer, prompts, chat=chat)


def sample(student: Model | None, teacher: Model | None, prompts: Sequence[Sequence[int]], *,
           config: SamplerConfig, rng: jax.Array, tokenizer=None, chat: bool = True) -> SampleOutput:
  """Samples one completion per prompt with SKD, the student alone, or the teacher alone.

  Args:
    student, teacher: `Model`s (teacher may be None for "student", student None
      for "teacher").
    prompts: a list of token-id lists (ragged), or of strings when `tokenizer`
      is given.
    config: a `SamplerConfig`.
    rng: a `jax.random.PRNGKey(seed)` (typed keys work too). Row i uses
      fold_in(rng, i), so a prompt's completion depends only on rng, its row index,
      the models and the settings — not on the other prompts or the padding.
    tokenizer: optional; encodes string prompts (`skd_jax.text.encode_prompts`)
      and fills `SampleOutput.texts`.
    chat: string prompts go through the tokenizer's chat template (one user turn).
  """
  prompts = _token_prompts(prompts, tokenizer, chat)
  static, dyn, tokens, lengths = prepare(student, teacher, prompts, config)
  out = run_rollout(student, teacher, jnp.asarray(tokens), jnp.asarray(lengths),
                    sampler.row_keys_for(_as_key(rng), len(prompts)), dyn, static)
  host = jax.device_get(out)
  completions, flags, rates = [], [], []
  for b in range(len(prompts)):
    start, end = int(host.prompt_length[b]), int(host.length[b])
    completions.append([int(t) for t in host.tokens[b, start:end]])
    flags.append([bool(f) for f in host.from_teacher[b, start:end]])
    rates.append(float(np.mean(flags[-1])) if flags[-1] else 0.0)
  acceptance = [float(a / t) if t else float("nan") for a, t in zip(host.accepted, host.tested)]
  texts = None
  if tokenizer is not None:
    texts = text_lib.decode_completions(tokenizer, completions,
                                        stop=stop_ids_of(student, teacher, config))
  return SampleOutput(completions=completions, from_teacher=flags, replacement_rate=rates,
                      acceptance_rate=acceptance, rounds=int(host.rounds), rollout=out, texts=texts)
