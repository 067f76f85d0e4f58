"""Tests of train/rewards_math.py: agreement with the reference grader, our fixes, robustness, TRL wrappers.

The reference vectors are tests/fixtures/r1_zero_vectors_dev.jsonl (see tests/fixtures/README.md).
"""

from __future__ import annotations

import doctest
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import train.rewards_math as rm
from train.rewards_math import (
    Grade,
    answer_reward,
    classify,
    classify_batch,
    extract_boxed,
    extract_gold,
    format_reward,
    grade_batch,
    r1_zero_reward_fn,
    timeout_count,
)

VECTORS = Path(__file__).resolve().parent / "fixtures/r1_zero_vectors_dev.jsonl"


def wrap(answer: str) -> str:
    return f"Let me think. </think> <answer> {answer} </answer>"


# --------------------------------------------------------------------------------------------------
# Agreement with the reference grader (CS336 r1_zero_reward_fn) on its recorded vectors


# Quirk cases where we deliberately differ from the reference: our answer_reward, and why it is right.
QUIRK_FIXES = {
    "quirk-0002": (0.0, "cube root of 8 is 2, not 2*sqrt(2): the reference drops the root index"),
    "quirk-0003": (0.0, "cube root of 2 is not sqrt(2)"),
    "quirk-0005": (0.0, "x + 1/2 is not (x+1)/2: the reference loses the numerator grouping"),
    "quirk-0006": (0.0, "1/(x+1) is not 1/x + 1"),
    "quirk-0007": (0.0, "(3+sqrt5)/2 is not 3 + sqrt5/2"),
    "quirk-0011": (1.0, "(2x+2)/4 == (x+1)/2"),
    "quirk-0014": (0.0, "'5 or 6' hedges between two answers; the reference drops everything after \\text{ "),
    "quirk-0020": (0.0, "'5 less' is a relative statement; 'less' is not a unit"),
    "quirk-0025": (0.0, "'1 2' is not twelve"),
    "quirk-0030": (1.0, "sin(pi/6) == 1/2 (gold is not an integer, so symbolic equality applies)"),
    "quirk-0039": (1.0, "a bare comma list is a set of solutions: order does not matter"),
    "quirk-0048": (1.0, "\\frac{x+1}{2} == (x+1)/2"),
    "quirk-0049": (1.0, "x/2 + 1/2 == (x+1)/2"),
}

# Cases outside `quirk` where we knowingly disagree with the reference (docs/grader.md explains each).
DOCUMENTED_DEVIATIONS = {
    "equiv-0010": "2/4 accepted for 1/2: equal values; the issue asks for it",
    "equiv-0011": "\\frac{2}{4} accepted for 1/2: equal values",
    "equiv-0022": "\\frac{1}{3} accepted for the unreduced gold \\frac{2}{6}: equal values",
    "equiv-0038": "'5\\ \\text{dollars}' is 5 with a unit, as is '5 \\text{ dollars}' (reference: yes)",
    "equiv-0087": "'1, 2' for '2, 1': a list of solutions is a set",
    "format-0043": "an empty gold is no gold: nothing earns 1.0 against it",
    "format-0044": "'\\boxed{}' as the answer to an empty gold: the same",
}


@pytest.fixture(scope="module")
def vectors() -> list[tuple[dict, Grade]]:
    rows = [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]
    assert len(rows) == 496
    grades = classify_batch([r["response"] for r in rows], [r["ground_truth"] for r in rows], timeout_s=5.0)
    return list(zip(rows, grades, strict=True))


def _agreement(pairs: list[tuple[dict, Grade]], key: str) -> float:
    return sum(getattr(g, key) == r["expected"][key] for r, g in pairs) / len(pairs)


def test_format_reward_agrees_everywhere(vectors):
    assert [r["id"] for r, g in vectors if g.format_reward != r["expected"]["format_reward"]] == []


def test_answer_reward_agreement_thresholds(vectors):
    outside = [(r, g) for r, g in vectors if r["group"] != "quirk"]
    math500 = [(r, g) for r, g in vectors if r["group"] == "math500"]
    assert _agreement(outside, "answer_reward") >= 0.97
    assert _agreement(math500, "answer_reward") >= 0.995


def test_reward_equals_answer_reward(vectors):
    assert all(g.reward == g.answer_reward for _, g in vectors)
    assert all(g.answer_reward <= g.format_reward for _, g in vectors)  # format only gates


def test_remaining_disagreements_are_documented(vectors):
    disagree = {
        r["id"]
        for r, g in vectors
        if r["group"] != "quirk" and g.answer_reward != r["expected"]["answer_reward"]
    }
    assert disagree <= set(DOCUMENTED_DEVIATIONS), sorted(disagree - set(DOCUMENTED_DEVIATIONS))


