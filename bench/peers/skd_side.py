"""skd_jax's side of bench/peers/trl_vs_skd.py: driver train steps on the benchmark pair.

One process, one batch size, one or more methods ("on_policy", "skd"). Each step is
what the driver does (skd_jax/train/loop.py): `rollout.make_train_batch` (the coin
flips, the jitted rollout, host assembly into prompt + completion rows) then
`training.apply_step` (the jitted `step.train_step`: teacher forward, student
forward + backward through the chunked loss, AdamW). The two phases are timed apart
with bench/benchutil.py's `timed`; `warmup` steps (compilation) are not in the median.

    python bench/peers/skd_side.py --pair-dir ~/.cache/skd-bench-pair --batch 8
    python bench/peers/skd_side.py --tiny --steps 1 --warmup 0      # the unit test's size

Prints one JSON line (prefixed "RESULT ") with per-method medians, the load average
before and after, and the per-step seconds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [REPO, os.path.dirname(HERE)]

import benchutil  # noqa: E402  (bench/ helper)

# Settings shared with the TRL side (trl_side.py reads the same defaults).
PROMPTS = "/work/shared/bench/bench_prompts.json"
NEW_TOKENS = 128
TRL_TEMPERATURE = 0.9  # GKDConfig's default temperature (its generation; its loss uses 1).


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--pair-dir", default=os.path.expanduser("~/.cache/skd-bench-pair"),
                 help="make_bench_pair.py output (teacher/ and student/ HF dirs)")
  p.add_argument("--tiny", action="store_true",
                 help="tiny random models instead of the pair (tests)")
  p.add_argument("--prompts", default=PROMPTS, help="bench_prompts.json (row 0 = warm-up)")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--methods", default="on_policy,skd",
                 help="comma list of driver methods to time (on_policy, skd)")
  p.add_argument("--steps", type=int, default=10, help="timed steps per method")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiles)")
  p.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
  p.add_argument("--gamma", type=int, default=1, help="SKD draft block (sampler.gamma)")
  p.add_argument("--skd-acceptance", default="warped", choices=("raw", "warped"),
                 help="top-K test on the warped (official) or raw teacher distribution")
  p.add_argument("--dtype", default="float32", help="compute dtype of both models")
  p.add_argument("--param-dtype", default="",
                 help="storage dtype of both models' params ('' = --dtype); bfloat16 compute "
                      "over float32 masters: --dtype bfloat16 --param-dtype float32")
  p.add_argument("--compile-cache", default="/tmp/skd_bench_peers_cache",
                 help="JAX persistent compilation cache ('' = off): later processes skip "
                 "recompiling (warm-up steps only; timed steps are unaffected)")
  p.add_argument("--json", default="", help="also write the result here")
  args = p.parse_args(argv)
  methods = args.methods.split(",")
  unknown = set(methods) - {"on_policy", "skd"}
  if unknown:
    p.error(f"--methods: {sorted(unknown)} not in on_policy, skd")
  if args.batch < 1 or args.steps < 1 or args.warmup < 0:
    p.error("--batch and --steps must be >= 1, --warmup >= 0")
  args.methods = methods
  return args


def experiment_config(args, method: str):
  """configs/base.py set to the benchmark: the official SKD sampling, TRL's on-policy."""
  sys.path.insert(0, os.path.join(REPO, "configs"))
  import base  # pylint: disable=import-outside-toplevel
  c = base.get_config()
  c.method = method
  c.batch_size = args.batch
  c.num_devices = 1
  c.task.max_prompt_tokens = 64
  c.task.max_new_tokens = args.new_tokens
  c.sampler.prompt_buckets = (64,)
  c.sampler.top_k = 25                           # SKD: the official settings.
  c.sampler.temperature, c.sampler.top_p, c.sampler.sampling_top_k = 0.2, 0.5, 50
  c.sampler.acceptance = args.skd_acceptance
  c.sampler.gamma = args.gamma
  c.sampler.on_policy_temperature = TRL_TEMPERATURE  # On-policy: TRL's generation
  c.sampler.on_policy_top_p = 1.0                    # (temperature 0.9, top_k 0,
  c.sampler.on_policy_sampling_top_k = 0             # full vocabulary).
  c.loss.divergence = "fkl"                      # TRL beta = 0.
  c.loss.temperature = 1.0                       # TRL's compute_loss: temperature 1.
  c.loss.reduction = "token"
  c.loss.remat = False                           # No gradient checkpointing.
  c.optimizer.learning_rate = 1e-5
  c.student.dtype = c.teacher.dtype = args.dtype
  return c


