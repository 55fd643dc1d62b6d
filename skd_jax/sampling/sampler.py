"""The interleaved SKD sampler: one jitted `jax.lax.while_loop` over a whole batch.

Layout. Row b holds its prompt then its completion contiguously in `tokens[b]`;
`length[b]` counts them. Both KV caches hold every token but the last one, which
is "pending" (fed at the start of the next round), so `cache.end_index == length - 1`.

One SKD round, for every row at once (rows advance by different amounts):

1. the student feeds the pending token and drafts `gamma` tokens d_0..d_{g-1},
   one decode step each;
2. the teacher runs ONE forward over [pending, d_0, .., d_{g-2}] and so scores
   every draft position;
3. the row keeps the longest prefix of drafts that pass the teacher's test
   (`_accept`: inside its top-K, a K decaying with the completion index, or its
   top-p nucleus, of its raw or warped distribution), then
   (if a draft was rejected) the teacher's own sample at that position; there is
   no bonus token when all drafts pass (as in the official code);
4. the first stop id or completed stop sequence (`stops.py`; matched inside the
   completion only, kept in it) and `max_new_tokens` truncate what is kept; both
   caches are rolled back to `length - 1`, so rejected drafts are overwritten by
   the next round.

Acceptance counts only kept tokens: each kept token is one verified draft
(`tested`), accepted unless the teacher replaced it (`accepted`); drafts cut by a
stop or the budget are not counted (so "student" and "teacher" count none).

Randomness is per position: the token at completion index j uses
`fold_in(fold_in(row_key, j), 0)` for the student's draw and `..., 1)` for the
teacher's. A draft therefore equals what token-by-token interleaving would have
drawn, so every gamma gives the same sequences and the same counts (DESIGN.md
invariant 4), K = vocab gives "student"'s sequences and K = 0 "teacher"'s. Row
keys are `fold_in(rng, row)`, so a row does not depend on the other rows or the
batch size.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from skd_jax import sharding
from skd_jax.models import layouts
from skd_jax.models import transformer
from skd_jax.models.config import ModelConfig
from skd_jax.sampling import distributions, stops
from skd_jax.sampling.config import DynamicSampling, StaticSampling, decayed_top_k

STUDENT_STREAM, TEACHER_STREAM = 0, 1


@flax.struct.dataclass
class LoopState:
  """The while-loop carry. Shapes: B rows, S = prompt bucket + max_new + gamma slots."""
  tokens: jax.Array          # [B, S] int32, prompt then completion
  from_teacher: jax.Array    # [B, S] bool, token sampled by the teacher
  length: jax.Array          # [B] int32, tokens so far (prompt included)
  done: jax.Array            # [B] bool, stop id / stop sequence emitted or budget used
  tested: jax.Array          # [B] int32, kept tokens that are verified student drafts
  accepted: jax.Array        # [B] int32, of which inside the teacher's top-K (not replaced)
  rounds: jax.Array          # [] int32
  student_cache: Any         # KVCache or None ("teacher" method)
  teacher_cache: Any         # KVCache or None ("student" method)


@flax.struct.dataclass
class Rollout:
  """The jittable core's output (arrays only; `sample` turns it into lists)."""
  tokens: jax.Array            # [B, S] int32; zeros after each row's end
  from_teacher: jax.Array      # [B, S] bool
  completion_mask: jax.Array   # [B, S] bool: completion tokens, stop id / sequence included
  length: jax.Array            # [B] int32
  prompt_length: jax.Array     # [B] int32
  tested: jax.Array            # [B] int32, verified drafts among the kept tokens
  accepted: jax.Array          # [B] int32, of which accepted (gamma-invariant, like tokens)
  rounds: jax.Array            # [] int32, while-loop iterations


def position_keys(row_keys: jax.Array, index: jax.Array, stream: int) -> jax.Array:
  """Keys [B] for completion index `index` [B] of each row, for one stream."""
  return jax.vmap(lambda k, j: jax.random.fold_in(jax.random.fold_in(k, j), stream))(row_keys, index)