@pytest.mark.parametrize("case_id", sorted(QUIRK_FIXES))
def test_quirk_fixes_are_right(vectors, case_id):
    expected, why = QUIRK_FIXES[case_id]
    (grade,) = [g for r, g in vectors if r["id"] == case_id]
    assert grade.answer_reward == expected, why


def test_other_quirks_agree_with_reference(vectors):
    # The rest of the quirk group is behaviour we keep on purpose (e.g. "(5)" == 5, "12 men" == 12).
    rest = [(r, g) for r, g in vectors if r["group"] == "quirk" and r["id"] not in QUIRK_FIXES]
    assert [r["id"] for r, g in rest if g.answer_reward != r["expected"]["answer_reward"]] == []


# --------------------------------------------------------------------------------------------------
# Equivalence rules, table-driven: (answer inside the tags, gold, expected answer_reward)

EQUIV_CASES = [
    # fractions and decimals
    pytest.param("2/4", "\\frac12", 1.0, id="unreduced-slash-vs-frac"),  # equal values (the example)
    pytest.param("\\frac{2}{4}", "0.5", 1.0, id="unreduced-frac-vs-decimal"),  # exact rational comparison
    pytest.param("\\frac13", "0.333", 0.0, id="third-vs-truncated-decimal"),  # 0.333 is not 1/3
    pytest.param("\\dfrac{3}{4}", "0.75", 1.0, id="dfrac-vs-decimal"),  # dfrac is frac
    pytest.param("-\\frac12", "-0.5", 1.0, id="negative-frac"),  # sign outside the fraction
    pytest.param("3 1/2", "\\frac72", 1.0, id="ascii-mixed-number"),  # "3 1/2" is three and a half
    pytest.param("-2\\frac{1}{2}", "-2.5", 1.0, id="negative-mixed-number"),  # -(2 + 1/2), not -2 + 1/2
    pytest.param("\\frac{1}{2}", "\\frac{1}{3}", 0.0, id="different-fractions"),  # plainly wrong
    # integers: the reference's rule, an integer gold needs an integer-looking answer
    pytest.param("5.0", "5", 1.0, id="int-with-trailing-zero"),  # 5.0 is an integer
    pytest.param("1,000", "1000", 1.0, id="thousands-comma"),  # comma grouping
    pytest.param("1.5e3", "1500", 1.0, id="e-notation"),  # a number literal
    pytest.param("10+5", "15", 0.0, id="int-gold-unevaluated-sum"),  # not simplified
    pytest.param("10^3", "1000", 0.0, id="int-gold-power"),  # not simplified
    pytest.param("5.001", "5", 0.0, id="int-gold-close-decimal"),  # no tolerance
    pytest.param("52_8", "42", 0.0, id="base-subscript-is-not-528"),  # 52_8 is not float("52_8")
    # units, text, formatting
    pytest.param("5 \\text{ cm}", "5", 1.0, id="text-unit"),  # trailing \text unit
    pytest.param("12 square feet", "12", 1.0, id="unit-words"),  # two unit words
    pytest.param("5 bananas", "5", 0.0, id="unknown-noun"),  # not a unit we know (reference agrees)
    pytest.param("90^\\circ", "90", 1.0, id="degrees"),  # ^\circ dropped
    pytest.param("\\$5.00", "5", 1.0, id="dollars"),  # \$ dropped
    pytest.param("50\\%", "50", 1.0, id="percent-sign"),  # the % sign is dropped, as the reference does
    pytest.param("0.5", "50\\%", 0.0, id="percent-not-converted"),  # ... so 50% is 50, not 0.5
    pytest.param("\\text{Yes}", "YES", 1.0, id="text-case-insensitive"),  # text answers ignore case
    pytest.param("x = 5", "5", 1.0, id="short-assignment"),  # "x = " prefix dropped
    pytest.param("\\boxed{\\boxed{7}}", "7", 1.0, id="nested-box"),  # boxes unwrapped
    pytest.param("\\left[ -3, 5 \\right]", "[-3,5]", 1.0, id="left-right"),  # \left \right dropped
    # tuples, intervals, lists, matrices
    pytest.param("(1,3)", "[1,3]", 0.0, id="open-vs-closed-interval"),  # brackets matter
    pytest.param("(2,1)", "(1,2)", 0.0, id="ordered-pair-swapped"),  # tuples are ordered
    pytest.param("(1,2)", "1,2", 0.0, id="tuple-vs-solution-list"),  # different objects
    pytest.param("3, -1", "-1, 3", 1.0, id="solution-list-any-order"),  # a set of solutions
    pytest.param("1 \\text{ and } 2", "1,2", 1.0, id="and-list"),  # "and" separates a list
    pytest.param("5 \\text{ or } 6", "5", 0.0, id="hedged-answer"),  # two answers are not one
    pytest.param(
        "\\begin{bmatrix} 1/5 \\\\ 2 \\end{bmatrix}",
        "\\begin{pmatrix} \\frac15 \\\\ 2 \\end{pmatrix}",
        1.0,
        id="matrix-entries",
    ),  # entry-wise, bmatrix is pmatrix
    pytest.param(
        "\\begin{pmatrix} 1 & 2 \\end{pmatrix}",
        "\\begin{pmatrix} 2 & 1 \\end{pmatrix}",
        0.0,
        id="matrix-order",
    ),  # entries in place
    # symbolic (worker processes)
    pytest.param("\\sqrt{12}", "2\\sqrt{3}", 1.0, id="radical-simplified"),  # sympy
    pytest.param("x^2+2x+1", "(x+1)^2", 1.0, id="expanded-vs-factored"),  # sympy
    pytest.param("\\frac{x+1}{2}", "x+\\frac12", 0.0, id="frac-grouping"),  # the reference said yes
    pytest.param("\\sqrt[3]{8}", "2\\sqrt2", 0.0, id="cube-root-index"),  # the reference said yes
    pytest.param("\\sqrt[3]{8}", "2", 0.0, id="int-gold-cube-root"),  # integer gold: not simplified
    pytest.param("3.4641", "2\\sqrt{3}", 0.0, id="decimal-approximation"),  # decimals compare exactly
    pytest.param("q-p", "p-q", 0.0, id="sign-flip"),  # sympy says no
    pytest.param("ab", "ba", 0.0, id="words-not-products"),  # letters are text here, not a*b
    pytest.param("π", "\\pi", 0.0, id="unicode-not-interpreted"),  # like the reference
    pytest.param("5x - 7y = 1", "5x-7y=1", 1.0, id="equation-as-string"),  # equations: strings only
    pytest.param("", "", 0.0, id="empty-vs-empty"),  # an empty gold is no gold (the reference said 1.0)
    pytest.param("", "5 =", 0.0, id="gold-empty-once-normalised"),  # "5 =" keeps nothing after the "="
]


