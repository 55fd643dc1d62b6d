"""Length buckets: the padded lengths arrays are rounded up to (few shapes, few compiles).

    lengths = power_of_two(100)          # (16, 32, 64, 100)
    bucket(17, lengths)                  # 32
    bucket(101, lengths)                 # ValueError: names the bucket set and the fix

One rule everywhere (prompt buckets of the sampler, prompt / target buckets of
the data pipeline, training rows of the driver): a length goes to the smallest
bucket >= it, in any order the buckets are given; a length above every bucket
is an error, never a silent new shape (a new shape would recompile the jitted
function mid-run). The default set is `power_of_two(max_length)`; without a
maximum (the sampler's prompts) it is `power_of_two(DEFAULT_MAX)`.
"""
from __future__ import annotations

from typing import Sequence

SMALLEST = 16
DEFAULT_MAX = 2 ** 16


def power_of_two(max_length: int = DEFAULT_MAX, smallest: int = SMALLEST) -> tuple[int, ...]:
  """(smallest, 2 * smallest, ..., max_length): the powers of two below
  `max_length`, then `max_length` itself (so it is always the last bucket)."""
  out, size = [], smallest
  while size < max_length:
    out.append(size)
    size *= 2
  return tuple(out) + (max_length,)


def bucket(length: int, buckets: Sequence[int], *, what: str = "length",
           fix: str = "raise the budget or add a larger bucket") -> int:
  """The smallest of `buckets` >= `length`.

  Args:
    length: the length to pad to.
    buckets: the allowed padded lengths (any order).
    what, fix: name the length and the remedy in the error.

  Raises:
    ValueError: `length` exceeds every bucket.
  """
  fitting = [b for b in buckets if b >= length]
  if not fitting:
    raise ValueError(f"{what} {length} exceeds the largest bucket {max(buckets)} of "
                     f"{tuple(sorted(buckets))}; {fix}.")
  return min(fitting)