def _set_rows(buf: jax.Array, start: jax.Array, values: jax.Array) -> jax.Array:
  """buf[b, start[b] : start[b] + W] = values[b] for every row (W = values.shape[1])."""
  return jax.vmap(lambda r, s, v: jax.lax.dynamic_update_slice(r, v, (s,)))(buf, start, values)


def _rewind(cache, length: jax.Array):
  return None if cache is None else cache.replace(end_index=length - 1)


def _vocab(logits: jax.Array, vocab_size: int) -> jax.Array:
  return logits[..., :vocab_size]


def _draft(student_params, s_cfg, cache, pending, completion_index, row_keys,
           static: StaticSampling, dyn: DynamicSampling):
  """gamma student decode steps from `pending`; returns (drafts [B, g], cache)."""
  b = pending.shape[0]

  def step(i, carry):
    cache, token, drafts = carry
    logits, cache = transformer.forward(student_params, token[:, None], s_cfg, cache=cache)
    keys = position_keys(row_keys, completion_index + i, STUDENT_STREAM)
    token = distributions.sample(keys, _vocab(logits[:, 0], static.vocab_size),
                                 dyn.student_temperature, dyn.student_top_p, static.sampling_top_k)
    return cache, token, drafts.at[:, i].set(token)

  drafts = jnp.zeros((b, static.gamma), jnp.int32)
  cache, _, drafts = jax.lax.fori_loop(0, static.gamma, step, (cache, pending, drafts))
  return drafts, cache


def _teacher_token(logits, completion_index, row_keys, static, dyn):
  keys = position_keys(row_keys, completion_index, TEACHER_STREAM)
  return distributions.sample(keys, logits, dyn.teacher_temperature, dyn.teacher_top_p,
                              static.sampling_top_k)


def _accept(test_logits, drafts, completion_index, static: StaticSampling,
            dyn: DynamicSampling) -> jax.Array:
  """[B, g] bool: draft i (at completion index completion_index + i) passes the test.

  The top-p test (`static.nucleus_acceptance`), or the top-K test with the K of
  each draft's completion index (constant unless `dyn.top_k_decay_length` > 0).
  """
  if static.nucleus_acceptance:
    return distributions.in_nucleus(test_logits, drafts, dyn.acceptance_top_p)
  index = completion_index[:, None] + jnp.arange(drafts.shape[1])[None, :]
  k = decayed_top_k(dyn.top_k, dyn.top_k_decay_length, index)
  return distributions.in_top_k(test_logits, drafts, k)


def _verify(teacher_params, t_cfg, cache, pending, drafts, completion_index, row_keys,
            static: StaticSampling, dyn: DynamicSampling):
  """One teacher forward over the drafts; returns (tokens [B,g], from_teacher [B,g], n_new [B], n_accepted [B], cache)."""
  g = static.gamma
  block = jnp.concatenate([pending[:, None], drafts[:, :g - 1]], axis=1)
  logits, cache = transformer.forward(teacher_params, block, t_cfg, cache=cache)
  logits = _vocab(logits, static.vocab_size)                       # [B, g, V]
  test_logits = logits
  if static.warped_acceptance:
    test_logits = distributions.warp(logits, dyn.teacher_temperature, dyn.teacher_top_p,
                                     static.sampling_top_k)
  accept = _accept(test_logits, drafts, completion_index, static, dyn)   # [B, g]
  n_accepted = jnp.sum(jnp.cumprod(accept, axis=1), axis=1)        # leading run
  at = jnp.minimum(n_accepted, g - 1)
  replacement = _teacher_token(jnp.take_along_axis(logits, at[:, None, None], axis=1)[:, 0],
                               completion_index + at, row_keys, static, dyn)
  slots = jnp.arange(g)[None, :]
  rejected_here = (slots == n_accepted[:, None])                   # never true if all passed
  tokens = jnp.where(rejected_here, replacement[:, None], drafts)
  n_new = jnp.where(n_accepted < g, n_accepted + 1, g)
  return tokens, rejected_here, n_new, n_accepted, cache


