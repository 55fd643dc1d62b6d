"""docs/EXTENDING.md, executed: each example applied to a copy of the package, then run.

The code blocks are read from the doc (a `<!-- example: NAME MODE FILE -->` line
above each), never copied here, so the doc cannot drift from what works. Each
example touches exactly one file; the direct-call tests run in a subprocess on
the copy (the installed package is not modified).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "EXTENDING.md")
_EXAMPLE = re.compile(r"<!-- example: (\w+) (append|create) (\S+) -->\s*\n```python\n(.*?)```",
                      re.S)


def examples() -> dict[str, tuple[str, str, str]]:
  """name -> (mode, file, code) of every marked block of EXTENDING.md."""
  with open(DOC, encoding="utf-8") as f:
    found = _EXAMPLE.findall(f.read())
  return {name: (mode, path, code) for name, mode, path, code in found}


def apply(root: str, mode: str, path: str, code: str) -> None:
  """Applies one example to the tree at `root`: append to or create `path`."""
  target = os.path.join(root, path)
  if mode == "create":
    assert not os.path.exists(target), f"{path} exists already; the example creates it"
    with open(target, "w", encoding="utf-8") as f:
      f.write(code)
  else:
    with open(target, "a", encoding="utf-8") as f:
      f.write("\n\n" + code)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  """A copy of skd_jax/ and configs/ with every example of the doc applied."""
  root = str(tmp_path_factory.mktemp("extended"))
  for folder in ("skd_jax", "configs"):
    shutil.copytree(os.path.join(ROOT, folder), os.path.join(root, folder),
                    ignore=shutil.ignore_patterns("__pycache__"))
  for mode, path, code in examples().values():
    apply(root, mode, path, code)
  return root


def _env(root: str) -> dict[str, str]:
  """The copy at `root` first on the path; offline; one CPU device; its own tfds cache."""
  return dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
              SKD_DATA_DIR=os.path.join(root, "tfds"), XLA_FLAGS="")


def run_python(root: str, code: str, timeout: int = 300) -> str:
  """Runs `code` against the copy at `root`; returns stdout."""
  prelude = ("import skd_jax, os\n"
             f"assert skd_jax.__file__.startswith({root!r}), skd_jax.__file__\n")
  done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=root,
                        env=_env(root), capture_output=True, text=True, timeout=timeout,
                        check=False)
  assert done.returncode == 0, done.stderr[-4000:]
  return done.stdout


def test_the_doc_has_one_example_per_extension_point():
  found = examples()
  assert set(found) == {"divergence", "method", "task"}, sorted(found)
  assert found["method"][1] == "skd_jax/train/methods.py"
  assert found["task"][1].startswith("skd_jax/data/tasks/")


# What each example must do once applied (run by `results`, with `config_error` in
# scope; asserted below).
CHECKS = {
    "method": """
import os
import jax, numpy as np
from skd_jax.config_files import sibling
from skd_jax.train import methods
m = methods.METHODS["seq_kd_mixed"]
config = sibling(os.path.join(os.getcwd(), "configs", "x.py"), "gemma_translate")
c = config.get_config("tiny")
rows = methods.row_sources("seq_kd_mixed", c.mix, methods.source_key(
    jax.random.PRNGKey(0), 3), 512, 3, 10)
again = methods.row_sources("seq_kd_mixed", c.mix, methods.source_key(
    jax.random.PRNGKey(0), 3), 512, 3, 10)
c.method = "seq_kd_mixed"
valid = config_error(c)
c.mix.seq_kd_fraction = 1.5
result = dict(
    objective=m.objective, fraction=float(np.mean(rows == methods.TEACHER)),
    values=sorted(set(rows.tolist())), same=bool((rows == again).all()),
    default=float(methods.mix_defaults()["seq_kd_fraction"]), valid=valid,
    error=config_error(c))
""",
    "task": """
from skd_jax.data import get_task, list_tasks
task = get_task("reverse_words")
splits = {s: task.records(s) for s in ("train", "validation", "test")}
result = dict(registered="reverse_words" in list_tasks(), metrics=list(task.metrics),
              splits=splits)
""",
    "divergence": """
import os
import numpy as np
import skd_jax
from skd_jax.config_files import sibling
from skd_jax.train import step
c = sibling(os.path.join(os.getcwd(), "configs", "x.py"),
            "gemma_translate_amari").get_config("tiny")
rng = np.random.default_rng(0)
t, s = rng.normal(size=(2, 5, 11)) * 2, rng.normal(size=(2, 5, 11)) * 2
mask = np.ones((2, 5), bool)
p = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
q = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
want = lambda a: float(np.mean((1 - np.sum(p ** a * q ** (1 - a), -1)) / (a * (1 - a))))
got = {a: float(skd_jax.divergence("amari", t, s, mask, order=a))
       for a in (0.3, 0.5, 0.999, 0.001)}
forbidden = t.copy()
forbidden[..., 0] = -np.inf  # The teacher gives id 0 probability 0.
p0 = np.exp(forbidden) / np.exp(forbidden).sum(-1, keepdims=True)
want0 = float(np.mean((1 - np.sum(np.sqrt(p0 * q), -1)) / 0.25))
entry = step.loss_config(c.loss).divergence
c.loss.order = 1.5
error = config_error(c)
result = dict(
    got=got, want={a: want(a) for a in (0.3, 0.5)},
    fkl=float(skd_jax.divergence("fkl", t, s, mask)),
    rkl=float(skd_jax.divergence("rkl", t, s, mask)),
    at_inf=float(skd_jax.divergence("amari", forbidden, s, mask, order=0.5)),
    want_at_inf=want0, entry=repr(entry), error=error)