def _models(args):
  """(student, teacher) Models: the pair's checkpoints, or tiny random ones."""
  import jax  # pylint: disable=import-outside-toplevel
  import skd_jax  # pylint: disable=import-outside-toplevel
  from skd_jax.models import config as mconfig, transformer  # pylint: disable=import-outside-toplevel
  if args.tiny:
    shape = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_heads=2,
                 num_kv_heads=1, head_dim=16)
    out = []
    for seed, layers in ((0, 1), (1, 2)):
      cfg = mconfig.get_config("tiny-gemma", num_layers=layers, **shape)
      out.append(skd_jax.Model(cfg, transformer.init_params(cfg, jax.random.PRNGKey(seed))))
    return tuple(out)
  return tuple(skd_jax.load_model(os.path.join(args.pair_dir, role), dtype=args.dtype,
                                  param_dtype=args.param_dtype or None)
               for role in ("student", "teacher"))


def _prompts(args, vocab: int) -> list[list[int]]:
  """`batch` prompts of 64 ids: bench_prompts.json rows 1.. (row 0 is the warm-up)."""
  with open(args.prompts) as f:
    rows = json.load(f)
  rows = [r for r in rows[1:]]
  rows = (rows * (args.batch // len(rows) + 1))[:args.batch]
  return [[int(t) % vocab for t in r] for r in rows]


@dataclasses.dataclass
class _DataBatch:
  """The fields of `data.pipeline.Batch` that `rollout.make_train_batch` reads."""
  prompt_ids: list
  target_ids: list

  def __len__(self):
    return len(self.prompt_ids)


def _run_setup(config, student, teacher):
  """A `RunSetup` as `run_setup.setup` builds it, minus tokenizer and task."""
  import jax  # pylint: disable=import-outside-toplevel
  from skd_jax import distributed, sharding  # pylint: disable=import-outside-toplevel
  from skd_jax.models import partitioning  # pylint: disable=import-outside-toplevel
  from skd_jax.models.model import Model  # pylint: disable=import-outside-toplevel
  from skd_jax.train import run_setup, step as step_lib  # pylint: disable=import-outside-toplevel
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
  placed = {}
  for role, model in (("student", student), ("teacher", teacher)):
    shardings = partitioning.param_shardings(model.config, mesh, config[role].rules)
    placed[role] = Model(model.config, distributed.shard_params(model.params, shardings))
  return run_setup.RunSetup(
      config=config, workdir="/tmp/skd_bench_peers", tokenizer=None, task=None,
      student=placed["student"], teacher=placed["teacher"], mesh=mesh, stop_ids=(),
      stop_sequences=(), pad_id=0, loss_cfg=step_lib.loss_config(config.loss),
      eval_metric="")


def time_method(args, method: str, student, teacher, prompts) -> dict:
  """Median seconds of the rollout phase and the update phase of `method`'s steps."""
  from skd_jax.train import rollout, training  # pylint: disable=import-outside-toplevel
  config = experiment_config(args, method)
  run = _run_setup(config, student, teacher)
  total = args.warmup + args.steps
  state = training.create_state(run, total)
  data = _DataBatch(prompt_ids=prompts, target_ids=[[] for _ in prompts])
  gen, upd, tokens, lengths = [], [], [], []
  before = benchutil.loadavg()
  for step in range(total):
    (batch, stats), t_gen = benchutil.timed(rollout.make_train_batch, run, state, data, step,
                                            total)
    (state, metrics), t_upd = benchutil.timed(training.apply_step, run, state, batch)
    gen.append(t_gen)
    upd.append(t_upd)
    tokens.append(int(stats["completion_tokens"]))
    lengths.append(int(batch["tokens"].shape[1]))
  loss = training.mean_of(metrics["loss"])
  gen_t, upd_t = gen[args.warmup:], upd[args.warmup:]
  step_t = [a + b for a, b in zip(gen_t, upd_t)]
  return {
      "method": method, "batch": args.batch, "gamma": args.gamma if method == "skd" else None,
      "step_s": benchutil.median(step_t), "generation_s": benchutil.median(gen_t),
      "update_s": benchutil.median(upd_t),
      "step_per_sequence_s": benchutil.median(step_t) / args.batch,
      "warmup_s": [a + b for a, b in zip(gen[:args.warmup], upd[:args.warmup])],
      "all_generation_s": gen_t, "all_update_s": upd_t,
      "completion_tokens": tokens[-1], "row_length": lengths[-1],
      "acceptance_rate": stats["acceptance_rate"], "last_loss": loss,
      "loadavg_before": before, "loadavg_after": benchutil.loadavg(),
  }


def main(argv=None) -> dict:
  args = parse_args(argv)
  import jax  # pylint: disable=import-outside-toplevel
  if args.compile_cache:
    jax.config.update("jax_compilation_cache_dir", args.compile_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  student, teacher = _models(args)
  prompts = _prompts(args, student.config.vocab_size)
  results = [time_method(args, m, student, teacher, prompts) for m in args.methods]
  out = {"side": "skd_jax", "jax": jax.__version__, "backend": jax.default_backend(),
         "results": results}
  return benchutil.emit_result(out, args.json)


if __name__ == "__main__":
  main()