@pytest.mark.parametrize(("answer", "gold", "expected"), EQUIV_CASES)
def test_equivalence(answer, gold, expected):
    assert r1_zero_reward_fn(wrap(answer), gold)["answer_reward"] == expected


# --------------------------------------------------------------------------------------------------
# The classes where the reference and we used to disagree, table-driven with cases of our own (not the
# vectors'). Expected is the reference's verdict, checked against it, except where a comment says
# "reference: X; deliberate" (docs/grader.md says why).

CLASS_CASES = [
    # thousands separators: {,} and a space between groups of three
    pytest.param("25{,}000", "25000", 1.0, id="thousands-latex-comma"),  # LaTeX's thousands comma
    pytest.param("4096", "4{,}096", 1.0, id="thousands-latex-comma-gold"),  # also in the gold
    pytest.param("3{,}141{,}592", "3141592", 1.0, id="thousands-latex-comma-groups"),  # every group
    pytest.param("7{,}500", "7,500", 1.0, id="thousands-latex-comma-vs-comma"),  # one number, two spellings
    pytest.param("31{,}4", "314", 0.0, id="thousands-latex-comma-not-a-group"),  # not a group of three
    pytest.param("25 000", "25000", 1.0, id="thousands-space"),  # a space between groups of three
    pytest.param("86400", "86 400", 1.0, id="thousands-space-gold"),  # also in the gold
    pytest.param("2 718 281", "2718281", 1.0, id="thousands-space-groups"),  # every group
    pytest.param("1 609.34", "1609.34", 1.0, id="thousands-space-decimals"),  # a decimal part after them
    pytest.param("25 001", "25000", 0.0, id="thousands-space-wrong"),  # still compared by value
    pytest.param("3 14", "314", 0.0, id="thousands-space-not-a-group"),  # reference: 1; deliberate ("1 2")
    pytest.param("25\\,000", "25000", 0.0, id="thousands-thin-space"),  # the reference does not read \,
    # inf and pi written as words
    pytest.param("inf", "\\infty", 1.0, id="word-inf"),  # inf is \infty
    pytest.param("-inf", "-\\infty", 1.0, id="word-minus-inf"),  # with a sign
    pytest.param("[3, inf)", "[3,\\infty)", 1.0, id="word-inf-interval"),  # inside an interval
    pytest.param("\\infty", "inf", 1.0, id="word-inf-gold"),  # also in the gold
    pytest.param("infinity", "\\infty", 0.0, id="word-infinity"),  # only "inf", as in the reference
    pytest.param("pi", "\\pi", 1.0, id="word-pi"),  # pi is \pi
    pytest.param("8pi", "8\\pi", 1.0, id="word-pi-multiple"),  # a multiple
    pytest.param("5pi/6", "\\frac{5\\pi}{6}", 1.0, id="word-pi-fraction"),  # compared symbolically
    pytest.param("PI", "\\pi", 1.0, id="word-pi-upper-case"),  # text is case-insensitive
    pytest.param("3pi", "2\\pi", 0.0, id="word-pi-wrong"),  # still compared by value
    pytest.param("pie", "\\pi", 0.0, id="word-pi-inside-a-word"),  # only the whole word
    # a trailing unit, am/pm
    pytest.param("4 pm", "4", 1.0, id="unit-pm"),  # a time of day
    pytest.param("9 am", "9", 1.0, id="unit-am"),
    pytest.param("6:15 pm", "6:15", 1.0, id="unit-pm-minutes"),  # with minutes
    pytest.param("11 \\text{ p.m.}", "11", 1.0, id="unit-pm-text"),  # a trailing \text{} of words
    pytest.param("4 PM", "4", 0.0, id="unit-pm-upper-case"),  # the reference's unit words are lower-case
    pytest.param("4pm", "4", 0.0, id="unit-pm-glued"),  # glued to the number: not a unit (reference)
    pytest.param("70kg", "70", 0.0, id="unit-kg-glued"),  # the same for kg
    pytest.param("70cm", "70", 1.0, id="unit-cm-glued"),  # cm, hour, feet, ... may be glued (reference)
    pytest.param("3hours", "3", 1.0, id="unit-hours-glued"),
    pytest.param("42 km", "42", 1.0, id="unit-km"),  # a unit word after a space
    pytest.param("42", "42 \\text{ km}", 1.0, id="unit-in-gold"),  # also in the gold
    pytest.param("20 cm^2", "20", 1.0, id="unit-squared"),  # an area
    pytest.param("7 grams", "7", 0.0, id="unit-unknown"),  # not in the reference's lists
    pytest.param("7 grams", "7\\text{ grams}", 1.0, id="unit-unknown-both-sides"),  # the same word matches
    pytest.param("7 more", "7", 0.0, id="unit-meaning-word"),  # reference: 1; deliberate ("5 less")
    # a set written \{ \} against a list
    pytest.param("\\{2, 7\\}", "2, 7", 1.0, id="set-vs-list"),  # a set of solutions is the list
    pytest.param("-1, 4", "\\{-1, 4\\}", 1.0, id="list-vs-set"),  # both ways
    pytest.param("\\left\\{ 0, 3 \\right\\}", "0, 3", 1.0, id="set-left-right"),
    pytest.param("\\lbrace 0, 3 \\rbrace", "0, 3", 1.0, id="set-lbrace"),
    pytest.param("\\{8\\}", "8", 1.0, id="set-singleton"),
    pytest.param("\\{7, 2\\}", "2, 7", 1.0, id="set-other-order"),  # reference: 0; deliberate (a set)
    pytest.param("\\{2, 7\\}", "(2, 7)", 0.0, id="set-vs-tuple"),  # a tuple is ordered: not a set
    pytest.param("\\{2, 8\\}", "2, 7", 0.0, id="set-wrong-element"),  # element by element
    # numbers within the reference's tolerance: 1e-7 of an integer
    pytest.param("6.99999999", "7", 1.0, id="tolerance-below"),
    pytest.param("7.00000004", "7", 1.0, id="tolerance-above"),
    pytest.param("3e-9", "0", 1.0, id="tolerance-exponent"),
    pytest.param("7", "6.99999995", 1.0, id="tolerance-gold"),  # also in the gold
    pytest.param("7.0000002", "7", 0.0, id="tolerance-outside"),  # 2e-7 is outside
    pytest.param("0.33333333", "\\frac13", 0.0, id="tolerance-not-fractions"),  # only near integers
    pytest.param("(6.99999999, 2)", "(7, 2)", 0.0, id="tolerance-whole-answer-only"),  # as the reference
    # \boxed {x} with a space
    pytest.param("\\boxed {6}", "6", 0.0, id="box-space"),  # a malformed box: wrong, as the reference
    pytest.param("\\boxed\t{6}", "6", 0.0, id="box-tab"),
    pytest.param("\\boxed{ 6 }", "6", 1.0, id="box-inner-spaces"),  # spaces inside the braces are fine
    pytest.param("6", "So $\\boxed {6}$.", 0.0, id="box-space-gold"),  # a malformed gold box: no gold
    # several boxes in one answer
    pytest.param("\\boxed{2} then \\boxed{9}", "9", 1.0, id="boxes-last"),  # the last box is the answer
    pytest.param("\\boxed{9} then \\boxed{2}", "9", 0.0, id="boxes-earlier"),  # even if an earlier one is right
    pytest.param("\\boxed{2}, \\boxed{9}", "2, 9", 0.0, id="boxes-vs-list"),  # one box each is not the list
    pytest.param("\\boxed{9} \\fbox{2}", "9", 1.0, id="boxes-boxed-over-fbox"),  # \fbox only without \boxed
    pytest.param("\\boxed{9} \\boxed{2", "9", 0.0, id="boxes-last-malformed"),  # a malformed last box
    pytest.param("\\boxed{9} \\boxed{}", "9", 0.0, id="boxes-last-empty"),  # an empty last box
    pytest.param("9", "First $\\boxed{2}$, then $\\boxed{9}$.", 1.0, id="boxes-gold-last"),  # the gold's last
]