def _commit(state: LoopState, new_tokens, new_from_teacher, n_new, n_accepted,
            prompt_length, static: StaticSampling, student_cache, teacher_cache) -> LoopState:
  """Keeps n_new of the proposed tokens [B, g] per row, cut at the first stop and the budget.

  `n_accepted` [B] is the leading run of accepted drafts, or None when nothing was
  verified. Only kept tokens are counted: tested += kept, accepted += min(n_accepted, kept).
  """
  budget = static.max_new_tokens - (state.length - prompt_length)
  n_new = jnp.where(state.done, 0, jnp.minimum(n_new, budget))
  tokens = _set_rows(state.tokens, state.length, new_tokens)
  is_stop = stops.ends_here(tokens, new_tokens, state.length, prompt_length, n_new,
                            static.stop_ids, static.stop_sequences)
  hit_stop = jnp.any(is_stop, axis=1)
  n_new = jnp.where(hit_stop, jnp.argmax(is_stop, axis=1) + 1, n_new)
  length = state.length + n_new
  tested, accepted = state.tested, state.accepted
  if n_accepted is not None:
    tested, accepted = tested + n_new, accepted + jnp.minimum(n_accepted, n_new)
  return LoopState(
      tokens=tokens,
      from_teacher=_set_rows(state.from_teacher, state.length, new_from_teacher),
      length=length,
      done=state.done | hit_stop | (length - prompt_length >= static.max_new_tokens),
      tested=tested,
      accepted=accepted,
      rounds=state.rounds + 1,
      student_cache=_rewind(student_cache, length),
      teacher_cache=_rewind(teacher_cache, length),
  )


def _round(state: LoopState, student_params, teacher_params, prompt_length, row_keys,
           s_cfg, t_cfg, static: StaticSampling, dyn: DynamicSampling) -> LoopState:
  rows = jnp.arange(state.length.shape[0])
  pending = state.tokens[rows, state.length - 1]
  completion_index = state.length - prompt_length   # index of the next completion token
  b = pending.shape[0]
  if static.method == "teacher":
    logits, t_cache = transformer.forward(teacher_params, pending[:, None], t_cfg,
                                          cache=state.teacher_cache)
    token = _teacher_token(_vocab(logits[:, 0], static.vocab_size), completion_index, row_keys,
                           static, dyn)
    return _commit(state, token[:, None], jnp.ones((b, 1), bool), jnp.ones((b,), jnp.int32),
                   None, prompt_length, static, None, t_cache)
  drafts, s_cache = _draft(student_params, s_cfg, state.student_cache, pending, completion_index,
                           row_keys, static, dyn)
  if static.method == "student":
    return _commit(state, drafts, jnp.zeros(drafts.shape, bool),
                   jnp.full((b,), static.gamma, jnp.int32), None, prompt_length, static,
                   s_cache, None)
  tokens, from_teacher, n_new, n_accepted, t_cache = _verify(
      teacher_params, t_cfg, state.teacher_cache, pending, drafts, completion_index, row_keys,
      static, dyn)
  return _commit(state, tokens, from_teacher, n_new, n_accepted, prompt_length, static,
                 s_cache, t_cache)


def _prefill(params, cfg, prompt_tokens, prompt_length, cache_length, rules: str):
  """Caches holding every prompt token but the last (which is pending).

  Under a mesh (`jax.set_mesh`) the cache is laid out by the model's rule table
  (`rules`, a `skd_jax.sharding` table name: `static.student_rules` or
  `.teacher_rules`): it stays that way through the loop, with no resharding.
  """
  cache = transformer.init_cache(cfg, prompt_tokens.shape[0], cache_length)
  cache = cache.replace(k=sharding.with_logical_constraint(cache.k, transformer.CACHE_AXES.k, rules),
                        v=sharding.with_logical_constraint(cache.v, transformer.CACHE_AXES.v, rules))
  _, cache = transformer.forward(params, prompt_tokens, cfg, cache=cache, lengths=prompt_length - 1)
  return cache


_decode_layout = jax.jit(layouts.decode_layout, static_argnames="cfg")


_compute_dtype_weights = jax.jit(layouts.matmul_weights_in_compute_dtype, static_argnames="cfg")


