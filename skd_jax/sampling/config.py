"""`SamplerConfig`: what the user sets; split into static (compiled) and dynamic parts."""
from __future__ import annotations

import dataclasses
import operator

import flax.struct
import jax
import jax.numpy as jnp

METHODS = ("skd", "student", "teacher")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """Settings of the interleaved sampler.

  Attributes:
    method: "skd" (student proposes, teacher replaces tokens outside its top-K),
      "student" (on-policy: the student alone; the teacher never runs) or
      "teacher" (SeqKD: the teacher alone; the student never runs).
    top_k: acceptance K of SKD. K = vocab gives "student"'s law, K = 0 "teacher"'s.
    gamma: student tokens drafted per round and verified by one teacher forward.
      A pure speed knob: sequences are identical for every gamma (per-position keys).
    student_temperature, teacher_temperature: 0 means greedy.
    top_p: nucleus of both models; student_top_p / teacher_top_p override it.
    sampling_top_k: top-k filter of both models' sampling distributions (0 = off);
      distinct from the acceptance `top_k`.
    acceptance: "raw" (the top-K test uses the teacher's raw distribution, the
      default) or "warped" (its temperature/top-p/top-k-warped sampling
      distribution, as the official code does; then K may include
      zero-probability ids, chosen by lowest id).
    max_new_tokens: completion budget, honoured exactly.
    stop_ids: tokens that end a completion (kept in it). None = the models' EOS
      ids; () = never stop early.
    stop_sequences: token-id sequences that end a completion right after their
      first occurrence inside it (a match never starts in the prompt; the sequence
      is kept, as a stop id is). A one-token sequence is a stop id. Static: a new
      set compiles once, a new prompt never. Given as any iterable of iterables of
      ints; stored as a tuple of int tuples.
    prompt_buckets: prompts are right-padded to the smallest bucket that fits, so
      one compilation serves all prompt lengths within a bucket. None = powers of
      two from 16.
    cache_length: KV-cache slots per row; None = bucket + max_new_tokens + gamma.
    shared_vocab_size: when the models' vocabularies differ only by padding rows
      (Qwen2-7B has 152,064 rows, Qwen2-0.5B 151,936, one tokenizer), sample over
      the first `shared_vocab_size` ids of both. None = the vocabularies must match.
    decode_layout: how the loop holds the weights. "stacked": as given (layers
      under `lax.scan`); "per_layer": per-layer arrays and a transposed tied
      embedding (`transformer.decode_layout`), about 1.5x faster decode steps on
      XLA:CPU at the cost of a second copy of the weights; "auto": "per_layer"
      on the CPU backend, "stacked" elsewhere (TPU/GPU memory is precious).
    student_rules, teacher_rules: names of the `skd_jax.sharding.RULE_SETS` tables
      that lay out each model's KV cache under a mesh (match the tables the params
      were sharded with).
  """
  method: str = "skd"
  top_k: int = 25
  gamma: int = 1
  student_temperature: float = 1.0
  teacher_temperature: float = 1.0
  top_p: float = 1.0
  student_top_p: float | None = None
  teacher_top_p: float | None = None
  sampling_top_k: int = 0
  acceptance: str = "raw"
  max_new_tokens: int = 128
  stop_ids: tuple[int, ...] | None = None
  stop_sequences: tuple[tuple[int, ...], ...] = ()
  prompt_buckets: tuple[int, ...] | None = None
  cache_length: int | None = None
  shared_vocab_size: int | None = None
  decode_layout: str = "auto"
  student_rules: str = "student"
  teacher_rules: str = "teacher"

  def __post_init__(self):
    _check_ranges(self)
    if self.stop_ids is not None:
      object.__setattr__(self, "stop_ids", tuple(int(s) for s in self.stop_ids))
    object.__setattr__(self, "stop_sequences", token_sequences(self.stop_sequences))
    if self.prompt_buckets is not None:
      object.__setattr__(self, "prompt_buckets", tuple(sorted(int(b) for b in self.prompt_buckets)))

  def replace(self, **kw) -> "SamplerConfig":
    return dataclasses.replace(self, **kw)