@pytest.mark.parametrize(("answer", "gold", "expected"), CLASS_CASES)
def test_reference_classes(answer, gold, expected):
    assert r1_zero_reward_fn(wrap(answer), gold)["answer_reward"] == expected


# Square roots written as a word, as models often do: "sqrt" is read as \sqrt, its parentheses as braces, so
# that its four letters do not count as unknowns (the reference's letter guard skips "sqrt" too).
WORD_SQRT_CASES = [
    pytest.param("sqrt(3)", "\\sqrt{3}", 1.0, id="sqrt-call"),  # the plain case
    pytest.param("2*sqrt(3)", "2\\sqrt{3}", 1.0, id="sqrt-times"),  # an explicit product
    pytest.param("2sqrt(3)", "2\\sqrt3", 1.0, id="sqrt-implicit-product"),  # an implicit one
    pytest.param("(1+sqrt(5))/2", "\\frac{1+\\sqrt{5}}{2}", 1.0, id="sqrt-golden-ratio"),  # inside a fraction
    pytest.param("sqrt(2)/2", "\\frac{\\sqrt2}{2}", 1.0, id="sqrt-over-two"),
    pytest.param("sqrt(12)", "2\\sqrt{3}", 1.0, id="sqrt-simplified"),  # compared symbolically
    pytest.param("sqrt3", "\\sqrt{3}", 1.0, id="sqrt-no-parentheses"),  # like the \sqrt3 shorthand
    pytest.param("sqrt{3}", "\\sqrt{3}", 1.0, id="sqrt-braces"),  # a forgotten backslash
    pytest.param("SQRT(3)", "\\sqrt{3}", 1.0, id="sqrt-upper-case"),  # as PI is \pi
    pytest.param("sqrt(x+1)", "\\sqrt{x+1}", 1.0, id="sqrt-of-expression"),  # one unknown letter
    pytest.param("sqrt(sqrt(2))", "\\sqrt{\\sqrt{2}}", 1.0, id="sqrt-nested"),  # both read
    pytest.param("(sqrt(3), 1)", "(\\sqrt{3}, 1)", 1.0, id="sqrt-in-tuple"),  # its parentheses are no tuple
    pytest.param("sqrt(2)pi", "\\sqrt{2}\\pi", 1.0, id="sqrt-times-word-pi"),  # with pi as a word
    pytest.param("\\sqrt{3}", "sqrt(3)", 1.0, id="sqrt-in-gold"),  # also in the gold
    pytest.param("sqrt(5)", "\\sqrt{3}", 0.0, id="sqrt-wrong"),  # still compared by value
    pytest.param("sqrt(3)/2", "\\frac{\\sqrt{3}}{3}", 0.0, id="sqrt-wrong-denominator"),
    pytest.param("sqrt(9)", "3", 0.0, id="sqrt-integer-gold"),  # an integer gold needs an integer answer
    pytest.param("sqrt(3", "\\sqrt{3}", 0.0, id="sqrt-unclosed"),  # unbalanced: not read
]


