"""Loss and train-step memory at Gemma scale, compile-only (XLA `memory_analysis`).

    python bench/loss_memory.py --json bench/results/loss_memory.json
    python bench/loss_memory.py --quick          # loss only, one length (smoke size)

Nothing is allocated: every program is lowered on `jax.ShapeDtypeStruct`s and compiled
for XLA:CPU (this host), and XLA's buffer assignment reports the bytes. Shapes:
teacher Gemma 3 1B, student Gemma 3 270M (both V = 262,144, tied embeddings), float32
weights and compute, B x L tokens per step.

1. The loss alone: value + gradient w.r.t. the student's head and hidden states, from
   the two models' final hidden states. Ours: `losses.chunked_divergence` (fkl,
   chunk_size positions per chunk). Naive: full [B, L, V] logits of both models, then
   `losses.divergence`.
2. The whole fp32 train step (`step.train_step`: both forwards, student backward,
   AdamW) beside the same step with the naive loss.
3. With `remat` on, the train step's temporaries as a function of L.

"temp" is XLA's temp_size_in_bytes (the program's own scratch, not its arguments
or outputs); arguments (weights, optimizer state, batch) are reported beside it.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.path.dirname(os.path.abspath(__file__))]

import benchutil  # noqa: E402  (bench/ helper)

from skd_jax import losses  # noqa: E402
from skd_jax.models import config as mconfig  # noqa: E402
from skd_jax.models import transformer  # noqa: E402
from skd_jax.train import step as step_lib  # noqa: E402
from skd_jax.train.state import TrainState  # noqa: E402

GIB = 2 ** 30


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--teacher", default="gemma-3-1b")
  p.add_argument("--student", default="gemma-3-270m")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--length", type=int, default=1024)
  p.add_argument("--chunk-size", type=int, default=32)
  p.add_argument("--loss-chunks", default="8,16,32", help="chunk sizes of the loss table")
  p.add_argument("--remat-lengths", default="256,512,1024,2048,4096")
  p.add_argument("--quick", action="store_true", help="the loss table only")
  p.add_argument("--json", default="")
  return p.parse_args(argv)


def _sds(shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(shape, dtype)


def memory(fn, *args, **static) -> dict:
  """Compile `fn` (already jitted) for these abstract args; XLA's byte counts."""
  start = time.perf_counter()
  compiled = fn.lower(*args, **static).compile()
  m = compiled.memory_analysis()
  return {"temp_bytes": int(m.temp_size_in_bytes), "argument_bytes": int(m.argument_size_in_bytes),
          "output_bytes": int(m.output_size_in_bytes), "alias_bytes": int(m.alias_size_in_bytes),
          "compile_s": round(time.perf_counter() - start, 1)}


def loss_programs(tcfg, scfg, batch: int, length: int, chunk: int):
  """(chunked, naive) jitted value-and-grad of the loss from hidden states, and args."""
  v = tcfg.vocab_size
  head = lambda cfg: (lambda p, h: transformer.lm_head(p, h, cfg))
  mask = _sds((batch, length), jnp.bool_)
  args = (_sds((v, scfg.hidden_size)), _sds((batch, length, scfg.hidden_size)),
          _sds((v, tcfg.hidden_size)), _sds((batch, length, tcfg.hidden_size)), mask)

  @jax.jit
  def chunked(s_embed, s_hidden, t_embed, t_hidden, m):
    def f(e, h):
      total, count = losses.chunked_divergence(
          "fkl", t_hidden, h, head(tcfg), head(scfg), m, teacher_params={"embed": t_embed},
          student_params={"embed": e}, chunk_size=chunk)
      return total / count
    return jax.value_and_grad(f, argnums=(0, 1))(s_embed, s_hidden)

  @jax.jit
  def naive(s_embed, s_hidden, t_embed, t_hidden, m):
    t_logits = jax.lax.stop_gradient(head(tcfg)({"embed": t_embed}, t_hidden))
    f = lambda e, h: losses.divergence("fkl", t_logits, head(scfg)({"embed": e}, h), m)
    return jax.value_and_grad(f, argnums=(0, 1))(s_embed, s_hidden)

  return chunked, naive, args


def _naive_sum_and_count(student_params, teacher_params, batch, *, student_cfg, teacher_cfg,
                         loss_cfg):
  """The step's loss with full [B, L, V] logits of both models (the reference path)."""
  tokens = batch["tokens"]
  t_logits = jax.lax.stop_gradient(transformer.forward(teacher_params, tokens, teacher_cfg)[0])
  s_logits = transformer.forward(student_params, tokens, student_cfg, remat=loss_cfg.remat)[0]
  return losses.divergence(loss_cfg.divergence, t_logits, s_logits,
                           step_lib.loss_positions(batch["loss_mask"]), reduction="sum",
                           temperature=loss_cfg.temperature)


