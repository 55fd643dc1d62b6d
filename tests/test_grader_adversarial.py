"""MATH \\boxed{} grading on adversarial strings (each case pins one outcome)."""
import pytest

from skd_jax.evaluation import grader


@pytest.mark.parametrize("text, expected", [
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),                    # Nested braces.
    (r"so $\boxed{\dfrac{a+b}{\sqrt{2}}}$.", r"\dfrac{a+b}{\sqrt{2}}"),
    (r"\boxed 5", "5"),                                          # No braces.
    (r"is $\boxed 12$.", "12"),
    (r"\boxed5", "5"),
    (r"\boxed {5}", "5"),                                        # Space before the brace.
    (r"\fbox{7}", "7"),
    (r"\boxed{1} or rather \boxed{2}", "2"),                     # The last box counts ...
    (r"\fbox{1} then \boxed{2}", "2"),
    (r"\boxed{1} then \fbox{2}", "2"),                           # ... whichever command.
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),                          # Escaped braces ...
    (r"\boxed{a \} b}", r"a \} b"),                              # ... are not counted.
    (r"\boxed{\frac{1}{2}", None),                               # Unbalanced: never closes.
    (r"\boxed{1} and finally \boxed{2", None),                   # Cut off: no fallback.
    (r"\boxed{3}}", "3"),                                        # An extra "}" after.
    (r"\boxed{}", ""),                                           # Empty box.
    (r"\boxedsymbol{3}", None),                                  # Another command.
    ("no box at all: 5", None),
])
def test_last_boxed_content_adversarial(text, expected):
  assert grader.last_boxed_content(text) == expected


@pytest.mark.parametrize("pred, ref", [
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"\tfrac{3}{4}", ".75"),
    ("0.5", r"\frac12"),
    (r"\dfrac12", "1/2"),
    (r"-\frac{1}{2}", "-0.5"),
    (r"\frac{-1}{2}", "-0.5"),
    ("0.3333", r"\frac{1}{3}"),              # Rounded decimal for a non-terminating fraction.
    ("5.", "5"),
    ("3.0", "3"),
    ("1,000", "1000"),
    (r"5\text{ cm}", "5"),                   # Units in \text{} are dropped ...
    (r"5 \text{ cm}", r"5\text{cm}"),
    (r"10\text{ inches}^2", "10"),
    (r"4\mbox{ m}", "4"),
    (r"\text{Monday}", "Monday"),            # ... but a whole-answer \text{} is kept.
    (r"\left( 1,2 \right)", "(1,2)"),        # Tuples.
    (r"\left( \frac{1}{2}, 3 \right)", "(0.5, 3)"),
    ("1, 2", "(1,2)"),                       # A bare list is a tuple.
    (r"\left[ 0, \frac12 \right)", "[0,0.5)"),
    (r"\{1,2\}", "{1, 2}"),
    ("x = 5", "5"),
    ("y=2x+1", "2x+1"),
    (r"90^\circ", "90"),
    (r"90^{\circ}", "90"),
    ("90°", "90"),
    (r"50\%", "50"),                         # p% equals p ...
    ("50%", "0.5"),                          # ... and p / 100.
    ("2", r"200\%"),
    (r"\$5", "5"),
    (r"\sqrt2", r"\sqrt{2}"),
])
def test_math_equal_adversarial_true(pred, ref):
  assert grader.math_equal(pred, ref, timeout=20)


@pytest.mark.parametrize("pred, ref", [
    ("10001", "10000"),                      # Integers exactly (1e-4 tolerance would accept).
    ("1.0001", "1"),                         # Terminating decimals exactly.
    ("0.333", r"\frac{1}{3}"),               # Too coarse a rounding.
    ("50%", "5000"),                         # Percent scales by 1/100 only, never x100.
    ("500", "5"),                            # No percent sign: nothing scaled.
    ("1,0", "1,000"),                        # A tuple is not the number 1000.
    ("1,2", "12"),
    (r"\left( 1,2 \right)", "(2,1)"),        # Order counts.
    ("[1,2]", "(1,2)"),                      # Closed vs open interval.
    ("(1,2,3)", "(1,2)"),
    ("(1,2)", "3"),
    ("x = 5", "6"),
    (r"5\text{ cm}", "6"),
    (r"\frac{1}{2}", r"\frac{1}{3}"),
    ("-5", "5"),
    (r"90^\circ", "45"),
    ("", "0"),                               # Empty answer.
    ("", ""),
])
def test_math_equal_adversarial_false(pred, ref):
  assert not grader.math_equal(pred, ref, timeout=20)


@pytest.mark.parametrize("completion, reference, correct", [
    (r"So the answer is $\boxed{\frac{1}{2}}$.", "0.5", True),
    (r"first \boxed{1}, then corrected: \boxed{2}", "2", True),
    (r"first \boxed{2}, then corrected: \boxed{1}", "2", False),
    (r"\boxed{}", "0", False),
    (r"\boxed{\frac{1}{2}", "0.5", False),  # Unbalanced: wrong.
    ("The answer is 0.5", "0.5", False),    # No box: wrong.
    (r"\boxed 5", r"Hence \boxed{5}.", True),
    (r"\fbox{5}", "5", True),
    (r"\boxed{5\text{ cm}}", r"\boxed{5}", True),
])
def test_boxed_correct_adversarial(completion, reference, correct):
  assert grader.boxed_correct(completion, reference, timeout=20) == correct


@pytest.mark.parametrize("text, value", [
    ("1,000", 1000), ("-2,500.5", -2500.5), (r"\frac{3}{4}", 0.75), (r"-\frac{1}{4}", -0.25),
    ("3/4", 0.75), ("50%", 50), ("1e-3", 0.001), ("1/0", None), ("1,00", None), ("abc", None),
    ("1e99999999", None),   # Would take forever as an exact value: left to sympy's time limit.
    ("1" * 5000, None),     # Past Python's int-conversion digit limit: no crash.
])
def test_parse_number(text, value):
  assert grader.parse_number(text) == value