@pytest.mark.parametrize(("answer", "gold", "expected"), WORD_SQRT_CASES)
def test_square_roots_as_words(answer, gold, expected):
    assert r1_zero_reward_fn(wrap(answer), gold)["answer_reward"] == expected


# --------------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("so \\boxed{5}.", "5", id="simple"),  # content of the box
        pytest.param("\\boxed{3} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", id="last-box"),  # last one wins
        pytest.param("\\boxed{a{b}c}", "a{b}c", id="inner-braces"),  # balanced inner braces
        pytest.param("\\boxed 5$.", "5", id="unbraced"),  # \boxed 5 style, up to the $
        pytest.param("\\fbox{7}", "7", id="fbox"),  # \fbox as well
        pytest.param("\\boxed{7} \\fbox{8}", "7", id="boxed-before-fbox"),  # \fbox only without \boxed
        pytest.param("\\boxed {7}", None, id="space-before-brace"),  # malformed, as in the reference
        pytest.param("\\boxed{5} and \\boxed{6", None, id="last-malformed"),  # last box unbalanced
        pytest.param("no box", None, id="none"),  # nothing to extract
        pytest.param(None, None, id="not-a-string"),  # garbage in, None out
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("solution", "expected"),
    [
        pytest.param("We add to get $\\boxed{42}$.", "42", id="boxed"),  # MATH / NuminaMath
        pytest.param("First \\boxed{1}, finally \\boxed{2}.", "2", id="two-boxes"),  # the last box
        pytest.param("She has 3 + 4 = 7.\n#### 1,234", "1234", id="gsm8k"),  # GSM8K, comma removed
        pytest.param("#### 1,2", "1,2", id="gsm8k-list-comma-kept"),  # only thousands groups lose commas
        pytest.param("The answer is 5.", None, id="prose"),  # nothing reliable
        pytest.param("12", None, id="bare-answer"),  # not a solution: the loader must pass the text
        pytest.param("####   ", None, id="empty-gsm8k"),  # empty answer
        pytest.param("So $\\boxed{}$.", None, id="empty-box"),  # an empty gold is no gold
        pytest.param("So $\\boxed{ \\text{} }$.", None, id="box-empty-once-normalised"),  # the same
        pytest.param("First \\boxed{3}, then \\boxed{}.", None, id="last-box-empty"),  # the last box counts
        pytest.param("So $\\boxed {5}$.", None, id="box-space-before-brace"),  # malformed box
        pytest.param("So $\\boxed 5$.", "5", id="box-unbraced"),  # MATH's shorthand is read
        pytest.param(None, None, id="none"),  # garbage
    ],
)
def test_extract_gold(solution, expected):
    assert extract_gold(solution) == expected


