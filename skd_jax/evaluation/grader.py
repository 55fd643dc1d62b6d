"""MATH-style answer grading: the last \\boxed{} answer against a reference.

`last_boxed_content(text)` takes the last `\\boxed{...}` or `\\fbox{...}` (whichever
comes last), nested braces kept and escaped braces `\\{ \\}` not counted;
`\\boxed 5` (no braces) gives the word after it; a box that never closes gives
None (the answer was cut off: graded wrong, no fallback to an earlier box).

`math_equal(prediction, reference, timeout=...)` tries, in order:

1. string equality after normalisation (spaces, `\\left`/`\\right`, `\\dfrac` and
   `\\tfrac` -> `\\frac`, `\\frac12` -> `\\frac{1}{2}`, a trailing unit
   `\\text{ cm}` / `\\mbox{..}` / `\\mathrm{..}` dropped, a whole-answer
   `\\text{X}` -> `X`, degrees `^\\circ` / `°`, `$`, a trailing ".", a
   one-letter left side `x = `, set braces `\\{ \\}` -> `{ }`);
2. numeric equality of exact values: "1,000" (thousands separators), "-3.5",
   "\\frac{1}{2}", "3/4", "50%". Two numbers whose decimal expansions
   terminate (integers, "0.5", "1/4") must be EQUAL (so 10001 != 10000 and
   1.0001 != 1); a rounded decimal is accepted for a fraction that does not
   terminate within relative tolerance 1e-4 ("0.3333" == "\\frac13");
3. tuples and intervals element by element: `(a, b)` (or a bare `a, b`)
   against `(c, d)`, `[a, b)` against `[c, d)`; brackets must match and the
   order counts;
4. symbolic equivalence with sympy (`simplify(a - b) == 0`) in a separate
   worker process with a hard time limit: a pathological input such as
   `9^{9^{9^9}}` is abandoned (the worker is killed) and returns False.

Percent convention: a side written with "%" ("50\\%" or "50%") stands for
both its number and that number / 100, so "50%" equals 50 and 0.5 (as in the
Qwen/DeepSeek-Math graders); without a "%" on either side nothing is scaled
(unlike the official SKD grader, which also accepts x100 and /100 of any
reference).
"""

from __future__ import annotations

import fractions
import math
import re

from skd_jax.evaluation.symbolic import DEFAULT_TIMEOUT_S, symbolic_equal, warm_up  # noqa: F401

_REL_TOL = 1e-4


# ----------------------------------------------------------------------------
# Extraction.
# ----------------------------------------------------------------------------


def _closing_brace(text: str, open_index: int) -> int | None:
  """Index of the "}" that closes the "{" at `open_index`; escaped `\\{` `\\}`
  (and `\\\\`) are skipped. None when it never closes."""
  depth, i = 0, open_index
  while i < len(text):
    char = text[i]
    if char == "\\":
      i += 2  # An escaped character (or the first letter of a command).
      continue
    if char == "{":
      depth += 1
    elif char == "}":
      depth -= 1
      if depth == 0:
        return i
    i += 1
  return None


def last_boxed_content(text: str) -> str | None:
  """Content of the last `\\boxed{...}` (or `\\fbox{...}`), nested braces kept.

  `\\boxed 5` or `\\boxed5` (no braces) gives "5" (up to a space or "$").
  None when there is no box, or when the last one never closes.
  """
  start = -1
  for match in re.finditer(r"\\(?:boxed|fbox)(?![a-zA-Z])", text):
    start = match.end()
  if start < 0:
    return None
  rest = text[start:]
  stripped = rest.lstrip()
  if stripped.startswith("{"):
    offset = len(rest) - len(stripped)
    close = _closing_brace(rest, offset)
    return None if close is None else rest[offset + 1:close]
  word = re.match(r"[^\s$]+", stripped)
  return word.group(0) if word else None


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


# A trailing unit: \\text{ cm}, \\mbox{inches}, \\mathrm{m}^2 (letters, spaces, dots).
_UNIT = re.compile(r"\\(?:text|mbox|mathrm)\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\^\{?\d\}?)?\s*$")


def normalize_answer(text: str) -> str:
  """Canonical string form of a final answer (no numeric interpretation)."""
  s = str(text).strip()
  s = s.replace("\n", " ").replace("\\!", "").replace("\\,", "").replace("\\;", "")
  s = s.replace("\\left", "").replace("\\right", "")
  s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
  s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\circ", "")
  s = s.replace("\\degree", "").replace("°", "").replace("\\$", "").replace("$", "")
  s = _UNIT.sub("", s).strip() or s  # "5\\text{ cm}^2" -> "5"; "\\text{cm}" stays.
  for command in ("text", "textbf", "mathrm", "mbox"):
    s = _strip_wrapper(s, command)
  s = s.replace("\\%", "%").replace(" ", "")
  s = re.sub(r"^[a-zA-Z]\s*=", "", s)  # "x=5" -> "5".
  s = s.rstrip(".")
  # "\frac12" -> "\frac{1}{2}"; "\sqrt2" -> "\sqrt{2}".
  s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
  s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
  return s.replace("\\{", "{").replace("\\}", "}")  # Set braces: "\\{1,2\\}" -> "{1,2}".


