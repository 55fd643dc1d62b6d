"""Side by side: TRL's GKDTrainer against skd_jax's driver steps, on the benchmark pair.

    bash bench/peers/setup_venv.sh                       # once: TRL in bench/peers/.venv
    python bench/peers/trl_vs_skd.py --pair-dir ~/.cache/skd-bench-pair \
        --json bench/results/peers.json

Runs alternate in one script, each in its own process: for every round and batch
size, TRL (bench/peers/trl_side.py, in the venv) then skd_jax (skd_side.py: an
on-policy step and an SKD step through the driver's own functions). Each process
does `--warmup` untimed then `--steps` timed steps. Figures are medians of the
timed steps of all rounds; the 1-minute load average is printed beside each; the
ratios come last. On a shared machine only these same-run ratios mean anything.

Ratios: TRL step / skd_jax on-policy step (target >= 3 at batch 8), and the official
SKD code's 4.11 s training micro-step per sequence (../shared/REFERENCE.md, batch 1
only) / skd_jax's SKD step per sequence (target >= 10 at batch 8).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import benchutil  # noqa: E402

OFFICIAL_SKD_MICRO_STEP_S = 4.11  # REFERENCE.md: one official SKD training micro-step.
VENV_PYTHON = os.path.join(HERE, ".venv", "bin", "python")


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--pair-dir", default=os.path.expanduser("~/.cache/skd-bench-pair"))
  p.add_argument("--batches", default="1,8")
  p.add_argument("--rounds", type=int, default=2, help="TRL/ours alternations per batch")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--gamma", type=int, default=1, help="skd_jax SKD draft block")
  p.add_argument("--venv-python", default=VENV_PYTHON)
  p.add_argument("--skip-trl", action="store_true", help="skd_jax side only")
  p.add_argument("--extra", default="", help="extra arguments for skd_side.py")
  p.add_argument("--trl-extra", default="", help="extra arguments for trl_side.py")
  p.add_argument("--json", default="")
  args = p.parse_args(argv)
  args.batches = [int(b) for b in args.batches.split(",")]
  if args.rounds < 1:
    p.error("--rounds must be >= 1")
  return args


def _run(cmd: list[str]) -> dict:
  """Runs one side's process; its last 'RESULT {json}' line."""
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=HERE)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not lines:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return json.loads(lines[-1][len("RESULT "):])


def side_commands(args, batch: int) -> dict[str, list[str]]:
  common = ["--pair-dir", args.pair_dir, "--batch", str(batch), "--steps", str(args.steps),
            "--warmup", str(args.warmup)]
  out = {"trl": [args.venv_python, os.path.join(HERE, "trl_side.py"), *common,
                 *args.trl_extra.split()],
         "skd_jax": [sys.executable, os.path.join(HERE, "skd_side.py"), *common,
                     "--gamma", str(args.gamma), *args.extra.split()]}
  if args.skip_trl:
    del out["trl"]
  return out


def _print_row(side: str, r: dict):
  print(f"  {side:8s} {r['method']:14s} batch {r['batch']}: step {r['step_s']:.3f} s "
        f"(generation {r['generation_s']:.3f} s, update {r['update_s']:.3f} s; "
        f"{r['step_per_sequence_s']:.3f} s/seq)  load {r['loadavg_before']:.1f} -> "
        f"{r['loadavg_after']:.1f}", flush=True)


def summarize(runs: list[dict]) -> dict:
  """(side, method, batch) -> medians over every timed step of every round."""
  table = {}
  for run in runs:
    for r in run["results"]:
      key = f"{run['side']}/{r['method']}/b{r['batch']}"
      row = table.setdefault(key, {"gen": [], "upd": [], "load": [], "batch": r["batch"]})
      row["gen"] += r["all_generation_s"]
      row["upd"] += (r["all_update_s"] if "all_update_s" in r else
                     [s - g for s, g in zip(r["all_step_s"], r["all_generation_s"])])
      row["load"] += [r["loadavg_before"], r["loadavg_after"]]
  out = {}
  for key, row in table.items():
    steps = [g + u for g, u in zip(row["gen"], row["upd"])]
    out[key] = {"step_s": benchutil.median(steps), "generation_s": benchutil.median(row["gen"]),
                "update_s": benchutil.median(row["upd"]),
                "step_per_sequence_s": benchutil.median(steps) / row["batch"],
                "timed_steps": len(steps), "loadavg_min": min(row["load"]),
                "loadavg_max": max(row["load"])}
  return out


def ratios(summary: dict, batches) -> dict:
  out = {}
  for b in batches:
    trl, onp, skd = (summary.get(f"{k}/b{b}") for k in
                     ("trl/gkd_on_policy", "skd_jax/on_policy", "skd_jax/skd"))
    if trl and onp:
      out[f"trl_step / skd_jax_on_policy_step, batch {b}"] = trl["step_s"] / onp["step_s"]
      out[f"trl_generation / skd_jax_on_policy_generation, batch {b}"] = (
          trl["generation_s"] / onp["generation_s"])
      out[f"trl_update / skd_jax_update, batch {b}"] = trl["update_s"] / onp["update_s"]
    if skd:
      out[f"official 4.11 s / skd_jax_skd_step_per_sequence, batch {b}"] = (
          OFFICIAL_SKD_MICRO_STEP_S / skd["step_per_sequence_s"])
    if trl and skd:
      out[f"trl_step / skd_jax_skd_step, batch {b}"] = trl["step_s"] / skd["step_s"]
  return out


def main(argv=None) -> dict:
  args = parse_args(argv)
  runs, versions = [], {}
  print(f"load average at start: {benchutil.loadavg()}", flush=True)
  for rnd in range(args.rounds):
    for batch in args.batches:
      for side, cmd in side_commands(args, batch).items():
        result = _run(cmd)
        result["round"] = rnd
        runs.append(result)
        versions.update({k: result[k] for k in ("trl", "torch", "transformers", "jax",
                                                 "gkd_trainer") if k in result})
        print(f"round {rnd} {side}:", flush=True)
        for r in result["results"]:
          _print_row(side, r)
  summary = summarize(runs)
  print("\nmedians over all rounds (s):", flush=True)
  for key, row in sorted(summary.items()):
    print(f"  {key:28s} step {row['step_s']:.3f}  generation {row['generation_s']:.3f}  "
          f"update {row['update_s']:.3f}  per seq {row['step_per_sequence_s']:.3f}  "
          f"(n={row['timed_steps']}, load {row['loadavg_min']:.1f}-{row['loadavg_max']:.1f})")
  rat = ratios(summary, args.batches)
  print(f"\nversions: {versions}")
  print("ratios (same run):")
  for k, v in rat.items():
    print(f"  {k}: {v:.2f}x")
  out = {"versions": versions, "args": vars(args), "runs": runs, "summary": summary,
         "ratios": rat, "machine_loadavg_end": benchutil.loadavg()}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == "__main__":
  main()