# --------------------------------------------------------------------------------------------------
# Evaluation categories and format reasons


@pytest.mark.parametrize(
    ("response", "truncated", "category", "reason"),
    [
        pytest.param("x </think> <answer>5</answer>", False, "correct", None, id="correct"),  # right
        pytest.param("x </think> <answer>6</answer>", False, "wrong_answer", None, id="wrong"),  # formatted
        pytest.param(
            "x </think><answer>5</answer>", False, "format_failure", "missing_think_answer", id="no-space"
        ),  # the gate wants exactly one space
        pytest.param(
            "x </think> <answer>5", False, "format_failure", "missing_answer_close", id="no-close"
        ),  # stopped before </answer>
        pytest.param(
            "x </think> <answer>5", True, "format_failure", "truncated", id="ran-out-of-tokens"
        ),  # truncation explains the missing tag
        pytest.param(
            "x </think> <answer>5</answer>", True, "correct", None, id="truncated-but-formatted"
        ),  # truncation only matters for format failures
        pytest.param(
            "x </think> <answer>\\boxed{5</answer>", False, "wrong_answer", None, id="malformed-box"
        ),  # formatted, but the box is broken
    ],
)
def test_classify(response, truncated, category, reason):
    grade = classify(response, "5", truncated=truncated)
    assert (grade.category, grade.format_reason) == (category, reason)
    assert grade.format_reward == float(category != "format_failure")
    assert grade.reward == grade.answer_reward == float(category == "correct")


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        pytest.param("</think> <answer></answer>", "", id="empty-answer-empty-gold"),  # the example
        pytest.param("</think> <answer>\\boxed{}</answer>", "\\boxed{}", id="empty-box-both"),
        pytest.param("</think> <answer> </answer>", "So $\\boxed{ }$.", id="blank-gold-box"),
        pytest.param("</think> <answer>5</answer>", ["", "\\boxed{}"], id="list-of-empty-golds"),
    ],
)
def test_empty_gold_never_rewards(response, gold):
    assert r1_zero_reward_fn(response, gold) == {"format_reward": 1.0, "answer_reward": 0.0, "reward": 0.0}
    assert answer_reward([response], [gold if isinstance(gold, str) else gold[1]]) == [None]  # TRL skips it


def test_classify_reports_answer_and_gold():
    grade = classify("x </think> <answer>The answer is $\\boxed{\\frac12}$.</answer>", "So $\\boxed{0.5}$.")
    assert (grade.answer, grade.gold) == ("\\frac12", "0.5")


def test_list_of_ground_truths():
    assert r1_zero_reward_fn(wrap("7"), ["6", "7"])["answer_reward"] == 1.0  # any gold may match
    assert r1_zero_reward_fn(wrap("8"), ["6", "7"])["answer_reward"] == 0.0


def test_grade_batch_matches_single_calls():
    cases = [(wrap(a), g) for a, g in [("\\sqrt{12}", "2\\sqrt3"), ("5", "5"), ("6", "5"), ("x", "y")] * 20]
    batch = grade_batch([r for r, _ in cases], [g for _, g in cases])
    assert batch == [r1_zero_reward_fn(r, g) for r, g in cases]


# --------------------------------------------------------------------------------------------------
# Robustness: garbage never raises, threads, time limit