_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_DECIMAL = re.compile(r"^-?(\d+\.?\d*|\.\d+)(e-?\d{1,3})?$")  # "1e99999": not here.
_FRAC = re.compile(r"^(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}$")
_SLASH = re.compile(r"^(-?[\d.]+)/(-?[\d.]+)$")


def _decimal(s: str) -> fractions.Fraction | None:
  if not _DECIMAL.match(s):
    return None
  try:
    return fractions.Fraction(s)
  except ValueError:  # More digits than Python converts (sys.get_int_max_str_digits).
    return None


def parse_exact(text: str) -> fractions.Fraction | None:
  """The exact value of a plain number in `text` (already normalised), or None.

  Reads "1,000", "-3.5", "1e-3", "\\frac{1}{2}", "-\\frac{1}{2}", "3/4" and
  "50%" (-> 50; see the module docstring for how percentages are compared).
  """
  s = text[:-1] if text.endswith("%") else text
  if _THOUSANDS.match(s):
    s = s.replace(",", "")
  sign = 1
  match = _FRAC.match(s) or _SLASH.match(s)
  if match is None:
    return _decimal(s)
  if match.re is _FRAC:
    sign = -1 if match.group(1) else 1
    num, den = match.group(2), match.group(3)
  else:
    num, den = match.group(1), match.group(2)
  num, den = _decimal(num), _decimal(den)
  if num is None or not den:
    return None
  return sign * num / den


def parse_number(text: str) -> float | None:
  """`parse_exact` as a float (None when `text` is not a plain number)."""
  value = parse_exact(text)
  return None if value is None else float(value)


def _terminates(value: fractions.Fraction) -> bool:
  """Whether the decimal expansion of `value` is finite (denominator 2^a 5^b)."""
  den = value.denominator
  for prime in (2, 5):
    while den % prime == 0:
      den //= prime
  return den == 1


def numbers_equal(x: fractions.Fraction, y: fractions.Fraction) -> bool:
  """Exact equality, except that a rounded decimal may stand for a fraction whose
  decimal expansion does not terminate (relative tolerance 1e-4)."""
  if x == y:
    return True
  if _terminates(x) and _terminates(y):
    return False
  try:
    return numbers_close(float(x), float(y))
  except OverflowError:
    return False


def numbers_close(a: float, b: float) -> bool:
  return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=1e-9)


def _top_level_parts(s: str) -> list[str]:
  """`s` split at the commas outside any brackets."""
  parts, depth, last = [], 0, 0
  for i, char in enumerate(s):
    if char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    elif char == "," and depth == 0:
      parts.append(s[last:i])
      last = i + 1
  return parts + [s[last:]]


def _as_tuple(s: str) -> tuple[str, list[str]] | None:
  """("()", parts) for "(a,b)" or a bare "a,b"; ("[)", parts) for "[a,b)"; None
  when `s` is not a sequence of at least two elements."""
  brackets = "()"
  if len(s) >= 2 and s[0] in "([{" and s[-1] in ")]}":
    inner = s[1:-1]
    depth = 0
    for char in inner:  # The outer pair must enclose everything: not "(a)+(b)".
      depth += (char in "([{") - (char in ")]}")
      if depth < 0:
        break
    if depth == 0:
      brackets, s = s[0] + s[-1], inner
  parts = _top_level_parts(s)
  return (brackets, parts) if len(parts) >= 2 else None


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
  x, y = parse_exact(a), parse_exact(b)
  if x is not None and y is not None:
    xs = [x, x / 100] if a.endswith("%") else [x]
    ys = [y, y / 100] if b.endswith("%") else [y]
    return any(numbers_equal(u, v) for u in xs for v in ys)
  # A number ("1,000") must not be read as a tuple below or by sympy.
  if x is not None:
    a = str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
  if y is not None:
    b = str(y.numerator) if y.denominator == 1 else f"{y.numerator}/{y.denominator}"
  ta, tb = _as_tuple(a) if x is None else None, _as_tuple(b) if y is None else None
  if ta is not None or tb is not None:
    if ta is None or tb is None or ta[0] != tb[0] or len(ta[1]) != len(tb[1]):
      return False
    return all(math_equal(p, q, timeout, use_sympy) for p, q in zip(ta[1], tb[1]))
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
