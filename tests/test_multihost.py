"""Two processes on localhost (jax.distributed, 4 CPU devices each) train like one.

Each process supplies only its half of the global batch
(`make_array_from_process_local_data`) and the student is FSDP-sharded across
the processes; after 3 steps process 0's parameters must equal a 1-process run.
"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import portpicker
import pytest

import multihost_worker as worker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 300


def _launch(out_dir, port, *extra):
  procs = []
  for i in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu", COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               NUM_PROCESSES="2", PROCESS_ID=str(i), PYTHONPATH=REPO,
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tests", "multihost_worker.py"), str(out_dir),
         str(worker.STEPS), *extra], env=env, cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
  logs = []
  try:
    for p in procs:
      out, _ = p.communicate(timeout=TIMEOUT_S)
      logs.append(out)
  finally:
    for p in procs:   # Only our own children, by handle.
      if p.poll() is None:
        p.kill()
        p.wait()
  return [p.returncode for p in procs], logs


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
  port = portpicker.pick_unused_port()
  codes, logs = _launch(tmp_path, port)
  assert codes == [0, 0], "\n\n".join(f"--- process {i} ---\n{log[-4000:]}"
                                      for i, log in enumerate(logs))

  student, teacher, batch = worker.models_and_batch()
  state, metrics = worker.train(worker.initial_state(student), teacher,
                                jax.tree.map(jnp.asarray, batch))
  flat, _ = jax.tree_util.tree_flatten_with_path(state.params)
  assert len(flat) > 5
  for path, ref in flat:
    got = np.load(tmp_path / (worker.leaf_name(path) + ".npy"))
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0, err_msg=worker.leaf_name(path))
  np.testing.assert_allclose(np.load(tmp_path / "loss.npy"), metrics["loss"][0], rtol=1e-5)
  assert not np.allclose(state.params["layers"]["gate"], student["layers"]["gate"])


def _exported(workdir):
  from safetensors.numpy import load_file
  return load_file(os.path.join(workdir, "export", "model.safetensors"))


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _train_metrics(workdir):
  return [r for r in _rows(workdir) if r.get("kind") == "train"]


@pytest.mark.slow
def test_two_process_driver_run_equals_one_process(tmp_path):
  """loop.run on 2 processes x 4 devices == on 1 process x 8 devices.

  Each process reads only its rows of every global batch, samples them (ImitKD:
  student rollouts and ground truth mixed), and the step sees one global batch;
  evaluation, checkpointing and the HF export run across both processes.
  """
  two = tmp_path / "two"
  codes, logs = _launch(two, portpicker.pick_unused_port(), "driver")
  assert codes == [0, 0], "\n\n".join(f"--- process {i} ---\n{log[-4000:]}"
                                      for i, log in enumerate(logs))
  one = tmp_path / "one"
  result = worker.run_driver(str(one))

  got, want = _exported(two), _exported(one)
  assert sorted(got) == sorted(want) and len(want) > 5
  for name in want:
    np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0, err_msg=name)
  rows_two, rows_one = _train_metrics(two), _train_metrics(one)
  assert [r["step"] for r in rows_two] == [1, 2, 3]
  for a, b in zip(rows_two, rows_one):
    for key in ("loss", "sampled_fraction", "replacement_rate", "completion_tokens"):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=f"step {a['step']} {key}")
  assert 0 < rows_one[0]["sampled_fraction"] < 1   # Both row kinds in the batches.
  # The same greedy test-set predictions, so the same scores (written by process 0).
  final_two = [r for r in _rows(two) if r.get("kind") == "eval" and r["split"] == "test"]
  assert len(final_two) == 1 and final_two[0]["num_examples"] == 8
  for metric in ("chrf", "exact_match", "top1_agreement"):
    np.testing.assert_allclose(final_two[0][metric], result["final"][metric], rtol=1e-6,
                               err_msg=metric)