GARBAGE = [
    pytest.param(None, "5", id="none-response"),  # None-like
    pytest.param("", "5", id="empty-response"),
    pytest.param(b"x </think> <answer>5</answer>", "5", id="bytes-response"),  # decoded
    pytest.param(12345, "5", id="int-response"),
    pytest.param("x </think> <answer>5</answer>", None, id="none-gold"),
    pytest.param("x </think> <answer>5</answer>", 5, id="int-gold"),  # str(5)
    pytest.param("x </think> <answer>5</answer>", {"a": 1}, id="dict-gold"),
    pytest.param("a" * 100_000 + " </think> <answer>5</answer>", "5", id="100KB-reasoning"),
    pytest.param("x </think> <answer>" + "1+" * 50_000 + "</answer>", "5", id="100KB-answer"),
    pytest.param("x </think> <answer>" + "{" * 100_000 + "</answer>", "5", id="unbalanced-open"),
    pytest.param("x </think> <answer>" + "}" * 100_000 + "</answer>", "5", id="unbalanced-close"),
    pytest.param("x </think> <answer>\\boxed{" + "x" * 100_000 + "</answer>", "5", id="unclosed-box"),
    pytest.param("x </think> <answer>" + "{" * 495 + "5" + "}" * 495 + "</answer>", "5", id="deep-braces"),
    pytest.param("x </think> <answer>1e999999999</answer>", "\\frac12", id="huge-exponent-literal"),
    pytest.param("x </think> <answer>\ud800\x00\u202e５</answer>", "5", id="surrogate-nul-bidi"),
    pytest.param("x </think> <answer>😀 ∑ √ ∞</answer>", "\\infty", id="emoji-and-symbols"),
    pytest.param("x </think> <answer>\\frac\\frac\\sqrt^_{}</answer>", "\\frac12", id="broken-latex"),
    pytest.param("x </think> <answer>" + "\\," * 499 + "5</answer>", "5", id="many-spacing-macros"),
    pytest.param("</answer></think> <answer></answer><answer>", "5", id="tags-only"),
]


@pytest.mark.parametrize(("response", "gold"), GARBAGE)
def test_garbage_returns_a_score(response, gold):
    start = time.monotonic()
    rewards = r1_zero_reward_fn(response, gold)
    assert set(rewards) == {"format_reward", "answer_reward", "reward"}
    assert all(v in (0.0, 1.0) for v in rewards.values())
    assert time.monotonic() - start < 3.0  # never stalls (the symbolic limit is 1 s)


THREAD_CASES = [
    (wrap("\\sqrt{12}"), "2\\sqrt{3}", 1.0),
    (wrap("\\sqrt{13}"), "2\\sqrt{3}", 0.0),
    (wrap("\\frac{2x+2}{4}"), "\\frac{x+1}{2}", 1.0),
    (wrap("7"), "7", 1.0),
    ("no tags", "7", 0.0),
]


def test_from_threading_thread():
    results: dict[int, float] = {}

    def work(k: int) -> None:
        response, gold, _ = THREAD_CASES[k % len(THREAD_CASES)]
        results[k] = r1_zero_reward_fn(response, gold)["answer_reward"]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {k: THREAD_CASES[k % len(THREAD_CASES)][2] for k in range(10)}


def test_from_thread_pool_executor():
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(
            pool.map(
                lambda _: grade_batch([r for r, _, _ in THREAD_CASES], [g for _, g, _ in THREAD_CASES]),
                range(8),
            )
        )
    expected = [e for _, _, e in THREAD_CASES]
    assert all([d["answer_reward"] for d in batch] == expected for batch in batches)


def test_timeout_scores_zero_counts_and_does_not_block():
    hang = wrap("9^{9^{9^{9}}}")  # sympy tries to evaluate a tower with ~10^8 digits in its exponent
    r1_zero_reward_fn(wrap("\\sqrt{12}"), "2\\sqrt3")  # start the worker pool outside the timing
    before = timeout_count()
    start = time.monotonic()
    grades = classify_batch([hang, wrap("\\sqrt{12}")], ["\\frac13", "2\\sqrt3"], timeout_s=0.5)
    elapsed = time.monotonic() - start
    assert grades[0].answer_reward == 0.0 and grades[0].timed_out
    assert grades[1].answer_reward == 1.0  # the other answer is graded meanwhile, in another worker
    assert timeout_count() == before + 1
    assert elapsed < 0.5 + 1.5
    assert r1_zero_reward_fn(wrap("\\sqrt{12}"), "2\\sqrt3")["answer_reward"] == 1.0  # worker replaced


