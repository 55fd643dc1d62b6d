"""The benchmark pair's architecture with its initial (untrained) weights, in seconds.

make_bench_pair.py (../shared/bench/) builds the pair by training both models for 300
steps (hours on a loaded 2-core machine). Step times do not depend on the weights when
every completion has exactly 128 tokens and the SKD draft block is gamma = 1 (one
round per token whatever the acceptance), so the side-by-side benchmark can run on
the same two architectures with make_bench_pair.py's own initialisation
(torch.manual_seed(0) before constructing each model, HF default init).

    python bench/peers/make_untrained_pair.py OUT [--pair-script PATH]
"""
import argparse
import importlib.util
import os

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("out")
p.add_argument("--pair-script", default="/work/shared/bench/make_bench_pair.py")
args = p.parse_args()
spec = importlib.util.spec_from_file_location("make_bench_pair", args.pair_script)
pair = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pair)  # Module level: configs and corpus tables only.
for role, cfg in (("teacher", pair.teacher_config()), ("student", pair.student_config())):
  pair.torch.manual_seed(0)
  pair.GemmaForCausalLM(cfg).save_pretrained(os.path.join(args.out, role),
                                             safe_serialization=True)
  print(role, "->", os.path.join(args.out, role))