def _check_ranges(config: SamplerConfig) -> None:
  """ValueError naming a knob out of range and its fix (the one home of these checks;
  the driver's validation reports them under their config keys)."""
  if config.top_k < 0:
    raise ValueError(f"top_k={config.top_k}: the acceptance K must be >= 0 "
                     "(0 = teacher sampling, vocab size = on-policy).")
  if config.gamma < 1:
    raise ValueError(f"gamma={config.gamma}: draft at least one token per round (gamma >= 1).")
  if config.max_new_tokens < 0:
    raise ValueError(f"max_new_tokens={config.max_new_tokens} must be >= 0.")
  for name in ("student_temperature", "teacher_temperature"):
    if getattr(config, name) < 0:
      raise ValueError(f"{name}={getattr(config, name)} must be >= 0 (0 = greedy).")
  for name in ("top_p", "student_top_p", "teacher_top_p"):
    value = getattr(config, name)
    if value is not None and not 0 < value <= 1:
      raise ValueError(f"{name}={value} must be in (0, 1].")
  if config.sampling_top_k < 0:
    raise ValueError(f"sampling_top_k={config.sampling_top_k} must be >= 0 (0 = off).")


def token_sequences(value) -> tuple[tuple[int, ...], ...]:
  """`stop_sequences` as a tuple of int tuples; a ValueError naming the bad value."""
  if value is None:
    return ()
  example = "use a tuple of token-id tuples, e.g. ((5, 6), (7,))"
  if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
    raise ValueError(f"stop_sequences={value!r}: {example}.")
  out = []
  for seq in value:
    if isinstance(seq, (str, bytes)) or not hasattr(seq, "__iter__"):
      raise ValueError(f"stop_sequences={value!r}: {seq!r} is not a sequence; {example}.")
    try:
      ids = tuple(operator.index(t) for t in seq)
    except TypeError:
      raise ValueError(f"stop_sequences={value!r}: {seq!r} holds a non-integer token id; "
                       f"{example}.") from None
    if not ids:
      raise ValueError(f"stop_sequences={value!r} holds an empty sequence (); every stop "
                       "sequence needs at least one token id.")
    out.append(ids)
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class StaticSampling:
  """The part of the settings that shapes the compiled program (a jit static arg)."""
  method: str
  gamma: int
  max_new_tokens: int
  stop_ids: tuple[int, ...]
  sampling_top_k: int
  warped_acceptance: bool
  vocab_size: int
  per_layer_decode: bool = False
  stop_sequences: tuple[tuple[int, ...], ...] = ()   # sorted, without repeats
  student_rules: str = "student"                    # sharding.RULE_SETS names
  teacher_rules: str = "teacher"


@flax.struct.dataclass
class DynamicSampling:
  """Traced settings: changing them does not recompile."""
  top_k: jnp.ndarray               # int32 scalar, acceptance K
  student_temperature: jnp.ndarray  # float32 scalar
  teacher_temperature: jnp.ndarray
  student_top_p: jnp.ndarray
  teacher_top_p: jnp.ndarray


def split(config: SamplerConfig, stop_ids: tuple[int, ...], vocab_size: int):
  """(StaticSampling, DynamicSampling) of a validated config."""
  static = StaticSampling(
      method=config.method,
      gamma=config.gamma if config.method == "skd" else 1,
      max_new_tokens=config.max_new_tokens,
      stop_ids=stop_ids,
      sampling_top_k=config.sampling_top_k,
      warped_acceptance=config.acceptance == "warped",
      vocab_size=vocab_size,
      per_layer_decode=(config.decode_layout == "per_layer" or
                        (config.decode_layout == "auto" and jax.default_backend() == "cpu")),
      stop_sequences=tuple(sorted(set(config.stop_sequences))),
      student_rules=config.student_rules,
      teacher_rules=config.teacher_rules,
  )
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  dynamic = DynamicSampling(
      top_k=jnp.asarray(min(config.top_k, vocab_size), jnp.int32),
      student_temperature=f32(config.student_temperature),
      teacher_temperature=f32(config.teacher_temperature),
      student_top_p=f32(config.top_p if config.student_top_p is None else config.student_top_p),
      teacher_top_p=f32(config.top_p if config.teacher_top_p is None else config.teacher_top_p),
  )
  return static, dynamic