def test_batch_ceiling_bounds_a_batch_of_hangs_and_counts_the_cut():
    r1_zero_reward_fn(wrap("\\sqrt{12}"), "2\\sqrt3")  # start the worker pool outside the timing
    hangs = [wrap(f"9^{{9^{{9^{{{k}}}}}}}") for k in range(2, 42)]  # 40 distinct: ~20 s on 2 workers, unbounded
    before = rm.grader_stats()
    start = time.monotonic()
    grades = classify_batch(hangs, ["\\frac13"] * 40, timeout_s=1.0, batch_timeout_s=0.5)
    elapsed = time.monotonic() - start
    assert elapsed < 0.5 + 1.0
    assert all(g.timed_out and g.answer_reward == 0.0 for g in grades)
    after = rm.grader_stats()
    assert after["cut"] - before["cut"] == 40  # the running ones were killed at the deadline, the rest never ran
    assert after["timeouts"] == before["timeouts"]  # none reached its own 1 s limit
    assert r1_zero_reward_fn(wrap("\\sqrt{12}"), "2\\sqrt3")["answer_reward"] == 1.0  # workers replaced


def test_batch_ceiling_also_cuts_string_work():
    before = rm.grader_stats()["cut"]
    formatted, unformatted = classify_batch([wrap("5"), "5"], ["5", "5"], batch_timeout_s=0.0)
    assert formatted.timed_out and (formatted.format_reward, formatted.answer_reward) == (1.0, 0.0)
    assert unformatted.category == "format_failure" and not unformatted.timed_out  # the gate is always run
    assert rm.grader_stats()["cut"] == before + 1


def test_inline_mode_for_trusted_input():
    # workers=0 runs sympy in this thread (no time limit): for debugging only, same verdicts.
    grades = classify_batch([wrap("\\sqrt{12}"), wrap("\\sqrt{13}")], ["2\\sqrt3"] * 2, workers=0)
    assert [g.answer_reward for g in grades] == [1.0, 0.0]


# --------------------------------------------------------------------------------------------------
# TRL reward functions


def test_trl_plain_text_completions():
    completions = [wrap("72"), wrap("71"), "no format 72"]
    assert answer_reward(completions, ["#### 72"] * 3) == [1.0, 0.0, 0.0]
    assert format_reward(completions) == [1.0, 1.0, 0.0]


def test_trl_conversational_completions():
    completions = [
        [{"role": "assistant", "content": wrap("\\frac{1}{2}")}],
        [{"role": "assistant", "content": [{"type": "text", "text": wrap("0.5")}]}],  # content parts
        [{"role": "assistant", "content": None}],
    ]
    assert answer_reward(completions, ["so $\\boxed{\\frac12}$"] * 3) == [1.0, 1.0, 0.0]
    assert format_reward(completions) == [1.0, 1.0, 0.0]


def test_trl_none_where_gold_cannot_be_extracted():
    rewards = answer_reward([wrap("5"), wrap("5"), wrap("5")], ["\\boxed{5}", "The answer is 5.", None])
    assert rewards == [1.0, None, None]  # TRL ignores None samples


def test_trl_reward_logs_grader_timeouts():
    # TRL passes log_metric to reward functions; the metric is the answers that ran out of grading time.
    logged = []
    hang = wrap("9^{9^{9^{7}}}")
    rewards = answer_reward(
        [hang, hang, wrap("5")],
        ["\\boxed{\\frac13}", "\\boxed{\\frac13}", "\\boxed{5}"],
        log_metric=lambda name, value: logged.append((name, value)),
    )
    assert rewards == [0.0, 0.0, 1.0]
    assert logged == [("rewards/grader_timeouts", 2.0)]


def test_trl_reward_names():
    # GRPOTrainer logs each reward under its function's __name__.
    assert (answer_reward.__name__, format_reward.__name__) == ("answer_reward", "format_reward")


def test_trl_group_dedupes_symbolic_work():
    before = rm.grader_stats()["symbolic_jobs"]
    rewards = answer_reward([wrap("\\sqrt{12}")] * 16, ["\\boxed{2\\sqrt{3}}"] * 16)
    assert rewards == [1.0] * 16
    assert rm.grader_stats()["symbolic_jobs"] == before + 1  # one comparison for the whole group


# --------------------------------------------------------------------------------------------------


def test_docstring_examples():
    result = doctest.testmod(rm)
    assert result.attempted > 0 and result.failed == 0


def test_categories_cover_vectors(vectors):
    # The three evaluation categories line up with the reference's derived category labels.
    label = {"correct": "correct", "wrong_answer": "wrong", "format_failure": "format"}
    agree = Counter(label[g.category] == r["category"] for r, g in vectors if r["group"] != "quirk")
    assert agree[True] / sum(agree.values()) >= 0.97


def test_the_graders_protocol_text_is_the_projects():
    """The grader repeats the r1_zero text for its standalone workers: it must be the text the rollouts use."""
    import train.protocol as protocol
    import train.rewards_math as rm

    assert (rm.THINK_ANSWER, rm.ANSWER_OPEN, rm.ANSWER_CLOSE) == (
        protocol.THINK_ANSWER, protocol.ANSWER_OPEN, protocol.ANSWER_CLOSE)
