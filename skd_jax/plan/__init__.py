"""Per-device memory planner for a student/teacher pair on a mesh.

    python -m skd_jax.plan --config=configs/gemma_translate.py --num_devices=8 \
        [--mesh=data:1,fsdp:8,tensor:1 ...] [--config.KEY=VALUE ...] [explicit flags]
    python -m skd_jax.plan --student=gemma-2b --teacher=gemma-7b \
        --mesh=data:1,fsdp:8,tensor:1 --batch=8 --prompt_len=256 --max_new_tokens=256

With `--config`, everything comes from the experiment config as the driver
reads it (models, dtypes, rule tables, batch, prompt and new tokens, gamma,
loss chunking, remat, micro-batches, evaluation batch); the explicit flags
override it. Everything is arithmetic on shapes: per-device shard shapes come
from the real rule tables of `skd_jax.sharding` applied to the mesh's axis
sizes, so a 256-chip mesh can be planned on a laptop. Nothing is allocated.

What is counted (bytes per device):

* resident for the whole run: the student's float32 master weights and
  AdamW's two float32 moments (student rules), the teacher in its
  `param_dtype` (teacher rules) and, as the driver keeps it, the loaded
  student in its `param_dtype` (`driver_copy`).
* train step: float32 gradients, the student in the compute dtype (XLA hoists
  the cast out of the layer scan), and activations: each layer's saved values
  (`_layer_intermediates`, counted in XLA:TPU's buffer assignment; only the
  layer inputs with remat), the hidden states, and the larger of one layer's
  backward (its cotangents, recomputed values with remat, its weights
  gathered over fsdp and their gradient) and the chunked loss ([B, chunk, V]
  float32 logits / probabilities of both models, embeddings gathered).
* SKD rollout: both KV caches (`cache_length` slots, compute dtype), the
  student in the compute dtype (XLA hoists the cast out of the decode loop),
  and the larger model's prefill values and weights gathered over fsdp.
* with `eval_batch`: the student-only rollout, the greedy evaluation decode
  and the teacher-forced logits of the agreement metric (their float32
  [rows, length, V] outputs).

The peak is the largest phase. Against XLA:TPU's compiled programs
(`python -m skd_jax.compile`, docs/SCALING.md) the phases of the paper setups
are within 7%. XLA needs headroom (fragmentation, collectives' buffers, the
program itself), so a plan "fits" an accelerator when its peak is at most
`HEADROOM` of the HBM.
"""

from skd_jax.plan.activations import Activations, activation_bytes
from skd_jax.plan.cli import main
from skd_jax.plan.experiment import (PlanError, load_config, model_config_of, model_configs,
                                     plan_experiment)
from skd_jax.plan.planner import plan
from skd_jax.plan.report import ACCELERATORS, HEADROOM, Report
from skd_jax.plan.sizes import (GiB, cache_bytes, dtype_bytes, gathered_elements,
                                gathered_extra, param_bytes, sharded_elements, split_ways)
