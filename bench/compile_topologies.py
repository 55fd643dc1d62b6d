"""Compiles the paper setups for TPU topologies (resumable): docs/SCALING.md, "Compiled on TPU topologies".

    nohup python bench/compile_topologies.py > /tmp/compile_logs/sweep.log 2>&1 &
    python bench/compile_topologies.py --summary        # planner errors of the results so far
    python bench/compile_topologies.py --markdown       # the docs/SCALING.md table
    python bench/compile_topologies.py --refresh        # analytic + planner fields, current code
    python bench/compile_topologies.py --setups=tiny --results=/tmp/compile   # checks it runs

Each (setup, topology, mesh, variant) runs `python -m skd_jax.compile` in its own
process (one at a time: a 7B-scale compile takes minutes and GiBs of host
memory) and leaves bench/results/compile/<setup>_<topology>_<mesh>[_<variant>].json;
existing results are skipped, so an interrupted sweep resumes where it stopped.
Logs: /tmp/compile_logs/<same name>.log.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

import benchutil  # bench/benchutil.py (the script's folder is on sys.path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "compile")
LOGS = "/tmp/compile_logs"

SETUPS = {
    "gemma": "configs/gemma_translate.py",
    "qwen": "configs/qwen_translate.py",
    "tiny": "configs/gemma_translate.py:tiny",   # Checks the sweep runs (seconds), --results elsewhere.
}
PAPER_SETUPS = ("gemma", "qwen")
# (topology, mesh, variant, extra flags). Variant "" runs the config as it is (the
# paper's settings: remat off); "remat" recompiles only the train step with
# per-layer rematerialisation (nothing else depends on it); "fsdpteacher" gives
# the teacher the student's FSDP rules. The meshes are the planner's candidates
# for each chip count (docs/SCALING.md).
REMAT = ("--config.loss.remat=True", "--functions=train_step")
FSDP_TEACHER = ("--config.teacher.rules=student",)
RUNS = {
    "gemma": [
        ("v5e:2x2", "1,1,4", "", ()),
        ("v5e:2x2", "1,1,4", "remat", REMAT),
        ("v5e:2x4", "1,1,8", "", ()),
        ("v5e:2x4", "1,1,8", "remat", REMAT),
        ("v5e:2x4", "1,4,2", "", ()),
        ("v5e:2x4", "1,4,2", "remat", REMAT),
        ("v5e:2x4", "1,8,1", "fsdpteacher", FSDP_TEACHER),
        ("v5e:2x4", "1,8,1", "fsdpteacher_remat", FSDP_TEACHER + REMAT),
        ("v5p:2x2x1", "1,4,1", "", ()),
        ("v5p:2x2x1", "1,1,4", "", ()),
        ("v4:2x2x1", "1,1,4", "", ()),
        ("v4:2x2x1", "1,1,4", "remat", REMAT),
        ("v4:2x2x1", "1,4,1", "fsdpteacher", FSDP_TEACHER),
    ],
    "qwen": [
        ("v5e:2x2", "1,1,4", "", ()),
        ("v5e:2x2", "1,1,4", "remat", REMAT),
        ("v5e:2x2", "1,4,1", "fsdpteacher", FSDP_TEACHER),
        ("v5e:2x2", "1,4,1", "fsdpteacher_remat", FSDP_TEACHER + REMAT),
        ("v5e:2x4", "1,2,4", "", ()),
        ("v5e:2x4", "1,8,1", "fsdpteacher", FSDP_TEACHER),
        ("v5p:2x2x1", "1,4,1", "", ()),
        ("v5p:2x2x1", "1,1,4", "", ()),
        ("v4:2x2x1", "1,1,4", "", ()),
        ("v4:2x2x1", "1,4,1", "", ()),
    ],
    "tiny": [("v5e:2x2", "1,1,4", "", ("--config.num_devices=0",))],   # :tiny pins 1 device.
}


def name_of(setup, topology, mesh, variant):
  parts = [setup, topology.replace(":", ""), mesh.replace(",", "")] + ([variant] if variant else [])
  return "_".join(parts)


def run_one(setup, topology, mesh, variant, extra, timeout):
  name = name_of(setup, topology, mesh, variant)
  out = os.path.join(RESULTS, name + ".json")
  if os.path.exists(out):
    print(f"skip {name} (done)", flush=True)
    return
  cmd = [sys.executable, "-m", "skd_jax.compile", f"--config={SETUPS[setup]}",
         f"--topology={topology}", f"--mesh={mesh}", f"--json={out}", *extra]
  print(f"run  {name}: {' '.join(cmd[1:])}", flush=True)
  with open(os.path.join(LOGS, name + ".log"), "w") as log:
    log.write(" ".join(cmd) + "\n")
    log.flush()
    try:
      proc, seconds = benchutil.timed(subprocess.run, cmd, cwd=ROOT, stdout=log,
                                      stderr=subprocess.STDOUT, timeout=timeout)
      rc = proc.returncode
    except subprocess.TimeoutExpired:
      rc, seconds = "timeout", timeout
  print(f"     {name}: rc={rc} in {seconds:.0f} s (load average {benchutil.loadavg()})",
        flush=True)


def _flags(setup, name):
  """The extra flags of the run called `name`."""
  for topology, mesh, variant, extra in RUNS[setup]:
    if name_of(setup, topology, mesh, variant) == name:
      return topology, mesh, extra
  raise KeyError(name)


def planner_errors():
  """Per run and function: compiled run peak (GiB) and the CURRENT planner's error."""
  from skd_jax import plan as plan_lib
  from skd_jax.compile import PLANNER_PHASES
  out = {}
  for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
    name = os.path.basename(path)[:-5]
    setup = name.split("_")[0]
    with open(path) as f:
      r = json.load(f)
    _, mesh, extra = _flags(setup, name)
    overrides = [e[len("--config."):] for e in extra if e.startswith("--config.")]
    config = plan_lib.load_config(SETUPS[setup], overrides)
    config.mesh = mesh
    report = plan_lib.plan_experiment(config, num_devices=r["devices"])
    phases = report.phase_peaks()
    out[name] = {fn: (v["run_peak_bytes"] / 2**30, (phases[PLANNER_PHASES[fn]] - v["run_peak_bytes"])
                      / v["run_peak_bytes"], v["error"] is not None)
                 for fn, v in r["functions"].items()}
  return out


