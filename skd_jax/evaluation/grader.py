"""MATH-style answer grading: the last \\boxed{} answer against a reference.

`math_equal(prediction, reference, timeout=...)` tries, in order:

1. string equality after normalisation (spaces, `\\left`/`\\right`, `\\dfrac` and
   `\\tfrac` -> `\\frac`, `\\text{...}` units, `^\\circ`, `$`, trailing ".");
2. numeric equality (relative tolerance 1e-4) after reading thousands
   separators ("1,000" -> 1000), LaTeX fractions ("\\frac{1}{2}" -> 0.5) and
   percentages;
3. symbolic equivalence with sympy (`simplify(a - b) == 0`) in a separate
   worker process with a hard time limit: a pathological input such as
   `9^{9^{9^9}}` is abandoned (the worker is killed) and returns False.

Percent convention: "50\\%" (or "50%") equals 50 AND 0.5: the percent sign is
stripped and the reference is also compared after dividing / multiplying by
100, as in the widely used Qwen/DeepSeek-Math graders.
"""

from __future__ import annotations

import math
import multiprocessing
import re
import threading

DEFAULT_TIMEOUT_S = 5.0
_REL_TOL = 1e-4


# ----------------------------------------------------------------------------
# Extraction.
# ----------------------------------------------------------------------------


def last_boxed_content(text: str) -> str | None:
  """Content of the last `\\boxed{...}` (or `\\fbox{...}`), nested braces kept.

  `\\boxed 5` (no braces) gives "5". None when there is no complete box.
  """
  start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
  if start < 0:
    return None
  rest = text[start:]
  rest = rest[len("\\boxed"):] if rest.startswith("\\boxed") else rest[len("\\fbox"):]
  if rest.startswith(" "):
    return rest.strip().split("$")[0].split()[0] if rest.strip() else None
  if not rest.startswith("{"):
    return None
  depth = 0
  for i, char in enumerate(rest):
    if char == "{":
      depth += 1
    elif char == "}":
      depth -= 1
      if depth == 0:
        return rest[1:i]
  return None  # Unbalanced braces: the box never closes.


def _strip_wrapper(text: str, command: str) -> str:
  """Replaces `\\command{X}` by `X`, respecting nested braces."""
  out, i = [], 0
  token = "\\" + command + "{"
  while True:
    j = text.find(token, i)
    if j < 0:
      out.append(text[i:])
      return "".join(out)
    out.append(text[i:j])
    depth, k = 0, j + len(token) - 1
    for k in range(j + len(token) - 1, len(text)):
      depth += {"{": 1, "}": -1}.get(text[k], 0)
      if depth == 0:
        break
    out.append(text[j + len(token):k])
    i = k + 1


def normalize_answer(text: str) -> str:
  """Canonical string form of a final answer (no numeric interpretation)."""
  s = str(text).strip()
  s = s.replace("\n", " ").replace("\\!", "").replace("\\,", "").replace("\\;", "")
  s = s.replace("\\left", "").replace("\\right", "")
  s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
  s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\$", "").replace("$", "")
  for command in ("text", "textbf", "mathrm", "mbox"):
    s = _strip_wrapper(s, command)
  s = s.replace("\\%", "%").replace(" ", "")
  s = re.sub(r"^[a-zA-Z]\s*=", "", s)  # "x=5" -> "5".
  s = s.rstrip(".")
  # "\frac12" -> "\frac{1}{2}"; "\sqrt2" -> "\sqrt{2}".
  s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
  s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
  return s


_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_FRAC = re.compile(r"^(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}$")


def parse_number(text: str) -> float | None:
  """A plain number in `text` (already normalised), or None.

  Reads "1,000", "-3.5", "\\frac{1}{2}", "3/4", "50%" (-> 50; see the module
  docstring for how percentages are compared).
  """
  s = text.rstrip("%")
  if _THOUSANDS.match(s):
    s = s.replace(",", "")
  match = _FRAC.match(s)
  if match:
    sign, num, den = match.groups()
    value = float(num) / float(den) if float(den) != 0 else None
    return None if value is None else (-value if sign else value)
  match = re.match(r"^(-?[\d.]+)/(-?[\d.]+)$", s)
  if match:
    den = float(match.group(2)) if _is_float(match.group(2)) else 0.0
    return float(match.group(1)) / den if den and _is_float(match.group(1)) else None
  return float(s) if _is_float(s) else None


def _is_float(s: str) -> bool:
  try:
    float(s)
  except ValueError:
    return False
  return bool(re.match(r"^-?(\d+\.?\d*|\.\d+)(e-?\d+)?$", s))


def numbers_close(a: float, b: float) -> bool:
  return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=1e-9)


# ----------------------------------------------------------------------------
# Symbolic check in a killable worker process.
# ----------------------------------------------------------------------------


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
    if not parent.poll(self._startup_timeout):
      self._kill()
      raise RuntimeError("The sympy grader worker did not start within "
                         f"{self._startup_timeout}s.")
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
        return bool(self._connection.recv())
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


# ----------------------------------------------------------------------------
# Top level.
# ----------------------------------------------------------------------------


def math_equal(prediction: str, reference: str, timeout: float = DEFAULT_TIMEOUT_S,
               use_sympy: bool = True) -> bool:
  """Whether two final answers are mathematically equal (see module docstring)."""
  if prediction is None or reference is None:
    return False
  a, b = normalize_answer(prediction), normalize_answer(reference)
  if not a or not b:
    return False
  if a == b:
    return True
  x, y = parse_number(a), parse_number(b)
  if x is not None and y is not None:
    candidates = [y]
    if a.endswith("%") or b.endswith("%"):
      candidates += [y / 100, y * 100]
    return any(numbers_close(x, c) for c in candidates)
  if not use_sympy:
    return False
  return symbolic_equal(a, b, timeout)


def boxed_correct(completion: str, reference: str,
                  timeout: float = DEFAULT_TIMEOUT_S) -> bool:
  """Whether the completion's last \\boxed{} equals the reference answer.

  `reference` may be a bare answer or a full solution containing \\boxed{}.
  """
  predicted = last_boxed_content(completion)
  if predicted is None:
    return False
  boxed_reference = last_boxed_content(reference)
  return math_equal(predicted, boxed_reference if boxed_reference is not None else reference,
                    timeout)
