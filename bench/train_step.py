"""Benchmark of the distillation training step: throughput, FLOP/s, loss memory.

    python bench/train_step.py --json /tmp/bench_train_step.json
    python bench/train_step.py --quick --json /tmp/q.json   # tiny pair only (seconds)

Measures, in one process:
  * the matmul peak of this machine: a large jnp.dot in float32, and in bfloat16
    with float32 accumulation (the model's bf16 compute mode);
  * tokens/s and achieved FLOP/s of `skd_jax.train.step.train_step` for a tiny
    pair and for Gemma-3-270M shapes (teacher `gemma-3-270m`, student the same with
    6 layers), in float32 and bfloat16 compute. Model FLOPs per step are
    2 * params * tokens per forward, x3 for the student (forward + backward), plus
    one teacher forward (rematerialisation is not counted);
  * XLA's temp-buffer size of the whole jitted step with the chunked loss versus a
    naive loss that builds the [B, L, V] logits of both models (compile only).
Timings are medians over `--repeats` calls after one warm-up call
(`benchutil.measure`), each with the load average it ran under.
"""
import argparse
import functools
import json
import os
import resource

import benchutil  # bench/benchutil.py (the script's folder is on sys.path)

import jax
import jax.numpy as jnp
import numpy as np

from skd_jax import losses
from skd_jax.models import config as mconfig
from skd_jax.models import transformer
from skd_jax.train import step as step_lib
from skd_jax.train.state import TrainState