def summary():
  rows = []
  errors = planner_errors()
  for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
    name = os.path.basename(path)[:-5]
    with open(path) as f:
      r = json.load(f)
    fn = r["functions"]
    train = fn.get("train_step", {})
    skd = fn.get("skd_rollout", {})
    mesh = ",".join(str(v) for v in r["mesh"].values())
    worst = max((abs(e) for _, e, oom in errors[name].values() if not oom), default=None)
    rows.append((name, r["topology"], mesh, r["run_peak_bytes"] / 2**30,
                 r["usable_hbm_bytes"] / 2**30, r["fits"], train.get("roofline_seconds"),
                 skd.get("tokens_per_second"), worst))
  print(f"{'run':<34s}{'topology':<11s}{'mesh':<8s}{'peak GiB':>9s}{'HBM':>7s} {'fits':<6s}"
        f"{'train s':>8s}{'SKD tok/s':>10s}{'worst planner err':>18s}")
  for name, topo, mesh, peak, hbm, fits, train, tok, err in rows:
    fmt = lambda x, f: (f % x) if x is not None else "-"
    print(f"{name:<34s}{topo:<11s}{mesh:<8s}{peak:9.2f}{hbm:7.2f} {str(fits):<6s}"
          f"{fmt(train, '%8.3f'):>8s}{fmt(tok, '%10.0f'):>10s}{fmt(err, '%17.1f%%' if False else '%18.3f'):>18s}")
  print()
  for name, fns in errors.items():
    print(name, "  ".join(f"{fn}={peak:.2f}({err:+.1%}){'OOM' if oom else ''}"
                          for fn, (peak, err, oom) in fns.items()))


