"""Grader: extraction with nested braces, numeric forms, sympy under a time limit."""
import time

import pytest

from skd_jax.evaluation import grader


@pytest.mark.parametrize("text, expected", [
    (r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
    (r"\boxed{a} then \boxed{\left\{1, {2}\right\}}", r"\left\{1, {2}\right\}"),
    (r"\boxed{x^{2^{3}}}", "x^{2^{3}}"),
    (r"answer: \boxed 7", "7"),
    (r"\boxed{1", None),
    ("no box", None),
])
def test_last_boxed_content(text, expected):
  assert grader.last_boxed_content(text) == expected


@pytest.mark.parametrize("pred, ref", [
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac{1}{2}", r"\frac12"),
    ("1,000", "1000"),
    ("-2,500.5", "-2500.5"),
    (r"50\%", "50"),      # Convention: p% equals p ...
    ("50%", "0.5"),       # ... and p / 100.
    (r"\text{5 cm}", "5cm"),
    ("x = 3", "3"),
    (r"2\sqrt{2}", r"\sqrt{8}"),           # Needs sympy.
    (r"\frac{x^2-1}{x-1}", "x+1"),        # Needs sympy.
])
def test_math_equal_true(pred, ref):
  assert grader.math_equal(pred, ref, timeout=20)


@pytest.mark.parametrize("pred, ref", [
    ("0.5", "0.6"), ("1,000", "100"), (r"\frac{1}{3}", "0.3"), ("x+2", "x+1"),
    ("", "1"), (r"\sqrt{3}", "2"),
])
def test_math_equal_false(pred, ref):
  assert not grader.math_equal(pred, ref, timeout=20)


def test_boxed_correct_against_solution_reference():
  assert grader.boxed_correct(r"... so \boxed{\dfrac{3}{4}}", r"Thus \boxed{0.75}.")
  assert not grader.boxed_correct("no box here: 0.75", "0.75")


def test_pathological_input_returns_false_within_limit():
  grader.warm_up()  # Worker start-up is not part of the per-query limit.
  limit = 1.0
  start = time.monotonic()
  assert not grader.math_equal("9^{9^{9^9}}", "1", timeout=limit)
  assert time.monotonic() - start < limit + 3.0
  # The worker restarts after being killed and still answers.
  assert grader.math_equal(r"2\sqrt{2}", r"\sqrt{8}", timeout=20)