""",
}


@pytest.fixture(scope="module")
def results(tree):
  """CHECKS run against the copy in one process (one import of JAX for the three):
  name -> its `result`, or {"traceback": ...} when the check raised."""
  code = textwrap.dedent("""
      import json, traceback
      from skd_jax.train import validate

      def config_error(config):  # Its ConfigError message on one device; "" if valid.
        try:
          validate.validate_config(config, 1)
        except validate.ConfigError as e:
          return str(e)
        return ""

      out = {}
      for name, check in CHECKS.items():
        scope = {"config_error": config_error}
        try:
          exec(check, scope)
          out[name] = scope["result"]
        except Exception:
          out[name] = {"traceback": traceback.format_exc()}
      print(json.dumps(out))
  """)
  out = run_python(tree, f"CHECKS = {CHECKS!r}\n" + code)
  return json.loads(out.strip().splitlines()[-1])


def test_the_method_example(results):
  """Registered, its coins fair and keyed, its knob in config.mix and validated."""
  got = results["method"]
  assert "traceback" not in got, got.get("traceback")
  assert got["objective"] == "distill" and got["same"] and got["valid"] == ""
  assert got["values"] == [0, 2]  # GROUND_TRUTH, TEACHER.
  # 512 fair coins: 5 standard deviations (0.022 each) around 0.5.
  assert abs(got["fraction"] - 0.5) < 5 * (0.25 / 512) ** 0.5
  assert got["default"] == 0.5
  assert got["error"].startswith("mix.seq_kd_fraction=1.5 must be in [0, 1]")


def test_the_task_example(results):
  """Registered, prepared through tfds, splits disjoint, targets the reversed inputs."""
  got = results["task"]
  assert "traceback" not in got, got.get("traceback")
  assert got["registered"] and got["metrics"] == ["exact_match"]
  splits = got["splits"]
  assert {s: len(r) for s, r in splits.items()} == {"train": 200, "validation": 20, "test": 20}
  inputs = [r["input"] for rows in splits.values() for r in rows]
  assert len(set(inputs)) == len(inputs)  # No input in two splits.
  for rows in splits.values():
    for r in rows:
      assert r["target"].split() == r["input"].split()[::-1] == r["answer"].split()


def test_the_divergence_example(results):
  """Registered by its config file, its formula, its limits, exact at -inf, validated."""
  got = results["divergence"]
  assert "traceback" not in got, got.get("traceback")
  for a in ("0.3", "0.5"):
    assert got["got"][a] == pytest.approx(got["want"][a], rel=1e-5)
  # Its limits: KL(p || q) as the order -> 1, KL(q || p) as it -> 0 (first order in 1 - a).
  assert got["got"]["0.999"] == pytest.approx(got["fkl"], rel=2e-2)
  assert got["got"]["0.001"] == pytest.approx(got["rkl"], rel=2e-2)
  assert got["at_inf"] == pytest.approx(got["want_at_inf"], rel=1e-5)
  assert got["entry"] == "Amari(order=0.5)"
  assert got["error"].startswith("loss.order=1.5 must be in (0, 1)"), got["error"]



def _registered_name(code: str, pattern: str) -> str:
  found = re.search(pattern, code)
  assert found, pattern
  return found.group(1)


@pytest.mark.slow
def test_a_tiny_run_with_all_three(tree, tmp_path):
  """The driver trains and scores with the new divergence, method and task together."""
  found = examples()
  config = found["divergence"][1]
  method = _registered_name(found["method"][2], r'register\(Method\(\s*"(\w+)"')
  task = _registered_name(found["task"][2], r'@register_task\("(\w+)"\)')
  workdir = tmp_path / "run"
  done = subprocess.run(
      [sys.executable, "-m", "skd_jax.main", f"--config={config}:tiny",
       f"--config.method={method}", f"--config.task.name={task}", "--config.loss.order=0.3",
       "--config.max_steps=2", "--config.eval.every_steps=0", "--config.eval.final_limit=4",
       "--config.eval.agreement_batches=0", "--config.checkpoint.every_steps=100",
       "--config.export=False", f"--workdir={workdir}"],
      cwd=tree, env=_env(tree), capture_output=True, text=True, timeout=900, check=False)
  assert done.returncode == 0, done.stderr[-4000:]
  with open(workdir / "result.json", encoding="utf-8") as f:
    result = json.load(f)
  assert result["step"] == 2 and result["final"]["num_examples"] == 4
  assert 0.0 <= result["final"]["exact_match"] <= 1.0
  with open(workdir / "config.json", encoding="utf-8") as f:
    ran = json.load(f)
  assert (ran["method"], ran["task"]["name"], ran["loss"]["divergence"],
          ran["loss"]["order"]) == (method, task, "amari", 0.3)
  with open(workdir / "metrics.jsonl", encoding="utf-8") as f:
    losses = [json.loads(line)["loss"] for line in f if '"train"' in line]
  assert losses and all(np.isfinite(losses)), losses
