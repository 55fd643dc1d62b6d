"""Issue 16: the driver compiles and runs its steps under its mesh.

`with_logical_constraint` does nothing without a mesh, and the model relies on it
to keep FSDP activations batch-sharded. Without the mesh, XLA propagates the
parameters' "embed" split into the hidden states and every device holds the
whole batch's activations.
"""
import numpy as np
import pytest

from skd_jax.train import run_setup
from skd_jax.train import training
from tests.tiny import tiny_config

BATCH, LENGTH = 8, 128


def _env(num_devices):
  config = tiny_config(**{"num_devices": num_devices, "batch_size": BATCH,
                          "mesh": "data:1,fsdp:-1,tensor:1",
                          "student.overrides.hidden_size": 64,
                          "student.overrides.intermediate_size": 128})
  env = run_setup.setup(config, "/tmp/skdtests/driver_mesh")
  batch = {"tokens": np.ones((BATCH, LENGTH), np.int32),
           "loss_mask": np.ones((BATCH, LENGTH), bool)}
  return env, training.create_state(env, 10), batch


def _temp_bytes(lowered) -> int:
  return lowered.compile().memory_analysis().temp_size_in_bytes


@pytest.mark.slow
def test_driver_step_keeps_activations_batch_sharded():
  env1, state1, batch = _env(1)
  one_device = _temp_bytes(training.lower_step(env1, state1, batch))
  env8, state8, _ = _env(8)
  driver = _temp_bytes(training.lower_step(env8, state8, batch))
  # The same step lowered without the mesh (the driver before issue 16).
  fn, args, kwargs = training.step_call(env8, state8, batch)
  no_mesh = _temp_bytes(fn.lower(*args, **kwargs))
  # Activations dominate the temps here: 1/8 of them per device, plus small
  # unsharded pieces (measured ~1/6.3). Without the mesh, ~2/3 stay.
  assert driver < 0.25 * one_device, (driver, one_device)
  assert no_mesh > 0.5 * one_device, (no_mesh, one_device)