def _config_of(setup, name):
  from skd_jax import plan as plan_lib
  _, mesh, extra = _flags(setup, name)
  config = plan_lib.load_config(SETUPS[setup], [e[len("--config."):] for e in extra
                                                if e.startswith("--config.")])
  config.mesh = mesh
  return config


def _rooflines(setup, name):
  """Analytic rooflines of the current code (no compile): train-step seconds and
  SKD rollout tokens/s at per-draft acceptance 1 and 0.6."""
  from skd_jax import compile as compile_lib
  config = _config_of(setup, name)
  devices, chip = compile_lib.topology(_flags(setup, name)[0])
  built = compile_lib.build_setup(config, devices)
  seconds = lambda p: max(p.flops / (chip.bf16_tflops * 1e12),
                          p.bytes_accessed / (chip.hbm_gbps * 1e9))
  out = {}
  for acceptance in (1.0, 0.6):
    progs = {p.name: p for p in compile_lib.programs(built, acceptance)}
    out[acceptance] = progs["skd_rollout"].tokens / seconds(progs["skd_rollout"])
  out["train"] = seconds(progs["train_step"])
  return out


def refresh():
  """Recomputes the analytic fields (FLOPs, bytes, rooflines) and the planner's
  figures of every result from the current code; the compiler's figures stay."""
  from skd_jax import compile as compile_lib
  from skd_jax import plan as plan_lib
  for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
    name = os.path.basename(path)[:-5]
    setup = name.split("_")[0]
    with open(path) as f:
      r = json.load(f)
    config = _config_of(setup, name)
    devices, chip = compile_lib.topology(_flags(setup, name)[0])
    progs = {p.name: p for p in compile_lib.programs(compile_lib.build_setup(config, devices))}
    for fn, v in r["functions"].items():
      p = progs[fn]
      v["flops"], v["bytes_accessed"] = p.flops, p.bytes_accessed
      v["roofline_seconds"] = max(p.flops / (chip.bf16_tflops * 1e12),
                                  p.bytes_accessed / (chip.hbm_gbps * 1e9))
      v["tokens_per_second"] = p.tokens / v["roofline_seconds"] if p.tokens else None
    report = plan_lib.plan_experiment(config, num_devices=r["devices"])
    phases = report.phase_peaks()
    measured = {fn: v for fn, v in r["functions"].items()
                if v["error"] is None or v.get("measured_on")}
    r["planner"] = {"peak_bytes": report.peak, "phases": phases, "errors": {
        fn: (phases[compile_lib.PLANNER_PHASES[fn]] - v["run_peak_bytes"]) / v["run_peak_bytes"]
        for fn, v in measured.items()}}
    if len(measured) == len(r["functions"]):
      r["planner"]["error"] = (report.peak - r["run_peak_bytes"]) / r["run_peak_bytes"]
    with open(path, "w") as f:
      json.dump(r, f, indent=2)
    print(f"refreshed {name}", flush=True)


def _verdict(x):
  """yes / no, and "tight" for less than 1 GiB to spare."""
  if not x["fits"]:
    return "no"
  spare = x["usable"] - x["peak"]
  return "yes" if spare >= 1 else f"tight ({spare:.1f} GiB spare)"