def loop_params(params, cfg: ModelConfig | None, static: StaticSampling):
  """`params` in the layout `rollout`'s loop decodes with (None stays None).

  With `static.per_layer_decode` (the CPU default) the stacked weights are
  split per layer here, in their own jitted call: done inside `rollout`, XLA
  fuses the slices back into the loop and keeps most of the per-step copies.
  A model whose compute dtype is narrower than its weights' (bfloat16 over
  float32 masters) gets its matrices in the compute dtype here, once per
  rollout instead of at every step (`layouts.matmul_weights_in_compute_dtype`;
  the same values reach every matmul).
  """
  if params is None:
    return params
  if cfg is not None and layouts.has_wider_matrices(params, cfg):
    params = _compute_dtype_weights(params, cfg=cfg)
  if not static.per_layer_decode:
    return params
  return _decode_layout(params, cfg=cfg)


@functools.partial(jax.jit, static_argnames=("static", "student_cfg", "teacher_cfg"))
def rollout(student_params, teacher_params, prompt_tokens: jax.Array, prompt_length: jax.Array,
            row_keys: jax.Array, dyn: DynamicSampling, *, static: StaticSampling,
            student_cfg: ModelConfig | None, teacher_cfg: ModelConfig | None) -> Rollout:
  """The jittable core: arrays in, arrays out, no host round trip.

  Args:
    student_params, teacher_params: params pytrees (None for the unused model), in
      either layout; `loop_params` gives the faster one for `static` (as
      `api.run_rollout` does).
    prompt_tokens: [B, P] int32, right-padded prompts (P is the bucket).
    prompt_length: [B] int32, >= 1.
    row_keys: [B] PRNG keys, one per row (see `row_keys_for`).
    dyn: traced settings (temperatures, top-p, acceptance K).
    static: compiled settings; student_cfg / teacher_cfg: model configs.

  Returns:
    A `Rollout`; nothing of size [B, L, V] is kept.
  """
  b, p = prompt_tokens.shape
  width = p + static.max_new_tokens + static.gamma
  tokens = jnp.zeros((b, width), jnp.int32).at[:, :p].set(prompt_tokens)
  prompt_length = prompt_length.astype(jnp.int32)
  use_student = static.method != "teacher"
  use_teacher = static.method != "student"
  state = LoopState(
      tokens=tokens,
      from_teacher=jnp.zeros((b, width), bool),
      length=prompt_length,
      done=jnp.zeros((b,), bool) if static.max_new_tokens > 0 else jnp.ones((b,), bool),
      tested=jnp.zeros((b,), jnp.int32),
      accepted=jnp.zeros((b,), jnp.int32),
      rounds=jnp.zeros((), jnp.int32),
      student_cache=_prefill(student_params, student_cfg, prompt_tokens, prompt_length, width,
                             static.student_rules) if use_student else None,
      teacher_cache=_prefill(teacher_params, teacher_cfg, prompt_tokens, prompt_length, width,
                             static.teacher_rules) if use_teacher else None,
  )
  body = functools.partial(_round, student_params=student_params, teacher_params=teacher_params,
                           prompt_length=prompt_length, row_keys=row_keys, s_cfg=student_cfg,
                           t_cfg=teacher_cfg, static=static, dyn=dyn)
  state = jax.lax.while_loop(lambda s: ~jnp.all(s.done), body, state)

  slots = jnp.arange(width)[None, :]
  in_sequence = slots < state.length[:, None]
  completion = in_sequence & (slots >= prompt_length[:, None])
  return Rollout(
      tokens=jnp.where(in_sequence, state.tokens, 0),
      from_teacher=state.from_teacher & completion,
      completion_mask=completion,
      length=state.length,
      prompt_length=prompt_length,
      tested=state.tested,
      accepted=state.accepted,
      rounds=state.rounds,
  )


def row_keys_for(rng: jax.Array, batch_size: int, offset: int = 0) -> jax.Array:
  """One key per row: fold_in(rng, offset + row), independent of the batch size."""
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(batch_size) + offset)
