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
    acceptance: which teacher distribution the acceptance test sees. "raw" (its
      logits, the default) or "warped" (its temperature/top-k/top-p-warped
      sampling distribution, as the official code does). Warped, every id outside
      the teacher's sampling nucleus has probability 0, so when the nucleus holds
      n < K ids the top-K is the nucleus plus K - n "filler" ids of probability 0:
      the lowest ids outside the nucleus (ties go to the lower id here; torch.topk,
      the official code, leaves tie order unspecified). In Gemma's and the tiny
      tokenizers those are the special ids 0.. (<pad> 0, <eos> 1, <bos> 2, ...), so
      a student <eos> is accepted whenever the nucleus is small: warped SKD accepts
      a student token inside the teacher's nucleus or when it is a low-id special,
      and otherwise replaces it (docs/RESULTS.md, "Acceptance variants").
    acceptance_top_p: 0 = the top-K test (K = `top_k`). In (0, 1]: the top-p test,
      the official code's `teacher_p`: accept a draft when it lies inside the
      teacher's nucleus of mass `acceptance_top_p` (the fewest highest-probability
      ids, ties to the lower id, whose mass reaches it; never a probability-0 id,
      always the teacher's top id) of the distribution `acceptance` names; `top_k`
      is then unused. 1.0 with "warped" accepts exactly the drafts the teacher's
      sampling distribution can produce (the warped top-K without its filler).
    top_k_decay_length: 0 = constant K. L > 0: the official code's linearly
      decaying K (its `expected_seq_len`): the draft at completion index j is
      tested with K_j = max(K - d * ceil(j / N), 1), d = max(ceil(K / L), 1),
      N = max(L // K, 1); K = 0 stays 0. The official code decays once per verify
      round (K falls every N rounds), which depends on gamma and on how many drafts
      pass; per completion index is the same schedule at gamma = 1 and keeps gamma
      a pure speed knob. Traced: a new L or K never recompiles.
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
  acceptance_top_p: float = 0.0
  top_k_decay_length: int = 0
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
    _check_acceptance(self)
    if self.stop_ids is not None:
      object.__setattr__(self, "stop_ids", tuple(int(s) for s in self.stop_ids))
    object.__setattr__(self, "stop_sequences", token_sequences(self.stop_sequences))
    if self.prompt_buckets is not None:
      object.__setattr__(self, "prompt_buckets", tuple(sorted(int(b) for b in self.prompt_buckets)))

  def replace(self, **kw) -> "SamplerConfig":
    return dataclasses.replace(self, **kw)


ACCEPTANCE = ("raw", "warped")


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


def _check_acceptance(config: SamplerConfig) -> None:
  """ValueError naming a bad acceptance setting and its fix."""
  if config.acceptance not in ACCEPTANCE:
    raise ValueError(f"acceptance={config.acceptance!r}; use 'raw' or 'warped'.")
  if not 0.0 <= config.acceptance_top_p <= 1.0:
    raise ValueError(f"acceptance_top_p={config.acceptance_top_p} must be in [0, 1] "
                     "(0 = the top-K test; p in (0, 1] = accept inside the teacher's top-p "
                     "nucleus).")
  if config.top_k_decay_length < 0:
    raise ValueError(f"top_k_decay_length={config.top_k_decay_length} must be >= 0 "
                     "(0 = constant K; L > 0 = the official decay over an expected length L).")
  if config.top_k_decay_length and config.acceptance_top_p:
    raise ValueError(f"top_k_decay_length={config.top_k_decay_length} decays the top-K test, "
                     f"but acceptance_top_p={config.acceptance_top_p} replaces it by the top-p "
                     "test; set one of them to 0.")


def acceptance_settings(block) -> dict:
  """The acceptance fields of a SamplerConfig from a config's `sampler` block.

  Keys missing from the block (configs written before they existed) get the
  SamplerConfig defaults.
  """
  get = block.get if hasattr(block, "get") else (lambda k, d: getattr(block, k, d))
  return dict(acceptance=str(get("acceptance", "raw")),
              acceptance_top_p=float(get("acceptance_top_p", 0.0)),
              top_k_decay_length=int(get("top_k_decay_length", 0)))


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
  nucleus_acceptance: bool = False                  # the top-p test (acceptance_top_p > 0)
  per_layer_decode: bool = False
  stop_sequences: tuple[tuple[int, ...], ...] = ()   # sorted, without repeats
  student_rules: str = "student"                    # sharding.RULE_SETS names
  teacher_rules: str = "teacher"


@flax.struct.dataclass
class DynamicSampling:
  """Traced settings: changing them does not recompile."""
  top_k: jnp.ndarray               # int32 scalar, acceptance K (at completion index 0)
  top_k_decay_length: jnp.ndarray  # int32 scalar, 0 = constant K (`decayed_top_k`)
  acceptance_top_p: jnp.ndarray    # float32 scalar, the top-p test's mass (if static says so)
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
      nucleus_acceptance=config.acceptance_top_p > 0,
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
      top_k_decay_length=jnp.asarray(config.top_k_decay_length, jnp.int32),
      acceptance_top_p=f32(config.acceptance_top_p),
      student_temperature=f32(config.student_temperature),
      teacher_temperature=f32(config.teacher_temperature),
      student_top_p=f32(config.top_p if config.student_top_p is None else config.student_top_p),
      teacher_top_p=f32(config.top_p if config.teacher_top_p is None else config.teacher_top_p),
  )
  return static, dynamic


def decayed_top_k(top_k: jax.Array, decay_length: jax.Array, index: jax.Array) -> jax.Array:
  """The acceptance K at completion index `index` (int32, any shape).

  The official linear decay over an expected length L = `decay_length`:
  K_j = max(K - d * ceil(j / N), 1) with d = max(ceil(K / L), 1) and
  N = max(L // K, 1). L = 0 (or K = 0) gives K at every index.
  """
  k = top_k.astype(jnp.int32)
  length = jnp.maximum(decay_length, 1)
  per_decay = jnp.maximum(-(-k // length), 1)        # ceil(K / L)
  every = jnp.maximum(length // jnp.maximum(k, 1), 1)  # rounds between decays
  decays = -(-index.astype(jnp.int32) // every)      # ceil(j / N), j >= 0
  decayed = jnp.maximum(k - per_decay * decays, 1)
  return jnp.where((decay_length > 0) & (k > 0), decayed, k)
