"""One process of the 2-process test, and the pieces the test shares with it.

    python tests/multihost_worker.py OUT_DIR STEPS            # train_step on a global batch
    python tests/multihost_worker.py WORKDIR STEPS driver     # the whole driver (loop.run)

Environment: COORDINATOR_ADDRESS, NUM_PROCESSES, PROCESS_ID (read by
`distributed.initialize_distributed`), and XLA_FLAGS giving this process its own
CPU devices. Every process builds the same models and the same global batch
but hands JAX only ITS rows (`global_batch_from_local`); the student is FSDP
sharded across both processes. Process 0 saves the final params as .npy files.

Importing this module (as tests/test_multihost.py does) runs nothing.
"""
import os
import sys

import numpy as np

MESH = {"data": 2, "fsdp": 4, "tensor": 1}
STEPS = 3
OPT = dict(learning_rate=1e-3, schedule="constant")


def configs():
  from skd_jax.train import step as step_lib
  from tests import tiny
  return tiny.STUDENT, tiny.TEACHER, step_lib.LossConfig(chunk_size=8)


def models_and_batch():
  """(student params, teacher params, global batch as numpy), the same everywhere."""
  from tests import tiny
  student, teacher = tiny.params()
  return student, teacher, tiny.batch()


def train(state, teacher, batch, steps: int = STEPS):
  from skd_jax.train import step as step_lib
  student_cfg, teacher_cfg, loss_cfg = configs()
  for _ in range(steps):
    state, metrics = step_lib.train_step(state, teacher, batch, student_cfg=student_cfg,
                                         teacher_cfg=teacher_cfg, loss_cfg=loss_cfg)
  return state, metrics


def initial_state(student):
  import jax
  from skd_jax.train.state import TrainState
  return TrainState.create(student, jax.random.PRNGKey(0), OPT)


def leaf_name(path) -> str:
  """"layers.gate"-style file name of a params leaf."""
  return ".".join(str(getattr(k, "key", k)) for k in path)


def driver_config(method: str = "imitkd"):
  """The demo's tiny models through the whole driver: rollouts, eval, checkpoint, export.

  ImitKD mixes student rollouts with ground-truth rows in one batch (both paths).
  """
  from skd_jax.config_files import sibling
  c = sibling(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "demo.py"), "demo").get_config("tiny")
  del c["compare"]
  c.method = method
  c.mix.imitkd_fraction = 0.5
  c.batch_size = 8
  c.max_steps = STEPS
  c.num_devices = 0
  c.mesh = ",".join(f"{k}:{v}" for k, v in MESH.items())
  c.eval.every_steps = 0
  c.eval.limit = 8
  c.eval.final_limit = 8                  # The final score is of the whole split by default.
  c.eval.batch_size = 8
  c.eval.final_split = "test"
  c.checkpoint.every_steps = STEPS
  c.log_every_steps = 1
  c.export = True
  return c


def run_driver(workdir: str) -> dict:
  from skd_jax.train import loop
  return loop.run(driver_config(), workdir, "train")


def main(out_dir: str, steps: int):
  import jax
  from skd_jax import distributed
  from skd_jax import sharding
  from skd_jax.models import partitioning
  n, i = jax.process_count(), jax.process_index()
  assert n == 2 and jax.device_count() == 2 * jax.local_device_count(), jax.devices()
  mesh = sharding.make_mesh(MESH)
  student_cfg, teacher_cfg, _ = configs()
  student, teacher, batch = models_and_batch()
  rows = batch["tokens"].shape[0] // n
  local = jax.tree.map(lambda x: x[i * rows:(i + 1) * rows], batch)
  global_batch = distributed.global_batch_from_local(local, mesh)
  assert global_batch["tokens"].shape == batch["tokens"].shape
  assert not global_batch["tokens"].is_fully_addressable

  state = initial_state(student)
  state = distributed.shard_params(state, sharding.train_state_shardings(
      state, partitioning.param_shardings(student_cfg, mesh, "student"), mesh))
  teacher = distributed.shard_params(teacher,
                                     partitioning.param_shardings(teacher_cfg, mesh, "teacher"))
  state, metrics = train(state, teacher, global_batch, steps)

  # Gather the FSDP-sharded params onto every process; process 0 saves them.
  params, loss = jax.jit(lambda p, l: (p, l), out_shardings=sharding.replicated(mesh))(
      state.params, metrics["loss"][0])
  if distributed.is_main_process():
    os.makedirs(out_dir, exist_ok=True)
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    for path, leaf in flat:
      np.save(os.path.join(out_dir, leaf_name(path) + ".npy"), np.asarray(leaf))
    np.save(os.path.join(out_dir, "loss.npy"), np.asarray(loss))
  print(f"process {i}/{n}: done, loss {float(loss):.6f}", flush=True)


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import jax  # noqa: E402
  from skd_jax import distributed  # noqa: E402
  # Before any other JAX call.
  assert distributed.initialize_distributed(), "expected a multi-process run"
  jax.config.update("jax_default_matmul_precision", "highest")
  if len(sys.argv) > 3 and sys.argv[3] == "driver":
    import json  # noqa: E402
    result = run_driver(sys.argv[1])
    print(f"process {jax.process_index()}: done {json.dumps(result['final'], default=float)}",
          flush=True)
  else:
    main(sys.argv[1], int(sys.argv[2]))