def markdown():
  """The tables of docs/SCALING.md, "Compiled on TPU topologies"."""
  from skd_jax import plan as plan_lib
  from skd_jax.compile import PLANNER_PHASES
  gib = 2 ** 30
  rows = []
  for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
    name = os.path.basename(path)[:-5]
    if name.endswith("remat"):
      continue
    setup = name.split("_")[0]
    with open(path) as f:
      base = json.load(f)
    variants = [(name, base, False)]
    if os.path.exists(os.path.join(RESULTS, name + "_remat.json")):
      with open(os.path.join(RESULTS, name + "_remat.json")) as f:
        remat = json.load(f)
      merged = dict(base, functions=dict(base["functions"], train_step=remat["functions"]["train_step"]))
      variants.append((name + "_remat", merged, True))
    for run, r, is_remat in variants:
      config = _config_of(setup, run)
      report = plan_lib.plan_experiment(config, num_devices=r["devices"])
      phases = report.phase_peaks()
      fns = r["functions"]
      peak_fn = max(fns, key=lambda k: fns[k]["run_peak_bytes"])
      peak = fns[peak_fn]["run_peak_bytes"]
      errors = {k: (phases[PLANNER_PHASES[k]] - v["run_peak_bytes"]) / v["run_peak_bytes"]
                for k, v in fns.items()}
      oom = [k for k, v in fns.items() if v["error"]]
      fits = not oom and peak <= r["usable_hbm_bytes"]
      roof = _rooflines(setup, run)
      rows.append(dict(
          setup=setup, topology=r["topology"], mesh=",".join(str(v) for v in r["mesh"].values()),
          teacher_rules="student" if "fsdpteacher" in run else "teacher", remat=is_remat,
          train=fns["train_step"]["run_peak_bytes"] / gib,
          skd=fns["skd_rollout"]["run_peak_bytes"] / gib, peak=peak / gib, peak_fn=peak_fn,
          usable=r["usable_hbm_bytes"] / gib, fits=fits, oom=oom,
          measured_on=fns["train_step"].get("measured_on"),
          train_s=roof["train"], tok1=roof[1.0], tok06=roof[0.6],
          planner=(report.peak - peak) / peak, worst=max(errors.values(), key=abs)))
  print("| pair | topology | mesh (d,f,t) | teacher rules | remat | train step | SKD rollout | "
        "run peak (largest) | usable | fits | train step roofline | SKD tok/s a=1 / 0.6 | "
        "planner error: peak / worst phase |")
  print("|---|---|---|---|---|---:|---:|---:|---:|:---:|---:|---:|---:|")
  for x in rows:
    star = "*" if x["measured_on"] else ""
    print(f"| {x['setup']} | {x['topology']} | {x['mesh']} | {x['teacher_rules']} | "
          f"{'on' if x['remat'] else 'off'} | {x['train']:.2f}{star} | {x['skd']:.2f} | "
          f"{x['peak']:.2f} ({x['peak_fn']}) | {x['usable']:.2f} | "
          f"{_verdict(x)} | {x['train_s'] * 1e3:.0f} ms | "
          f"{x['tok1']:.0f} / {x['tok06']:.0f} | {x['planner']:+.1%} / {x['worst']:+.1%} |")


def main():
  global RESULTS
  p = argparse.ArgumentParser()
  p.add_argument("--summary", action="store_true")
  p.add_argument("--markdown", action="store_true")
  p.add_argument("--refresh", action="store_true",
                 help="recompute the analytic and planner fields of the results")
  p.add_argument("--setups", default=",".join(PAPER_SETUPS),
                 help=f"comma list of {sorted(SETUPS)}")
  p.add_argument("--results", default=RESULTS,
                 help="where the JSON results go (e.g. /tmp/compile for --setups=tiny)")
  p.add_argument("--timeout", type=int, default=3600, help="seconds per compile run")
  args = p.parse_args()
  RESULTS = args.results
  if args.summary:
    summary()
    return
  if args.markdown:
    markdown()
    return
  if args.refresh:
    refresh()
    return
  os.makedirs(RESULTS, exist_ok=True)
  os.makedirs(LOGS, exist_ok=True)
  for setup in args.setups.split(","):
    for topology, mesh, variant, extra in RUNS[setup]:
      run_one(setup, topology, mesh, variant, extra, args.timeout)


if __name__ == "__main__":
  main()
