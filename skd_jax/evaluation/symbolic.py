"""Symbolic equality of two answers with sympy, in a killable worker process.

`symbolic_equal(a, b, timeout)` asks a spawned worker whether
`simplify(a - b) == 0`; a query over its time limit kills the worker (it is
restarted on the next query), so a pathological input such as `9^{9^{9^9}}`
cannot hang the grader. Used by `grader.math_equal` as its last step.
"""

from __future__ import annotations

import multiprocessing
import re
import threading
import time

DEFAULT_TIMEOUT_S = 5.0


def latex_to_sympy_text(s: str) -> str:
  """A LaTeX answer as text for `sympy.parse_expr` (common constructs only)."""
  s = s.replace("\\cdot", "*").replace("\\times", "*").replace("\\pi", "pi")
  for _ in range(8):  # Nested fractions/roots: innermost first.
    s2 = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
    s2 = re.sub(r"\\sqrt\[([^{}]*)\]\{([^{}]*)\}", r"((\2)**(1/(\1)))", s2)
    s2 = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s2)
    if s2 == s:
      break
    s = s2
  s = s.replace("^", "**").replace("{", "(").replace("}", ")").replace("\\", "")
  return s.rstrip("%")


def _sympy_equal(a: str, b: str) -> bool:
  """Runs in the worker: parse both and test simplify(a - b) == 0."""
  import sympy  # pylint: disable=g-import-not-at-top
  from sympy.parsing import sympy_parser  # pylint: disable=g-import-not-at-top
  transformations = (sympy_parser.standard_transformations
                     + (sympy_parser.implicit_multiplication_application,))
  try:
    x = sympy_parser.parse_expr(latex_to_sympy_text(a), transformations=transformations)
    y = sympy_parser.parse_expr(latex_to_sympy_text(b), transformations=transformations)
    if x == y:
      return True
    return bool(sympy.simplify(x - y) == 0)
  except Exception:  # pylint: disable=broad-except  # Unparseable = not equal.
    return False


def _worker_loop(connection) -> None:
  import sympy  # pylint: disable=g-import-not-at-top,unused-import  # Warm up once.
  connection.send("ready")
  while True:
    try:
      a, b = connection.recv()
    except EOFError:
      return
    connection.send(_sympy_equal(a, b))


class SympyWorker:
  """A spawned process that answers symbolic-equality queries, killed and
  restarted whenever one query exceeds its time limit (so nothing can hang)."""

  def __init__(self, startup_timeout: float = 60.0):
    self._startup_timeout = startup_timeout
    self._process = None
    self._connection = None
    self._lock = threading.Lock()

  def _start(self) -> None:
    # "spawn": forking a process that runs JAX threads is unsafe.
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    self._process = context.Process(target=_worker_loop, args=(child,), daemon=True)
    self._process.start()
    child.close()
    deadline = time.monotonic() + self._startup_timeout
    while not parent.poll(0.2):
      if not self._process.is_alive() or time.monotonic() > deadline:
        died = not self._process.is_alive()
        self._kill()
        raise RuntimeError(
            "The sympy grader worker " + ("exited at start-up (a script that grades "
            "must keep its entry point under `if __name__ == \"__main__\":`)"
            if died else f"did not start within {self._startup_timeout}s") + ".")
    parent.recv()
    self._connection = parent

  def _kill(self) -> None:
    if self._process is not None:
      self._process.kill()
      self._process.join(timeout=5)
    self._process, self._connection = None, None

  def start(self) -> None:
    """Starts the worker now (otherwise on the first query)."""
    with self._lock:
      if self._process is None or not self._process.is_alive():
        self._start()

  def equal(self, a: str, b: str, timeout: float) -> bool:
    """simplify(a - b) == 0, or False after `timeout` seconds."""
    with self._lock:
      if self._process is None or not self._process.is_alive():
        self._start()
      self._connection.send((a, b))
      if self._connection.poll(timeout):
        try:
          return bool(self._connection.recv())
        except EOFError:  # The worker died on this query (e.g. out of memory).
          pass
      self._kill()  # The query is stuck: abandon the whole process.
      return False

  def close(self) -> None:
    with self._lock:
      self._kill()


_WORKER = SympyWorker()


def symbolic_equal(a: str, b: str, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
  """Symbolic equivalence of two normalised answers under a hard time limit."""
  return _WORKER.equal(a, b, timeout)


def warm_up() -> None:
  """Starts the sympy worker (its start-up is not charged to any query)."""
  _WORKER.start()
