"""Stop sequences and acceptance counting (issue 12, bugs 5 and 6): both gamma-invariant.

The reference is one free run (no stops, gamma 1): by gamma invariance every gamma
draws the same tokens, so a stopped run must be that run cut at the first stop, and
its `tested` / `accepted` must count exactly the kept tokens (each kept SKD token is
one verified draft: accepted if the student's, rejected if the teacher's).
"""
import dataclasses

import jax
import numpy as np
import pytest

from skd_jax.sampling import SamplerConfig, api, sample, sampler
from tests.tiny_sampling import PROMPTS   # The pair fixture comes from tests/conftest.py.

GAMMAS = (1, 2, 3, 5)
MAX_NEW = 24
SKD = dict(method="skd", top_k=5, student_temperature=1.0, teacher_temperature=1.0)


def _run(student, teacher, prompts=PROMPTS, **kw):
  cfg = SamplerConfig(**{"max_new_tokens": MAX_NEW, "stop_ids": (), **SKD, **kw})
  return sample(student, teacher, prompts, config=cfg, rng=jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def free(pair):
  """The reference stream: no stops, gamma 1."""
  out = _run(*pair, gamma=1)
  assert 0 < np.mean(out.replacement_rate) < 1   # both branches exercised
  return out


def _kept(completion, stop_ids=(), stop_sequences=()) -> int:
  """Tokens kept: up to the first stop id, or the first stop sequence lying wholly
  inside the completion (a match may not start in the prompt)."""
  for i, t in enumerate(completion):
    if t in stop_ids:
      return i + 1
    for s in stop_sequences:
      if i + 1 >= len(s) and tuple(completion[i + 1 - len(s):i + 1]) == tuple(s):
        return i + 1
  return len(completion)


def _round_ends(flags, gamma) -> set[int]:
  """Completion indices that close an SKD round under `gamma` (flags: from_teacher).

  A round commits drafts up to the first rejection (the teacher's replacement is
  its last token) or `gamma` tokens.
  """
  ends, c = set(), 0
  while c < len(flags):
    block = flags[c:c + gamma]
    c += block.index(True) + 1 if True in block else len(block)
    ends.add(c - 1)
  return ends


def _check_cut(out, free, kept):
  """`out` is `free` cut after kept[row] tokens, laid out as after a stop id."""
  ro = jax.device_get(out.rollout)
  for row, n in enumerate(kept):
    assert out.completions[row] == free.completions[row][:n], row
    assert out.from_teacher[row] == free.from_teacher[row][:n], row
    p, end = len(PROMPTS[row]), len(PROMPTS[row]) + n
    assert ro.length[row] == end and ro.prompt_length[row] == p
    assert not ro.tokens[row, end:].any()
    assert not ro.completion_mask[row, end:].any() and ro.completion_mask[row, p:end].all()
    assert not ro.from_teacher[row, end:].any()
    # Only kept tokens count: every kept token is one verified draft.
    assert ro.tested[row] == n, row
    assert ro.accepted[row] == n - sum(free.from_teacher[row][:n]), row


def _windows(free, length):
  """(row, end index, window tuple, flags) of every completion window of `length`."""
  for row, (c, f) in enumerate(zip(free.completions, free.from_teacher)):
    for e in range(length - 1, len(c) - 1):   # not the last token: the cut must show
      yield row, e, tuple(c[e + 1 - length:e + 1]), f[e + 1 - length:e + 1]


def _pick(free, length, want_flags, gamma, open_at):
  """(row, e, window): a window with these flags whose first occurrence ends at e,
  where no index e + o (o in `open_at`) closes a round under `gamma`."""
  for row, e, window, flags in _windows(free, length):
    ends = _round_ends(free.from_teacher[row], gamma)
    if (flags == want_flags and _kept(free.completions[row], (), (window,)) == e + 1
        and not any(e + o in ends for o in open_at)):
      return row, e, window
  raise AssertionError(f"no window of {length} with flags {want_flags}: change the seeds")


def test_stop_sequences_cut_inside_the_completion_for_every_gamma(pair, free):
  # Three student drafts, the last one in the middle of a gamma-5 block.
  _, _, mid = _pick(free, 3, [False] * 3, gamma=5, open_at=(0,))
  # Two accepted drafts and the teacher's replacement of the third, in one block.
  _, _, rep = _pick(free, 3, [False, False, True], gamma=5, open_at=(-1, -2))
  # Across the prompt boundary: (last prompt tokens, first completion token) must not
  # match at completion index 0.
  across = tuple((p[-1], c[0]) for p, c in zip(PROMPTS, free.completions))
  across += ((PROMPTS[2][-2], PROMPTS[2][-1], free.completions[2][0]),)
  seqs = (mid, rep) + across
  kept = [_kept(c, (), seqs) for c in free.completions]
  assert 1 < min(kept) < MAX_NEW   # a match across the prompt would keep 1 token
  for g in GAMMAS:
    out = _run(*pair, gamma=g, stop_sequences=seqs)
    _check_cut(out, free, kept)


def test_stop_sequence_ends_on_a_mid_block_draft_and_on_a_replacement(pair, free):
  """Each kind alone, so neither is hidden by an earlier stop of the other."""
  mid_row, mid_end, mid = _pick(free, 2, [False, False], gamma=3, open_at=(0,))
  rep_row, rep_end, rep = _pick(free, 2, [False, True], gamma=3, open_at=(-1,))
  for seq, row, end in ((mid, mid_row, mid_end), (rep, rep_row, rep_end)):
    kept = [_kept(c, (), (seq,)) for c in free.completions]
    assert kept[row] == end + 1
    for g in (3, 5):
      _check_cut(_run(*pair, gamma=g, stop_sequences=(seq,)), free, kept)


def test_single_token_sequences_are_stop_ids(pair, free):
  a, b = free.completions[0][5], free.completions[2][7]
  by_ids = _run(*pair, gamma=3, stop_ids=(a, b)).rollout
  for kw in (dict(stop_sequences=((a,), (b,))), dict(stop_ids=(a,), stop_sequences=((b,),))):
    got = _run(*pair, gamma=3, **kw).rollout
    for field in dataclasses.fields(by_ids):
      np.testing.assert_array_equal(np.asarray(getattr(got, field.name)),
                                    np.asarray(getattr(by_ids, field.name)), field.name)


def test_acceptance_counts_only_kept_tokens(pair, free):
  """Drafts cut by a stop id or the budget are not tested: every gamma counts the same."""
  stops = (free.completions[0][5], free.completions[2][7])
  budget = 10
  kept = [_kept(c[:budget], stops) for c in free.completions]
  assert min(kept) < budget and max(kept) == budget   # both cuts happen
  outs = {g: _run(*pair, gamma=g, stop_ids=stops, max_new_tokens=budget) for g in GAMMAS}
  want_tested = np.asarray(kept)
  want_accepted = np.asarray([n - sum(f[:n]) for n, f in zip(kept, free.from_teacher)])
  for g, out in outs.items():
    assert out.completions == [c[:n] for c, n in zip(free.completions, kept)], g
    np.testing.assert_array_equal(np.asarray(out.rollout.tested), want_tested, f"gamma={g}")
    np.testing.assert_array_equal(np.asarray(out.rollout.accepted), want_accepted, f"gamma={g}")
    np.testing.assert_array_equal(out.acceptance_rate, outs[1].acceptance_rate, f"gamma={g}")


def test_acceptance_is_zero_tested_without_verification(pair):
  student, teacher = pair
  for method, models in (("student", (student, None)), ("teacher", (None, teacher))):
    out = _run(*models, method=method, max_new_tokens=6)
    assert not np.asarray(out.rollout.tested).any() and not np.asarray(out.rollout.accepted).any()
    assert all(np.isnan(out.acceptance_rate))


def test_stop_sequences_normalised_and_static(pair):
  cfg = SamplerConfig(stop_sequences=[[np.int64(5), 6], (7,)])
  assert cfg.stop_sequences == ((5, 6), (7,))
  assert all(type(t) is int for s in cfg.stop_sequences for t in s)
  assert SamplerConfig().stop_sequences == ()
  hash(cfg)
  # The driver's path (prepare + run_rollout) carries them as static settings, and a
  # new prompt in the same bucket does not recompile.
  static, *_ = api.prepare(*pair, PROMPTS, cfg.replace(max_new_tokens=4))
  assert static.stop_sequences == ((5, 6), (7,))
  hash(static)
  sampler.rollout.clear_cache()
  for prompts in (PROMPTS, [[2, 8, 8], [2], [2, 4] * 3, [2, 11]]):
    _run(*pair, prompts=prompts, gamma=2, max_new_tokens=6, stop_sequences=((5, 6), (9, 9, 9)))
  assert sampler.rollout._cache_size() == 1


@pytest.mark.parametrize("value,message", [
    (((5, 6), ()), r"stop_sequences.*empty.*\(\)"),
    ((5, 6), r"stop_sequences=\(5, 6\): 5 is not a sequence; use a tuple of token-id tuples"),
    ((("a",),), r"stop_sequences.*'a'"),
])
def test_bad_stop_sequences(value, message):
  with pytest.raises(ValueError, match=message):
    SamplerConfig(stop_sequences=value)
