"""The package's shape: small modules and an acyclic import graph.

Both checks read the source with `ast` (nothing is imported), so they see lazy
function-level imports too: a cycle hidden inside a function still ties two
modules into one unit a reader cannot understand, test or change alone.
"""
import ast
import os

import pytest

PACKAGE = "skd_jax"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)
MAX_LINES = 400


def _modules() -> dict[str, str]:
  """Dotted module name -> file path, for every .py file of the package."""
  out = {}
  for folder, _, files in os.walk(ROOT):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].split(os.sep)
        if rel[-1] == "__init__":
          rel = rel[:-1]
        out[".".join(rel)] = path
  return out


def _imported(module: str, path: str, known: set[str]) -> set[str]:
  """Package modules `module` imports anywhere in its file (lazy imports too).

  `from a.b import c` is an edge to `a.b.c` when that is a module, else to
  `a.b` (c is a name defined there); parent packages are not added (every
  module would then depend on `skd_jax/__init__.py`).
  """
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  is_package = path.endswith("__init__.py")
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names if alias.name in known)
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # Relative: resolve against this module's package.
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
      else:
        target = node.module or ""
      for alias in node.names:
        full = f"{target}.{alias.name}"
        if full in known:
          out.add(full)
        elif target in known:
          out.add(target)
  out.discard(module)
  return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  known = set(modules)
  return {m: _imported(m, p, known) for m, p in modules.items()}


def test_the_cycle_finder_finds_cycles():
  """The checker itself can fail: a planted two-module cycle and a chain."""
  assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_lazy_imports(tmp_path):
  path = tmp_path / "m.py"
  path.write_text("def f():\n  from skd_jax.train import loop\n  import skd_jax.plan\n")
  known = {"skd_jax.train.loop", "skd_jax.plan", "skd_jax.train"}
  assert _imported("skd_jax.m", str(path), known) == {"skd_jax.train.loop", "skd_jax.plan"}


def test_no_module_over_the_line_limit():
  too_long = {}
  for name, path in _modules().items():
    with open(path, encoding="utf-8") as f:
      lines = sum(1 for _ in f)
    if lines > MAX_LINES:
      too_long[name] = lines
  assert not too_long, (f"modules over {MAX_LINES} lines (split them into one-idea "
                        f"modules): {dict(sorted(too_long.items()))}")


def test_no_import_cycle():
  cycles = _cycles(_graph())
  assert not cycles, ("import cycles (lazy imports included); move the shared piece "
                      f"into a lower module: {cycles}")


if __name__ == "__main__":
  pytest.main([__file__, "-q"])
