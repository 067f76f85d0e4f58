"""Whether an answer equals its gold, decided by strings and exact numbers where they can
(train/rewards_math.py is the grader's face; the symbolic step is train/grader_symbolic.py).

- Both sides are normalised (train/grader_normalize.py) and compared as strings, then as exact numbers
  (``2/4 == 0.5``, ``1/3 != 0.333``); what strings cannot decide is left to sympy as (gold, answer) pairs.
- Tuples and intervals compare element-wise with matching brackets; bare comma lists in any order;
  matrices cell by cell.
- An integer gold needs an integer-looking answer (``10^3`` is not accepted for ``1000``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from train.grader_normalize import MAX_ANSWER_CHARS, SPACE_MARK, normalize_answer

# Elements longer than this never reach sympy (which can take seconds on long expressions).
MAX_SYMBOLIC_CHARS = 300

# Exponent capped at 3 digits: Fraction(Decimal("1e999999999")) would build a billion-digit integer.
_INT_OR_DEC = r"(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d{1,3})?"
_NUMBER_RE = re.compile(
    r"(?P<sign>[-+]?)(?:"
    rf"(?P<dec>{_INT_OR_DEC})"
    r"|(?P<whole>\d+)?\\frac\{(?P<fn>[-+]?\d+)\}\{(?P<fd>[-+]?\d+)\}"
    r"|(?P<sn>\d+)/(?P<sd>\d+)"
    r")"
)


@dataclass(frozen=True)
class _Num:
    value: Fraction
    int_literal: bool  # "5", "5.0", "1e3", "1,000": what the reference calls an integer-looking answer


def _to_number(e: str) -> _Num | None:
    m = _NUMBER_RE.fullmatch(e)
    if m is None:
        return None
    sign = -1 if m.group("sign") == "-" else 1
    try:
        if m.group("dec") is not None:
            value = Fraction(Decimal(m.group("dec")))
            return _Num(sign * value, value.denominator == 1)
        if m.group("fn") is not None:
            value = Fraction(int(m.group("fn")), int(m.group("fd")))
        else:
            value = Fraction(int(m.group("sn")), int(m.group("sd")))
    except (InvalidOperation, ValueError, ZeroDivisionError, OverflowError):
        return None
    if m.group("whole") is not None:  # mixed number 3\frac{1}{2}
        if value < 0:
            return None
        value += int(m.group("whole"))
    return _Num(sign * value, False)


def _split_top(s: str, sep: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            start = i + len(sep)
    parts.append(s[start:])
    return parts


def _split_elements(s: str) -> tuple[str, list[str]]:
    """(brackets, elements): "(1,2)" -> ("()", ["1","2"]); bare "1,2" -> ("", ...); "(5)" -> 1-tuple."""
    if len(s) > 2 and s[0] in "([" and s[-1] in ")]" and not any(c in s[1:-1] for c in "()[]"):
        return s[0] + s[-1], _split_top(s[1:-1], ",")
    return "", _split_top(s, ",")


_MATRIX_RE = re.compile(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", re.S)
_RELATION_RE = re.compile(
    r"[=<>]|\\(?:le|ge|leq|geq|ne|neq|lt|gt|in|notin|subset|subseteq|to|approx|equiv|pmod|bmod|mod)(?![a-zA-Z])"
)

# A decision for one element pair: True / False, or a list of (gold, answer) pairs left to sympy.
Pending = list[tuple[str, str]]


def _symbolic_allowed(e: str) -> bool:
    if not e or len(e) > MAX_SYMBOLIC_CHARS or SPACE_MARK in e or _RELATION_RE.search(e):
        return False
    if re.search(r"\d_", e):  # base subscripts 4210_5: strings only (latex2sympy drops the base)
        return False
    if e.isalpha():  # plain words ("even", "ab"): sympy would read a*b == b*a
        return False
    if not e.isascii():  # like the reference, Unicode maths (π, √, ∞) is not interpreted
        return False
    # More than two unknown letters is text, not algebra (the reference's guard, minus commands).
    letters = {c for c in re.sub(r"\\[a-zA-Z]+", "", e) if c.isalpha()}
    return len(letters) <= 2


def _compare_element(gold: str, answer: str, pending: Pending) -> bool:
    """True/False if decided by strings or numbers; appends to ``pending`` (and returns True) if sympy
    must decide."""
    if gold == answer:
        return True
    g_num, a_num = _to_number(gold), _to_number(answer)
    if g_num is not None and g_num.int_literal:
        # Reference rule: an integer gold needs an integer-looking answer (no "10+5" for 15).
        return a_num is not None and a_num.int_literal and a_num.value == g_num.value
    if g_num is not None and a_num is not None:
        return g_num.value == a_num.value  # exact: 2/4 == 0.5, 1/3 != 0.333
    g_mat, a_mat = _MATRIX_RE.fullmatch(gold), _MATRIX_RE.fullmatch(answer)
    if g_mat or a_mat:
        if not (g_mat and a_mat):
            return False
        g_rows = [_split_top(r, "&") for r in g_mat.group(1).split("\\\\")]
        a_rows = [_split_top(r, "&") for r in a_mat.group(1).split("\\\\")]
        if [len(r) for r in g_rows] != [len(r) for r in a_rows]:
            return False
        return all(
            _compare_element(g, a, pending)
            for g_row, a_row in zip(g_rows, a_rows, strict=True)
            for g, a in zip(g_row, a_row, strict=True)
        )
    if _symbolic_allowed(gold) and _symbolic_allowed(answer):
        pending.append((gold, answer))
        return True
    return False


def _sort_key(e: str) -> tuple[str, str]:
    num = _to_number(e)
    return ("n", str(num.value)) if num is not None else ("s", e)


def decide(answer: str, gold: str) -> bool | Pending:
    """String-level verdict for one (answer, gold): True, False, or the element pairs sympy must check.

    >>> decide("2/4", "\\\\frac12"), decide("5", "6"), decide("\\\\sqrt{12}", "2\\\\sqrt3")
    (True, False, [('2\\\\sqrt{3}', '\\\\sqrt{12}')])
    """
    if len(answer) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return answer.strip() == gold.strip()
    a, g = normalize_answer(answer), normalize_answer(gold)
    if not a or not g:
        return False  # an empty gold is matched by nothing, not even an empty answer
    if a == g or normalize_answer(answer, strip_units=False) == normalize_answer(gold, strip_units=False):
        return True  # the second: the same unit on both sides, known or not ("7 grams", "7\text{ grams}")
    g_brackets, g_elems = _split_elements(g)
    a_brackets, a_elems = _split_elements(a)
    if len(g_elems) != len(a_elems):
        return False
    if len(g_elems) > 1 and g_brackets != a_brackets:
        return False  # (1,3) vs [1,3], (1,2) vs the list 1,2
    if len(g_elems) > 1 and not g_brackets:
        # A bare list is a set of solutions: order does not matter.
        if Counter(map(_sort_key, g_elems)) == Counter(map(_sort_key, a_elems)):
            return True
    pending: Pending = []
    for g_e, a_e in zip(g_elems, a_elems, strict=True):
        if not _compare_element(g_e, a_e, pending):
            return False
    return pending or True
