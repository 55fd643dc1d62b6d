r"""Compiles the driver's jitted functions for a TPU topology, on any host.

    python -m skd_jax.compile --config=configs/gemma_translate.py --topology=v5e:2x2 \
        [--mesh=data:1,fsdp:4,tensor:1] [--batch_size=8] [--json=out.json] \
        [--config.KEY=VALUE ...]

libtpu's compiler runs without a TPU: `jax.experimental.topologies` describes
the chips of a topology ("v5e:2x2", "v4:2x2x1", ...), the run's mesh is laid
on those devices, and every function the driver jits is lowered on abstract
inputs (`jax.ShapeDtypeStruct`s carrying the driver's shardings; no weights are
read or allocated) and compiled for that topology. What comes back is XLA's
own per-chip memory plan (`memory_analysis()`) and cost (`cost_analysis()`).

Functions (each built by the library call the driver makes, from the config):

* ``train_step``: `step.train_step` (or `step.sft_step` for "sft") on the
  longest training batch, [batch_size, max_prompt_tokens + max_new_tokens].
* ``skd_rollout``, ``student_rollout``: `sampling.api.run_rollout` with the
  driver's SamplerConfig (`train.rollout.rollout_sampler_config`) on batch_size
  prompts of the largest prompt bucket.
* ``eval_decode``: the greedy student rollout of the evaluations
  (`train.rollout.eval_sampler_config`), on eval.batch_size prompts.
* ``teacher_logits``, ``student_logits``: `Model.logits`, the teacher-forced
  scoring of the top-1 agreement, on eval.batch_size rows.

Memory (bytes per chip): ``peak = argument + output + temp - alias`` is the
program's own peak; the driver holds other arrays meanwhile (e.g. the optimizer
state during a rollout, the initial student weights throughout), so
``resident_bytes`` adds those and ``run_peak`` is the largest sum: the figure
that must fit the chip's HBM and that `skd_jax.plan` estimates.

Time: ``roofline_seconds = max(flops / peak FLOP/s, bytes / HBM bandwidth)``
with ANALYTIC counts (matmuls, attention as implemented over the full cache,
weights and caches read per decode step); XLA's ``cost_analysis()`` is
reported beside them as ``xla_flops`` / ``xla_bytes_accessed`` but counts the
body of a `lax.scan` / `while_loop` once, not once per trip (layers, chunks,
decode rounds), so it undercounts by the trip counts. Rollouts assume every
draft accepted (`--acceptance` changes that); tokens/s counts the whole batch.
Nothing here measures ICI traffic, the host input pipeline or kernel speed.

Errors (exit 2, one line): an unknown topology name, a mesh that does not
match its devices, a batch not divisible by the data-parallel axes, libtpu not
installed.
"""

from skd_jax.compile.compilation import Compilation
from skd_jax.compile.costs import (expected_tokens_per_round, forward_flops, logits_costs,
                                   rollout_costs, train_costs)
from skd_jax.compile.programs import PLANNER_PHASES, Program, programs
from skd_jax.compile.results import Result, compile_program, usable_hbm_bytes
from skd_jax.compile.run import compile_config, main, reference_topology
from skd_jax.compile.setup import Setup, build_setup, shard_bytes
from skd_jax.compile.topology import (CHIPS, TOPOLOGY_FORMS, Chip, CompileError,
                                      libtpu_pip_line, topology)
