"""bench/peers/: argument parsing, the summary arithmetic and the skd_jax side on a tiny pair.

No timing is asserted: the figures come from bench/peers/trl_vs_skd.py runs.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

PEERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                     "peers")


def _load(name):
  spec = importlib.util.spec_from_file_location(f"peers_{name}", os.path.join(PEERS,
                                                                               f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # Its dataclasses look their module up.
  spec.loader.exec_module(module)
  return module


def test_argument_parsing():
  driver, ours, trl = _load("trl_vs_skd"), _load("skd_side"), _load("trl_side")
  args = driver.parse_args(["--batches", "1,8", "--rounds", "3", "--skip-trl"])
  assert args.batches == [1, 8] and args.rounds == 3
  cmds = driver.side_commands(args, 8)
  assert list(cmds) == ["skd_jax"] and cmds["skd_jax"][cmds["skd_jax"].index("--batch") + 1] == "8"
  cmds = driver.side_commands(driver.parse_args(["--gamma", "3"]), 1)
  assert list(cmds) == ["trl", "skd_jax"]  # TRL first: the runs alternate TRL, ours.
  assert cmds["skd_jax"][cmds["skd_jax"].index("--gamma") + 1] == "3"
  assert ours.parse_args(["--methods", "skd"]).methods == ["skd"]
  assert trl.parse_args([]).new_tokens == 128 and trl.parse_args([]).warmup == 2
  for bad in (["--methods", "gkd"], ["--batch", "0"]):
    with pytest.raises(SystemExit):
      ours.parse_args(bad)
  with pytest.raises(SystemExit):
    driver.parse_args(["--rounds", "0"])


def test_summary_pools_rounds_and_ratios_divide_medians():
  driver = _load("trl_vs_skd")
  trl = lambda steps, gens: {"side": "trl", "results": [{
      "method": "gkd_on_policy", "batch": 8, "all_step_s": steps, "all_generation_s": gens,
      "loadavg_before": 3.0, "loadavg_after": 4.0}]}
  ours = lambda gens, upds: {"side": "skd_jax", "results": [{
      "method": m, "batch": 8, "all_generation_s": gens, "all_update_s": upds,
      "loadavg_before": 5.0, "loadavg_after": 6.0} for m in ("on_policy", "skd")]}
  runs = [trl([4.0, 6.0], [2.0, 3.0]), ours([1.0, 1.0], [0.5, 0.5]),
          trl([5.0], [2.5]), ours([1.0], [1.0])]
  summary = driver.summarize(runs)
  assert summary["trl/gkd_on_policy/b8"]["step_s"] == 5.0  # Median of 4, 6, 5.
  assert summary["trl/gkd_on_policy/b8"]["update_s"] == 2.5  # Of 2, 3, 2.5.
  assert summary["skd_jax/skd/b8"]["step_s"] == 1.5 and summary["skd_jax/skd/b8"][
      "timed_steps"] == 3
  assert summary["trl/gkd_on_policy/b8"]["loadavg_max"] == 4.0
  rat = driver.ratios(summary, [8])
  assert rat["trl_step / skd_jax_on_policy_step, batch 8"] == pytest.approx(5.0 / 1.5)
  assert rat["official 4.11 s / skd_jax_skd_step_per_sequence, batch 8"] == pytest.approx(
      4.11 / (1.5 / 8))


@pytest.mark.slow
def test_skd_side_runs_the_driver_steps_on_a_tiny_pair():
  ours = _load("skd_side")
  out = ours.main(["--tiny", "--batch", "2", "--steps", "1", "--warmup", "0",
                   "--new-tokens", "4", "--compile-cache", ""])
  assert [r["method"] for r in out["results"]] == ["on_policy", "skd"]
  for r in out["results"]:
    assert r["batch"] == 2 and r["completion_tokens"] == 2 * 4  # No stop: all 4 tokens.
    assert r["row_length"] == 64 + 4                             # The 64-token prompts.
    assert np.isfinite(r["last_loss"]) and r["last_loss"] >= 0
    assert len(r["all_generation_s"]) == len(r["all_update_s"]) == 1
