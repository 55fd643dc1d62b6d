"""Where a completion ends: stop ids and stop sequences, matched inside the loop.

Both are static settings (`StaticSampling.stop_ids`, `.stop_sequences`), so the
tables below are constants of the compiled program: a new prompt never
recompiles. A stop sequence matches only inside the completion (its first token
at completion index >= 0, never in the prompt), and the completion keeps it, as
it keeps a stop id; a one-token sequence is exactly a stop id.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def sequence_table(stop_sequences: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
  """Right-aligned (ids [Q, M] int32, used [Q, M] bool), M the longest sequence.

  Sequence q sits in the last len(q) columns of row q, so column M - 1 holds every
  sequence's last token and the window compared with it ends at the same column.
  """
  m = max(len(s) for s in stop_sequences)
  ids = np.zeros((len(stop_sequences), m), np.int32)
  used = np.zeros((len(stop_sequences), m), bool)
  for q, s in enumerate(stop_sequences):
    ids[q, m - len(s):] = s
    used[q, m - len(s):] = True
  return ids, used


def ends_here(tokens: jax.Array, new_tokens: jax.Array, length: jax.Array,
              prompt_length: jax.Array, n_new: jax.Array, stop_ids: tuple[int, ...],
              stop_sequences: tuple[tuple[int, ...], ...]) -> jax.Array:
  """[B, g] bool: proposed token i of row b ends the completion (a stop id, or the
  last token of a stop sequence lying wholly inside the completion).

  Args:
    tokens: [B, S] int32, the buffer with `new_tokens` already written at `length`.
    new_tokens: [B, g] int32, the proposed tokens (at positions length .. length + g - 1).
    length: [B] int32, tokens before the proposal (prompt included).
    prompt_length: [B] int32.
    n_new: [B] int32, how many proposed tokens may be kept; slots past it never stop.
    stop_ids, stop_sequences: the static settings.
  """
  b, g = new_tokens.shape
  slots = jnp.arange(g)
  hit = jnp.isin(new_tokens, jnp.asarray(stop_ids or (-1,), jnp.int32))
  if stop_sequences:
    ids, used = sequence_table(stop_sequences)
    m = ids.shape[1]
    # pos[b, i, j]: the j-th of the M positions ending at proposed slot i.
    pos = length[:, None, None] + slots[None, :, None] + jnp.arange(1 - m, 1)[None, None, :]
    window = jnp.take_along_axis(tokens, jnp.clip(pos, 0, tokens.shape[1] - 1).reshape(b, -1),
                                 axis=1).reshape(b, g, 1, m)
    inside = (pos >= prompt_length[:, None, None])[:, :, None, :]
    same = ((window == ids) & inside) | ~used                      # [B, g, Q, M]
    hit |= jnp.any(jnp.all(same, axis=-1), axis=-1)
  return hit & (slots[None, :] < n_new[:, None])