def matmul_peak(n, dtype, repeats):
  """FLOP/s of an n x n x n jnp.dot with float32 accumulation."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32).astype(dtype)
  dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  return 2 * n**3 / benchutil.measure(lambda: dot(a, b), repeats=repeats).median_s


def pruned(cfg, num_layers):
  """A layer-pruned copy of a config (the student of a pair)."""
  return cfg.replace(num_layers=num_layers,
                     layer_types=cfg.layer_types[:num_layers],
                     name=f"{cfg.name}-{num_layers}l")


def naive_distill_sum_and_count(student_params, teacher_params, batch, *,
                                student_cfg, teacher_cfg, loss_cfg):
  """Reference path: full [B, L, V] logits of both models, then the divergence."""
  tokens = batch["tokens"]
  t_logits = jax.lax.stop_gradient(
      transformer.forward(teacher_params, tokens, teacher_cfg)[0])
  s_logits = transformer.forward(student_params, tokens, student_cfg)[0]
  return losses.divergence(
      loss_cfg.divergence, t_logits, s_logits,
      step_lib.loss_positions(batch["loss_mask"]), reduction="sum",
      temperature=loss_cfg.temperature)  # The entry carries its hyperparameters.


@functools.partial(jax.jit,
                   static_argnames=("student_cfg", "teacher_cfg", "loss_cfg"))
def naive_grads(student_params, teacher_params, batch, *, student_cfg,
                teacher_cfg, loss_cfg):
  fn = functools.partial(naive_distill_sum_and_count,
                         teacher_params=teacher_params,
                         student_cfg=student_cfg, teacher_cfg=teacher_cfg,
                         loss_cfg=loss_cfg)
  return step_lib.accumulate_gradients(lambda p, b: fn(p, batch=b),
                                       student_params, batch,
                                       loss_cfg.num_microbatches)


def make_pair(teacher_name, student_layers, dtype):
  teacher_cfg = mconfig.get_config(teacher_name).replace(dtype=dtype,
                                                         param_dtype=dtype)
  student_cfg = pruned(teacher_cfg, student_layers).replace(
      param_dtype="float32")
  return teacher_cfg, student_cfg


def make_batch(cfg, batch, length):
  rng = np.random.default_rng(0)
  tokens = rng.integers(3, cfg.vocab_size, (batch, length))
  loss_mask = np.zeros((batch, length), bool)
  loss_mask[:, length // 4:] = True  # A quarter prompt, the rest completion.
  return dict(tokens=jnp.asarray(tokens, jnp.int32),
              loss_mask=jnp.asarray(loss_mask))


def bench_step(teacher_name, student_layers, dtype, batch_size, length,
               repeats, chunk_size):
  teacher_cfg, student_cfg = make_pair(teacher_name, student_layers, dtype)
  teacher = transformer.init_params(teacher_cfg, jax.random.PRNGKey(1))
  student = transformer.init_params(student_cfg, jax.random.PRNGKey(0))
  batch = make_batch(student_cfg, batch_size, length)
  loss_cfg = step_lib.LossConfig(chunk_size=chunk_size)
  kw = dict(student_cfg=student_cfg, teacher_cfg=teacher_cfg, loss_cfg=loss_cfg)
  holder = [TrainState.create(student, jax.random.PRNGKey(2))]
  del student

  def run():
    holder[0], metrics = step_lib.train_step(holder[0], teacher, batch, **kw)
    return metrics

  timing = benchutil.measure(run, repeats=repeats)   # the warm-up call compiles
  first_call, seconds = timing.warmup_s[0], timing.median_s
  tokens = batch_size * length
  flops = 2 * tokens * (3 * student_cfg.num_params() + teacher_cfg.num_params())
  return dict(pair=f"{teacher_cfg.name} -> {student_cfg.name}", dtype=dtype,
              batch=batch_size, length=length,
              teacher_params=teacher_cfg.num_params(),
              student_params=student_cfg.num_params(),
              first_call_s=first_call, step_s=seconds, step_s_all=list(timing.all_s),
              loadavg_before=timing.loadavg_before, loadavg_after=timing.loadavg_after,
              tokens_per_s=tokens / seconds, flops_per_s=flops / seconds)


def loss_memory(teacher_name, student_layers, batch_size, length, chunk_size):
  """Temp bytes of the compiled gradient computation, chunked vs naive loss."""
  teacher_cfg, student_cfg = make_pair(teacher_name, student_layers, "float32")
  shapes = lambda cfg: jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, jnp.float32),
      transformer.param_shapes(cfg), is_leaf=lambda x: hasattr(x, "shape"))
  batch = dict(tokens=jax.ShapeDtypeStruct((batch_size, length), jnp.int32),
               loss_mask=jax.ShapeDtypeStruct((batch_size, length), bool))
  loss_cfg = step_lib.LossConfig(chunk_size=chunk_size)
  kw = dict(student_cfg=student_cfg, teacher_cfg=teacher_cfg, loss_cfg=loss_cfg)
  chunked = jax.jit(functools.partial(step_lib.distill_grads, **kw))
  args = (shapes(student_cfg), shapes(teacher_cfg), batch)
  out = {}
  for name, lowered in (("chunked", chunked.lower(*args)),
                        ("naive", naive_grads.lower(*args, **kw))):
    out[name] = lowered.compile().memory_analysis().temp_size_in_bytes
  out["logits_bytes_one_model"] = batch_size * length * teacher_cfg.vocab_size * 4
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--matmul_size", type=int, default=2048)
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--length", type=int, default=256)
  parser.add_argument("--chunk_size", type=int, default=32)
  parser.add_argument("--memory_lengths", type=int, nargs="+",
                      default=[256, 1024])
  parser.add_argument("--student_layers", type=int, default=6)
  parser.add_argument("--skip_270m", action="store_true")
  parser.add_argument("--quick", action="store_true",
                      help="tiny pair only, 256^3 matmul, 1 repeat (checks the script runs)")
  parser.add_argument("--json", default="bench_train_step.json")
  args = parser.parse_args()

  if args.quick:
    args.skip_270m, args.matmul_size, args.repeats = True, 256, 1
  info = dict(benchutil.machine(), args=vars(args))
  peak = {
      "float32": matmul_peak(args.matmul_size, jnp.float32, args.repeats),
      "bfloat16": matmul_peak(args.matmul_size, jnp.bfloat16, args.repeats),
  }
  print(f"matmul peak ({args.matmul_size}^3, float32 accumulation): "
        + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items()),
        flush=True)

  results = dict(info=info, matmul_peak_flops=peak, steps=[],
                 loss_memory_bytes=[])

  def save():
    info["loadavg_1min_now"] = benchutil.loadavg()
    results["peak_rss_mib"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10)
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)

  print(f"\n{'pair':36s} {'dtype':9s} {'B x L':>9s} {'step s':>8s} "
        f"{'tok/s':>9s} {'GFLOP/s':>8s} {'of peak':>8s}")
  for dtype in ("float32", "bfloat16"):
    pairs = [("tiny-gemma3", 2, 8, 128)]
    if not args.skip_270m:
      pairs.append(("gemma-3-270m", args.student_layers, args.batch,
                    args.length))
    for teacher, layers, batch, length in pairs:
      r = bench_step(teacher, layers, dtype, batch, length, args.repeats,
                     args.chunk_size)
      r["fraction_of_peak"] = r["flops_per_s"] / peak[dtype]
      results["steps"].append(r)
      save()
      print(f"{r['pair']:36s} {dtype:9s} {batch:>4d} x{length:>4d}"
            f" {r['step_s']:8.3f} {r['tokens_per_s']:9.1f}"
            f" {r['flops_per_s'] / 1e9:8.2f} {r['fraction_of_peak']:8.1%}",
            flush=True)

  if not args.skip_270m:
    print("\nXLA temp memory of the fp32 gradient computation at gemma-3-270m "
          "shapes (MiB):")
    print(f"{'B x L':>10s} {'chunked':>8s} {'naive':>8s} {'1 logits':>9s}")
    for length in args.memory_lengths:
      m = loss_memory("gemma-3-270m", args.student_layers, args.batch, length,
                      args.chunk_size)
      results["loss_memory_bytes"].append(
          dict(batch=args.batch, length=length, **m))
      save()
      print(f"{args.batch:>4d} x{length:>5d} {m['chunked'] / 2**20:8.0f}"
            f" {m['naive'] / 2**20:8.0f}"
            f" {m['logits_bytes_one_model'] / 2**20:9.0f}", flush=True)
  save()
  print(f"load average at start / end: {info['loadavg_1min_at_start']:.1f} /"
        f" {info['loadavg_1min_now']:.1f} ({os.cpu_count()} CPUs; other "
        f"processes share them)")
  print(f"process peak RSS: {results['peak_rss_mib']:.0f} MiB")
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
