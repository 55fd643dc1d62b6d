"""Where a driver train step's time goes: rollout, forwards, backward, loss, optimizer.

    python bench/profile_step.py --pair-dir DIR --batch 8 --method skd
    python bench/profile_step.py --pair-dir DIR --batch 8 --method on_policy \
        --xla-flags="--xla_cpu_multi_thread_eigen=false"       # a lever: XLA:CPU flags
    python bench/profile_step.py --tiny --repeats 1            # smoke size

The step is the one of bench/peers/skd_side.py (the driver's `rollout.make_train_batch`
then `training.apply_step`, benchmark-pair settings). Each part is timed as its own
jitted function of the library (bench/benchutil.py `measure`: 1 warm-up, the median of
`--repeats`), on the step's own batch:

  generation (driver)  make_train_batch: coins, rollout, host assembly
  rollout (device)     sampling.api.run_rollout on device inputs (no host work)
  host <-> device      generation - rollout: prompt prep, to_host, row assembly
  update (driver)      apply_step: host batch -> device, the jitted train_step
  teacher forward      step._hidden(teacher) [B, L] (no grad)
  student forward      step._hidden(student)
  loss (fwd + grad)    losses.chunked_divergence value and grad (heads + divergence)
  student fwd + bwd    grad of step.distill_sum_and_count minus teacher forward and loss
  optimizer            TrainState.apply_gradients (clip + AdamW)
  recompiles           XLA compilations during steps 2..n (jax_log_compiles)

The parts are measured apart, so they need not add up to the step exactly (XLA fuses
across them inside train_step). Prints one table and a "RESULT {json}" line.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--pair-dir", default=os.path.expanduser("~/.cache/skd-bench-pair"))
  p.add_argument("--tiny", action="store_true")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--method", default="skd", choices=("skd", "on_policy"))
  p.add_argument("--gamma", type=int, default=1)
  p.add_argument("--new-tokens", type=int, default=128)
  p.add_argument("--dtype", default="float32", help="compute + storage dtype of both models")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before jax loads")
  p.add_argument("--parts", default="all",
                 help="comma list of parts, or 'all' / 'rollout' (the generation parts only)")
  p.add_argument("--json", default="")
  return p.parse_args(argv)


class _CompileCounter(logging.Handler):
  """Counts XLA compilations logged under jax_log_compiles."""

  def __init__(self):
    super().__init__()
    self.count = 0

  def emit(self, record):
    if "Finished XLA compilation" in record.getMessage():
      self.count += 1


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.xla_flags:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
  here = os.path.dirname(os.path.abspath(__file__))
  sys.path[:0] = [os.path.dirname(here), here, os.path.join(here, "peers")]
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import benchutil  # pylint: disable=import-outside-toplevel
  import skd_side  # pylint: disable=import-outside-toplevel
  from skd_jax import distributed, losses  # pylint: disable=import-outside-toplevel
  from skd_jax.sampling import api as sampling_api, sampler  # pylint: disable=import-outside-toplevel
  from skd_jax.train import rollout, training, step as step_lib  # pylint: disable=import-outside-toplevel

  side_args = skd_side.parse_args(
      (["--tiny"] if args.tiny else ["--pair-dir", args.pair_dir]) +
      ["--batch", str(args.batch), "--gamma", str(args.gamma), "--new-tokens",
       str(args.new_tokens), "--dtype", args.dtype, "--methods", args.method])
  student, teacher = skd_side._models(side_args)  # pylint: disable=protected-access
  prompts = skd_side._prompts(side_args, student.config.vocab_size)  # pylint: disable=protected-access
  config = skd_side.experiment_config(side_args, args.method)
  run = skd_side._run_setup(config, student, teacher)  # pylint: disable=protected-access
  state = training.create_state(run, 100)
  data = skd_side._DataBatch(prompt_ids=prompts, target_ids=[[] for _ in prompts])  # pylint: disable=protected-access
  scfg, tcfg, lcfg = run.student.config, run.teacher.config, run.loss_cfg
  want = (None if args.parts == "all" else
          {"generation", "rollout", "host"} if args.parts == "rollout" else
          set(args.parts.split(",")))
  parts, rows = {}, []

  def record(name, timing, note=""):
    parts[name] = timing.as_dict() | {"note": note}
    rows.append((name, timing.median_s, timing.loadavg_before, note))
    print(f"  {name:22s} {timing.median_s * 1e3:10.1f} ms   load {timing.loadavg_before:.1f}  "
          f"{note}", flush=True)

  def on(name):
    return want is None or name in want

  r = args.repeats
  print(f"profile: method {args.method}, batch {args.batch}, gamma {args.gamma}, dtype "
        f"{args.dtype}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
  batch, stats = rollout.make_train_batch(run, state, data, 0, 100)  # Compiles the rollout.
  if on("generation"):
    record("generation (driver)", benchutil.measure(
        lambda: rollout.make_train_batch(run, state, data, 0, 100)[0], repeats=r),
        f"acceptance {stats['acceptance_rate']:.3f}")
  from skd_jax.train import methods as methods_lib  # pylint: disable=import-outside-toplevel
  source = {"skd": methods_lib.SKD, "on_policy": methods_lib.STUDENT}[args.method]
  rcfg = rollout.rollout_sampler_config(run, source)
  from skd_jax.models.model import Model  # pylint: disable=import-outside-toplevel
  s_model = Model(scfg, state.params) if rcfg.method != "teacher" else None
  t_model = run.teacher if rcfg.method != "student" else None
  static, dyn, tokens, lengths = sampling_api.prepare(s_model, t_model, prompts, rcfg)
  keys = sampler.row_keys_for(jax.random.PRNGKey(0), len(prompts), 0)
  dev = distributed.global_rows({"tokens": tokens, "lengths": lengths,
                                 "keys": np.asarray(keys)}, run.mesh, True)
  if on("rollout"):
    with jax.set_mesh(run.mesh):
      timing = benchutil.measure(
          lambda: sampling_api.run_rollout(s_model, t_model, dev["tokens"], dev["lengths"],
                                           dev["keys"], dyn, static), repeats=r)
    out = timing.last
    rounds = int(out.rounds)
    acc = float(np.sum(out.accepted)) / max(float(np.sum(out.tested)), 1.0)
    record("rollout (device)", timing,
           f"{args.batch * args.new_tokens} new tokens, {rounds} rounds "
           f"({timing.median_s / rounds * 1e3:.1f} ms/round), acceptance {acc:.3f}, "
           f"{args.batch * args.new_tokens / timing.median_s:.0f} tok/s")
    parts["rollout (device)"]["rounds"] = rounds
    import hashlib  # pylint: disable=import-outside-toplevel
    parts["rollout (device)"]["tokens_sha1"] = hashlib.sha1(
        np.asarray(out.tokens)[:, :tokens.shape[1] + args.new_tokens].tobytes()
    ).hexdigest()[:12]  # Prompt + completion only (the buffer has gamma spare slots).
    if "generation (driver)" in parts:
      host = parts["generation (driver)"]["median_s"] - parts["rollout (device)"]["median_s"]
      rows.append(("host <-> device (gen)", host, float("nan"), "generation - rollout"))
      print(f"  {'host <-> device (gen)':22s} {host * 1e3:10.1f} ms", flush=True)

  copy = lambda tree: jax.tree.map(jnp.copy, tree)
  if on("update"):
    record("update (driver)", benchutil.measure(
        lambda s: training.apply_step(run, s, batch)[1]["loss"], setup=lambda: copy(state),
        repeats=r), f"rows {batch['tokens'].shape}")
  device_batch = jax.device_put({k: jnp.asarray(v) for k, v in batch.items()})
  tokens_b = device_batch["tokens"]
  t_hidden_fn = jax.jit(lambda p, t: step_lib._hidden(p, t, tcfg))  # pylint: disable=protected-access
  s_hidden_fn = jax.jit(lambda p, t: step_lib._hidden(p, t, scfg))  # pylint: disable=protected-access
  if on("teacher"):
    record("teacher forward", benchutil.measure(
        lambda: t_hidden_fn(run.teacher.params, tokens_b), repeats=r))
  if on("student"):
    record("student forward", benchutil.measure(
        lambda: s_hidden_fn(state.params, tokens_b), repeats=r))
  vocab = losses.shared_vocab(tcfg.vocab_size, scfg.vocab_size, lcfg.shared_vocab_size)
  t_head = step_lib._head_params(run.teacher.params, tcfg, vocab)  # pylint: disable=protected-access
  positions = step_lib.loss_positions(device_batch["loss_mask"])
  th, sh = t_hidden_fn(run.teacher.params, tokens_b), s_hidden_fn(state.params, tokens_b)

  @jax.jit
  def loss_grad(s_head, s_hidden):
    def f(h, x):
      total, count = losses.chunked_divergence(
          lcfg.divergence, th, x, step_lib._head(tcfg), step_lib._head(scfg), positions,  # pylint: disable=protected-access
          teacher_params=t_head, student_params=h, chunk_size=lcfg.chunk_size,
          reduction=lcfg.reduction, temperature=lcfg.temperature, top_k=lcfg.top_k,
          vocab_size=vocab)
      return total / count
    return jax.value_and_grad(f, argnums=(0, 1))(s_head, s_hidden)

  s_head = step_lib._head_params(state.params, scfg, vocab)  # pylint: disable=protected-access
  if on("loss"):
    record("loss (fwd + grad)", benchutil.measure(lambda: loss_grad(s_head, sh), repeats=r),
           f"chunk {lcfg.chunk_size}, V {vocab}")
  grads_fn = jax.jit(lambda p, t, b: step_lib.distill_grads(
      p, t, b, student_cfg=scfg, teacher_cfg=tcfg, loss_cfg=lcfg))
  if on("grads"):
    record("all grads", benchutil.measure(
        lambda: grads_fn(state.params, run.teacher.params, device_batch)[0], repeats=r),
        "teacher fwd + student fwd/bwd + loss")
    if {"teacher forward", "loss (fwd + grad)"} <= set(parts):
      rest = (parts["all grads"]["median_s"] - parts["teacher forward"]["median_s"]
              - parts["loss (fwd + grad)"]["median_s"])
      rows.append(("student fwd + bwd", rest, float("nan"), "all grads - teacher - loss"))
      print(f"  {'student fwd + bwd':22s} {rest * 1e3:10.1f} ms   (all grads - teacher - loss)")
  if on("optimizer"):
    grads = grads_fn(state.params, run.teacher.params, device_batch)[0]
    apply = jax.jit(lambda s, g: s.apply_gradients(g).params)
    record("optimizer", benchutil.measure(lambda: apply(state, grads), repeats=r),
           "clip + AdamW")

  recompiles = None
  if on("recompiles"):
    counter = _CompileCounter()
    jax.config.update("jax_log_compiles", True)
    logging.getLogger("jax").addHandler(counter)
    logging.getLogger("jax").setLevel(logging.DEBUG)
    jax.jit(lambda x: x * 3 + 1)(jnp.ones(3))  # A fresh program: the counter must see it.
    probe, counter.count = counter.count, 0
    st = copy(state)
    for step in range(1, 4):
      b, _ = rollout.make_train_batch(run, st, data, step, 100)
      st, m = training.apply_step(run, st, b)
      jax.block_until_ready(m)
    jax.config.update("jax_log_compiles", False)
    logging.getLogger("jax").removeHandler(counter)
    recompiles = counter.count
    print(f"  {'recompiles':22s} {recompiles:10d}      (XLA compilations in steps 1-3 after "
          f"step 0; a fresh probe program counted {probe}: jax logs each compilation "
          "once or twice, so 0 is what to read)", flush=True)

  out = {"args": vars(args), "parts": parts, "recompiles_steps_1_3": recompiles,
         "rows": rows, "xla_flags": os.environ.get("XLA_FLAGS", "")}
  return benchutil.emit_result(out, args.json)


if __name__ == "__main__":
  main()
