"""The acceptance-targeting K controller (skd_jax/train/acceptance_control.py).

Toy problems where the replacement rate is a known function of K (a student whose
tokens take Zipf-distributed ranks under the teacher, measured with binomial noise
from one batch), then the real sampler on a tiny pair: the rate ends inside its band.
"""
import math

import jax
import numpy as np
import pytest

from skd_jax.sampling import SamplerConfig, sample
from skd_jax.train import acceptance_control as ac
from tests.tiny_sampling import PROMPTS, model as _model

V = 600
TOKENS_PER_STEP = 8 * 24   # the paper's batch of 8 sequences, 24 new tokens


def zipf_rate(exponent: float):
  """r(K) = P(rank >= K) for ranks r in [0, V) with P(r) ~ (r + 1)^-exponent."""
  p = (np.arange(V) + 1.0) ** -exponent
  tail = np.concatenate([np.cumsum(p[::-1])[::-1] / p.sum(), [0.0]])
  return lambda k: float(tail[min(int(k), V)])


def simulate(rate_of_step, control, k0, steps, seed=0):
  """(K used, true rate, measured rate) per step; rate_of_step(step) -> r(K) function."""
  rng = np.random.default_rng(seed)
  k, out = float(k0), []
  for step in range(steps):
    used = ac.acceptance_k(k)
    true = rate_of_step(step)(used)
    measured = rng.binomial(TOKENS_PER_STEP, true) / TOKENS_PER_STEP
    out.append((used, true, measured))
    k = ac.update(k, measured, control)
  return out


def _reachable(rate, control):
  """Some integer K in the bounds puts the true rate strictly inside the band (precondition)."""
  return any(abs(rate(k) - control.target) < control.band
             for k in range(control.k_min, control.k_max + 1))


@pytest.mark.parametrize("exponent,target,k0", [(1.1, 0.2, 25), (1.5, 0.1, 25), (0.8, 0.3, 1),
                                                (2.0, 0.05, 300), (1.1, 0.5, 600)])
def test_holds_the_rate_in_band_on_a_stationary_toy(exponent, target, k0):
  rate = zipf_rate(exponent)
  control = ac.Control(target=target, band=max(0.25 * target, 0.03), k_max=V)
  assert _reachable(rate, control)
  trace = simulate(lambda _: rate, control, k0, steps=60)
  # Binomial noise of one batch is ~sqrt(r(1-r)/192); judge the true rate of the K used.
  last = [true for _, true, _ in trace[-20:]]
  inside = np.mean([abs(r - target) <= control.band + 0.01 for r in last])
  assert inside >= 0.9, (trace[-20:], control)


def test_the_band_check_has_power():
  """The same check fails for a gain beyond the stability bound (gain * a = 6 > 2): K
  oscillates and the rate leaves the band."""
  rate = zipf_rate(2.0)
  control = ac.Control(target=0.05, band=0.0125, k_max=V, gain=3.0, max_factor=8.0)
  trace = simulate(lambda _: rate, control, 300, steps=60)
  inside = np.mean([abs(true - 0.05) <= control.band + 0.01 for _, true, _ in trace[-20:]])
  assert inside < 0.5


def test_tracks_a_student_that_improves():
  """The student's ranks sharpen over training (the exponent grows): K must fall to keep
  the teacher replacing ~15% of tokens, and the rate stays in band throughout."""
  control = ac.Control(target=0.15, band=0.05, k_max=V)
  exponents = np.linspace(0.9, 2.0, 200)
  trace = simulate(lambda s: zipf_rate(exponents[s]), control, 25, steps=200, seed=1)
  ks = [k for k, _, _ in trace]
  assert ks[-1] < ks[20]
  late = [abs(true - 0.15) <= 0.05 + 0.01 for _, true, _ in trace[20:]]
  assert np.mean(late) >= 0.9


def test_noise_free_converges_and_stays():
  rate = zipf_rate(1.2)
  control = ac.Control(target=0.2, band=0.04, k_max=V)
  k = 1.0
  for _ in range(40):
    k = ac.update(k, rate(ac.acceptance_k(k)), control)
  assert abs(rate(ac.acceptance_k(k)) - 0.2) <= 0.04
  assert ac.update(k, rate(ac.acceptance_k(k)), control) == k   # inside the band: no change


def test_update_rules():
  c = ac.Control(target=0.2, band=0.05, k_min=2, k_max=50, max_factor=2.0)
  assert ac.update(10.0, 0.22, c) == 10.0                 # dead band
  assert ac.update(10.0, float("nan"), c) == 10.0         # nothing sampled
  assert ac.update(10.0, 0.4, c) > 10.0                   # too many replacements: accept more
  assert ac.update(10.0, 0.05, c) < 10.0
  assert ac.update(10.0, 1.0, c) == 20.0                  # at most x2 per step
  assert ac.update(10.0, 0.0, c) == 5.0
  assert ac.update(40.0, 1.0, c) == 50.0 and ac.update(3.0, 0.0, c) == 2.0   # bounds
  assert ac.acceptance_k(0.2) == 1 and ac.acceptance_k(24.6) == 25


@pytest.mark.parametrize("kw,message", [
    (dict(target=1.2), r"target replacement rate 1.2 must be in \(0, 1\)"),
    (dict(target=0.2, band=-1), r"band=-1"),
    (dict(target=0.2, k_min=5, k_max=3), r"K bounds \[5, 3\]"),
    (dict(target=0.2, gain=0), r"gain=0"),
])
def test_bad_settings(kw, message):
  with pytest.raises(ValueError, match=message):
    ac.Control(**kw)