@functools.partial(jax.jit, static_argnames=("student_cfg", "teacher_cfg", "loss_cfg"),
                   donate_argnames=("state",))
def naive_train_step(state, teacher_params, batch, *, student_cfg, teacher_cfg, loss_cfg):
  """`step.train_step` with the naive loss (same optimizer update and metrics)."""
  fn = functools.partial(_naive_sum_and_count, teacher_params=teacher_params,
                         student_cfg=student_cfg, teacher_cfg=teacher_cfg, loss_cfg=loss_cfg)
  grads, loss_sum, count = step_lib.accumulate_gradients(
      lambda p, b: fn(p, batch=b), state.params, batch, loss_cfg.num_microbatches)
  return step_lib._apply(state, grads, loss_sum, count, batch)  # pylint: disable=protected-access


def step_args(tcfg, scfg, batch: int, length: int):
  """Abstract (state, teacher params, batch) as the driver hands them to the step."""
  s_params = jax.eval_shape(lambda: transformer.init_params(scfg, jax.random.PRNGKey(0)))
  t_params = jax.eval_shape(lambda: transformer.init_params(tcfg, jax.random.PRNGKey(1)))
  state = jax.eval_shape(lambda p: TrainState.create(p, jax.random.PRNGKey(0)), s_params)
  data = {"tokens": _sds((batch, length), jnp.int32),
          "loss_mask": _sds((batch, length), jnp.bool_)}
  return state, t_params, data


def step_memory(step_fn, tcfg, scfg, batch, length, loss_cfg) -> dict:
  """The jitted step lowered as the driver calls it (state donated)."""
  state, t_params, data = step_args(tcfg, scfg, batch, length)
  return memory(step_fn, state, t_params, data, student_cfg=scfg, teacher_cfg=tcfg,
                loss_cfg=loss_cfg)


def _gib(b):
  return f"{b / GIB:.2f}"


def main(argv=None) -> dict:
  args = parse_args(argv)
  tcfg, scfg = mconfig.get_config(args.teacher), mconfig.get_config(args.student)
  if tcfg.vocab_size != scfg.vocab_size:
    raise SystemExit(f"vocabularies differ: {tcfg.vocab_size} vs {scfg.vocab_size}")
  b, l, v = args.batch, args.length, tcfg.vocab_size
  out = {"backend": jax.default_backend(), "jax": jax.__version__, "teacher": args.teacher,
         "student": args.student, "batch": b, "length": l, "vocab": v,
         "chunk_size": args.chunk_size}
  print(f"XLA:{jax.default_backend().upper()} compile-only; teacher {args.teacher}, student "
        f"{args.student}, V = {v:,}, B x L = {b} x {l}; one [B, L, V] float32 = "
        f"{_gib(b * l * v * 4)} GiB", flush=True)
  out["loss"] = {}
  for chunk in [int(x) for x in args.loss_chunks.split(",")]:
    chunked, naive, largs = loss_programs(tcfg, scfg, b, l, chunk)
    out["loss"][f"chunked {chunk}"] = memory(chunked, *largs)
  out["loss"]["naive"] = memory(naive, *largs)
  for name, m in out["loss"].items():
    print(f"  loss {name:11s} temp {_gib(m['temp_bytes'])} GiB  (args {_gib(m['argument_bytes'])},"
          f" out {_gib(m['output_bytes'])}; compile {m['compile_s']} s)", flush=True)
  if args.quick:
    return _finish(args, out)
  loss_cfg = step_lib.LossConfig(chunk_size=args.chunk_size)
  out["step"] = {
      "chunked": step_memory(step_lib.train_step, tcfg, scfg, b, l, loss_cfg),
      "naive": step_memory(naive_train_step, tcfg, scfg, b, l, loss_cfg)}
  for name, m in out["step"].items():
    print(f"  step {name:8s} temp {_gib(m['temp_bytes'])} GiB  (args {_gib(m['argument_bytes'])};"
          f" compile {m['compile_s']} s)", flush=True)
  remat = dataclass_replace(loss_cfg, remat=True)
  out["remat"] = {}
  for length in [int(x) for x in args.remat_lengths.split(",") if x]:
    m = step_memory(step_lib.train_step, tcfg, scfg, b, length, remat)
    out["remat"][str(length)] = m
    print(f"  remat step L={length:5d} temp {_gib(m['temp_bytes'])} GiB  "
          f"(args {_gib(m['argument_bytes'])}; compile {m['compile_s']} s)", flush=True)
  return _finish(args, out)


def dataclass_replace(cfg, **kw):
  import dataclasses  # pylint: disable=import-outside-toplevel
  return dataclasses.replace(cfg, **kw)


def _finish(args, out):
  return benchutil.emit_result(out, args.json)


if __name__ == "__main__":
  main()