def test_from_config():
  import ml_collections
  block = ml_collections.ConfigDict(dict(target_replacement_rate=0.0))
  assert ac.from_config(block, 600, 25) is None
  block = ml_collections.ConfigDict(dict(target_replacement_rate=0.2, target_band=0.03,
                                         target_k_min=2, target_k_max=0, target_gain=0.7))
  control, k0 = ac.from_config(block, 600, 25)
  assert (control.target, control.band, control.k_min, control.k_max, control.gain) == \
      (0.2, 0.03, 2, 600, 0.7)
  assert k0 == 25.0
  assert ac.from_config(block, 600, 1 << 30)[1] == 600.0   # K = "vocab" starts at the bound


@pytest.mark.slow
def test_real_sampler_rate_ends_in_band():
  """The controller driving SKD's K on a tiny random pair (vocabulary 128; the student
  does not learn, so r(K) is stationary: about 0.61 at K = 1, 0.53 at 16, 0.47 at 32,
  0.30 at 64, 0.14 at 100, 0 at 128). Each step samples 32 prompts x 16 tokens with a
  fresh key; one compilation serves every K (K is traced). r(K) is flat here (log-log
  slope ~0.2-1.7), so the test uses gain 1 (stable below slope 2)."""
  student = _model("tiny-gemma", 1, std=0.1)
  teacher = _model("tiny-gemma", 2, std=0.1, num_layers=3)
  prompts = [PROMPTS[i % 4] for i in range(32)]
  control = ac.Control(target=0.3, band=0.08, gain=1.0, k_max=student.config.vocab_size)
  k, trace = 16.0, []
  for step in range(12):
    cfg = SamplerConfig(top_k=ac.acceptance_k(k), gamma=2, max_new_tokens=16, stop_ids=())
    out = sample(student, teacher, prompts, config=cfg, rng=jax.random.PRNGKey(step))
    flags = np.concatenate([np.asarray(f, bool) for f in out.from_teacher])
    rate = float(flags.mean())
    trace.append((ac.acceptance_k(k), rate))
    k = ac.update(k, rate, control)
  assert trace[0][1] > control.target + control.band    # K = 16 starts far above the target
  assert all(abs(r - 0.3) <= control.band + 0.04 for _, r in trace[-4:]), trace
  assert 16 < k < student.config.vocab_size


def test_tracker_resumes_with_the_saved_k(tmp_path):
  import ml_collections
  block = ml_collections.ConfigDict(dict(top_k=25, target_replacement_rate=0.2))
  assert ac.Tracker.create(ml_collections.ConfigDict(dict(top_k=25)), 600, str(tmp_path)) is None
  rate = zipf_rate(1.1)
  a = ac.Tracker.create(block, 600, str(tmp_path))
  logged = []
  for step in range(1, 13):
    logged.append(a.k_for_step())
    a.observe(rate(a.k_for_step()) + 0.05 * ((-1) ** step))
    if step == 6:
      a.save(step)
  b = ac.Tracker.create(block, 600, str(tmp_path), restore_step=6)
  for step in range(7, 13):
    assert b.k_for_step() == logged[step - 1]
    assert b.observe(rate(b.k_for_step()) + 0.05 * ((-1) ** step)) == {"acceptance_k": logged[step - 1]}
  assert b.k == a.k


@pytest.mark.slow
def test_driver_logs_and_follows_the_controller(tmp_path):
  """A tiny SKD driver run with the controller on: every step logs the K it used, each K
  is the controller's reply to the previous step's logged rate, and the checkpoints
  carry the next K (so a resumed run continues the trajectory)."""
  import json
  from skd_jax.train import loop
  from tests import tiny
  config = tiny.tiny_config("gemma_translate", method="skd", max_steps=4, log_every_steps=1,
                            **{"checkpoint.every_steps": 2, "sampler.top_k": 2,
                               "sampler.target_replacement_rate": 0.05,
                               "sampler.target_band": 0.01, "sampler.target_gain": 1.0})
  loop.run(config, str(tmp_path), "train")
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  rows = [r for r in rows if r.get("kind") == "train"]
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  control, k = ac.from_config(config.sampler, 10 ** 9, 2)
  saved = {}
  for r in rows:
    assert r["acceptance_k"] == ac.acceptance_k(k), (r, k)
    k = ac.update(k, r["replacement_rate"], control)
    saved[str(r["step"])] = k
  assert rows[-1]["acceptance_k"] > rows[0]["acceptance_k"]   # K = 2 replaces far too much
  states = json.loads((tmp_path / ac.STATE_FILE).read_text())
  assert states == {s: saved[s] for s in ("2", "4")}


def test_driver_validation_names_bad_controller_keys():
  from skd_jax.train import validate
  from tests import tiny
  config = tiny.tiny_config("gemma_translate", method="skd",
                            **{"sampler.target_replacement_rate": 1.5})
  with pytest.raises(validate.ConfigError, match=r"sampler.target_replacement_rate"):
    validate.validate_config(config, 1)
  config.sampler.target_replacement_rate = 0.2
  config.sampler.target_band = -0.1
  with pytest.raises(validate.ConfigError, match=r"band=-0.1 .*sampler.target_band"):
    validate.validate_config(config, 1)
  config.sampler.target_band = 0.05
  validate.validate_config(config, 1)
