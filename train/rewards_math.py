"""Reward function and grader for r1_zero-style math answers.

One module decides the training reward and the evaluation verdict, so the two can never disagree.
It follows CS336's ``r1_zero_reward_fn`` (Dr. GRPO / understand-r1-zero ``math_grader.py``), rewritten
on our own normalisation plus math-verify for the symbolic step:

- Format gate: the response must contain ``</think> <answer>`` (one space) and ``</answer>``; otherwise
  every reward is 0 and the ground truth is not looked at.
- Answer: the text after the last ``<answer>`` with every ``</answer>`` removed (text after the closing
  tag stays in the answer). If it holds ``\\boxed``, the last box must be well formed (braced) and its
  content is the answer; otherwise the answer is wrong.
- Gold: a ground truth holding ``\\boxed`` is reduced to its last box; otherwise it is used as-is. A gold
  that is empty once normalised (``\\boxed{}``), or whose box is malformed, is no gold: nothing matches it.
- Equivalence: both sides are normalised (``\\left``/``\\right``, ``\\dfrac``, units and am/pm, ``\\text{}``,
  ``^\\circ``, ``\\%``, ``$``, thousands separators, ``inf``/``pi`` as words, ``\\{ \\}`` sets, ``\\frac12``
  shorthand, ``x =`` prefix, integers within 1e-7, ...), compared as strings, then as exact numbers, then
  (in a worker process, with a time limit) symbolically.
  Tuples and intervals compare element-wise with matching brackets; bare comma lists in any order.
  An integer gold needs an integer-looking answer (``10^3`` is not accepted for ``1000``).
- ``reward == answer_reward``: the format only gates, a well-formatted wrong answer earns 0.
- Where the reference is mathematically wrong we are right instead (it accepted ``\\frac{x+1}{2}`` for
  ``x+\\frac12`` and ``\\sqrt[3]{8}`` for ``2\\sqrt2``, rejected ``2/4`` for ``\\frac12``); docs/grader.md
  lists every remaining disagreement.

The symbolic step runs in a small pool of worker processes (``python -P this_file --worker``, i.e. a
fresh interpreter, never a fork of the trainer), each answer with its own time limit; a worker that
runs over is killed and replaced, the answer scores 0 and ``timeout_count()`` goes up. The training reward
also bounds a whole batch (``REWARD_BATCH_TIMEOUT_S``): what is not graded by then scores 0 and is counted
as cut. Everything else is pure string work in the caller's thread, safe to call from any thread.
"""

from __future__ import annotations

import atexit
import cmath
import functools
import json
import logging
import math
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

# The r1_zero protocol's text (train/protocol.py), repeated because the grader's workers run this file alone,
# without the project on sys.path; tests/test_rewards.py checks that the two agree.
THINK_ANSWER = "</think> <answer>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"


def formatted(response: str) -> bool:
    """The format gate: `</think> <answer>` and `</answer>` are both in the response."""
    return THINK_ANSWER in response and ANSWER_CLOSE in response


DEFAULT_TIMEOUT_S = 1.0
# The training reward's ceiling for one batch, whatever it holds: the worst legitimate batch measured (1,024
# distinct answers that all need sympy, 2 workers) took 1.8 s, while each answer that sends sympy into its
# time limit costs ~1 s of a worker. What is not graded by then scores 0 and is counted as cut.
REWARD_BATCH_TIMEOUT_S = 2.0
# Answers (and golds) longer than this are compared as raw strings only: real final answers are short,
# and it bounds the regex work on adversarial 100 KB completions.
MAX_ANSWER_CHARS = 1000
# Elements longer than this never reach sympy (which can take seconds on long expressions).
MAX_SYMBOLIC_CHARS = 300
WORKER_START_TIMEOUT_S = 60.0

CORRECT, WRONG_ANSWER, FORMAT_FAILURE = "correct", "wrong_answer", "format_failure"
MISSING_THINK_ANSWER, MISSING_ANSWER_CLOSE = "missing_think_answer", "missing_answer_close"
TRUNCATED = "truncated"


# --------------------------------------------------------------------------------------------------
# Boxes and gold answers


_BOXED_RE = re.compile(r"\\boxed(?![a-zA-Z])")
_FBOX_RE = re.compile(r"\\fbox(?![a-zA-Z])")
_BRACE_RE = re.compile(r"[{}]")


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - keeping the last one is the point
        pass
    return last


def _match_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx``, or None if unbalanced."""
    depth = 0
    for m in _BRACE_RE.finditer(text, open_idx):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.start()
    return None


def extract_boxed(text: str | None, allow_unbraced: bool = True) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (of the last ``\\fbox{...}`` if there is no
    ``\\boxed``), or None.

    The last box must be well formed: its brace right after the command (``\\boxed {5}`` is malformed, as
    in the reference) and balanced. MATH's ``\\boxed 5`` (no braces, content up to ``$`` or end of line)
    is accepted unless ``allow_unbraced`` is False, as the reward does for responses.

    >>> extract_boxed(r"so $x = \\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    if not isinstance(text, str):
        return None
    last = _last_match(_BOXED_RE, text) or _last_match(_FBOX_RE, text)
    if last is None:
        return None
    i = last.end()
    if text.startswith("{", i):
        end = _match_brace(text, i)
        return None if end is None else text[i + 1 : end]
    if allow_unbraced and text[i : i + 1] in (" ", "\t"):
        content = re.split(r"[$\n]", text[i:], maxsplit=1)[0].strip()
        return content if content and not content.startswith("{") else None
    return None


_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _no_answer(gold: str) -> bool:
    # "\boxed{}", "\boxed{\text{}}": nothing to match. A digit always survives normalisation, which
    # spares most golds the normalising (a data set's every row goes through here).
    if not gold.strip():
        return True
    if len(gold) > MAX_ANSWER_CHARS or re.search(r"\d", gold):
        return False
    return not normalize_answer(gold)


def extract_gold(solution: str | None) -> str | None:
    """Gold answer of a dataset solution: last box if any, else text after the last ``####``, else None.

    GSM8K's ``####`` answers lose their thousands commas. A gold that is empty once normalised
    (``\\boxed{}``) is no gold: None.

    >>> extract_gold("Natalia sold 48 + 24 = 72 clips.\\n#### 1,072")
    '1072'
    """
    if not isinstance(solution, str):
        return None
    if _BOXED_RE.search(solution) or _FBOX_RE.search(solution):
        gold = extract_boxed(solution)
    elif "####" in solution:
        gold = _THOUSANDS_RE.sub("", solution.rsplit("####", 1)[1].strip())
    else:
        return None
    return None if gold is None or _no_answer(gold) else gold


def _reduce_gold(ground_truth: Any) -> str | None:
    # Reference semantics: only a ground truth holding \boxed is reduced; anything else is used as-is.
    if isinstance(ground_truth, (int, float)) and not isinstance(ground_truth, bool):
        ground_truth = str(ground_truth)
    if not isinstance(ground_truth, str):
        return None
    gold = extract_boxed(ground_truth) if "\\boxed" in ground_truth else ground_truth
    return None if gold is None or _no_answer(gold) else gold


def _as_text(x: Any) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("utf-8", "replace")
    return ""  # None or any other garbage: an empty response, which fails the format gate


# --------------------------------------------------------------------------------------------------
# Normalisation


# Unit, counting and time words removed after a number ("5 cm", "12 square feet", "12 men", "3 pm"). They
# are the reference's (its MathQA list), minus words that change the meaning ("5 less", "5 more",
# "profit", "loss", "east", ...) and one-letter words other than the SI-like ones below. As in the
# reference, they must not be glued to the number: "5kg" keeps its unit and is wrong.
_UNIT_WORDS = (
    "degree deg mph kmph kmh ft feet inch inches yard mile mm cm dm km meter metre mtr sq square cubic cube "
    "cu cc acre hectare unit gal gallon liter litre lt kg gm lb sec second min minute hr hour day month "
    "year yr percent rs rupee ohm number way rounds mark man men woman women soldier monkey apple pie toy "
    "coin tile am pm noon st rd th mt mp"
).split()
_UNIT_ONE_LETTER = ("m", "g", "l", "s", "h")  # only after a space: "2a" or "3s" may be algebra
# The reference's second list, whose words may be glued to the number: "5cm", "3hours", "2feet".
_UNIT_WORDS_GLUED = (
    "degree cm centimeter meter mile second minute hour day week month year foot feet inch yard"
).split()


def _alternatives(words: Sequence[str]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_UNIT_TAIL_RE = re.compile(
    rf"(?:(?<![\w\\])(?P<word>{_alternatives(_UNIT_WORDS + list(_UNIT_ONE_LETTER))})(?:es|s)?"
    rf"|(?<![a-zA-Z\\])(?P<glued>{_alternatives(_UNIT_WORDS_GLUED)})(?:es|s)?\s*(?:\^\{{?\d\}}?)?)"
    r"\s*\.?\s*$"
)
_TEXT_MACRO_RE = re.compile(r"\\(?:text|textrm|textbf|textit|mathrm|mathbf|mathit|mbox|boxed|fbox)\s*\{")
_UNIT_MACRO_RE = re.compile(r"\\(?:text|textrm|mathrm|mbox)\s*\{")
_SEPARATOR_RE = re.compile(r"\s*\\(?:text|mbox|textrm)\s*\{\s*(?:and|or)\s*\}\s*|(?:\s*,)?\s+(?:and|or)\s+")
# (?<!\\): the "\\ " of a matrix row break followed by a space is not the spacing macro "\ ".
_SPACING_RE = re.compile(r"(?<!\\)\\[,;:> ]|\\q?quad(?![a-zA-Z])|~")
_DEGREE_RE = re.compile(r"\^\s*(?:\{\s*\\circ\s*\}|\\circ(?![a-zA-Z]))")
_MIXED_SLASH_RE = re.compile(r"(?<![\w.^_{}\\])(\d+)\s+(\d+)\s*/\s*(\d+)(?![\d/])")
# "1 2" must not become 12: digits separated by spaces keep a visible mark that matches nothing.
SPACE_MARK = "\u2423"
_DIGIT_SPACE_RE = re.compile(r"(?<=\d)\s+(?=\d)")
_SPACE_RE = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])|\s+")
_LOWER_RE = re.compile(r"(\\[a-zA-Z]+)|[A-Z]+")
# Thousands grouped by spaces, "10 000" or "1 234 567.5" (groups of three), as the reference reads them.
_SPACE_THOUSANDS_RE = re.compile(r"(?<![\w.,^_\\])\d{1,3}(?: \d{3})+(?![\w/]| \d)")
# pi and inf written as words, as the reference's LaTeX-to-text step reads \pi and \infty.
_WORD_CONSTANT_RE = re.compile(r"(?<![a-zA-Z\\])(pi|inf)(?![a-zA-Z])", re.IGNORECASE)
# A decimal this close to an integer is that integer (the reference's tolerance): 4.99999999 is 5.
INTEGER_TOLERANCE = 1e-7
_DECIMAL_RE = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?e[-+]?\d{1,3})")


def _unwrap_macros(s: str, macro_re: re.Pattern[str] = _TEXT_MACRO_RE) -> str:
    # \text{X} -> X etc.; one macro per pass, so it is linear in the number of macros.
    while (m := macro_re.search(s)) is not None:
        end = _match_brace(s, m.end() - 1)
        if end is None:
            return s  # malformed: leave the rest as it is, it will simply not match
        s = s[: m.start()] + s[m.end() : end] + s[end + 1 :]
    return s


def _strip_trailing_units(s: str) -> str:
    # A trailing \text{...} of words after a value is a unit ("36 \text{ units}", "5 \mbox{ cm}").
    last = _last_match(_UNIT_MACRO_RE, s)
    if last is not None:
        end = _match_brace(s, last.end() - 1)
        content = s[last.end() : end] if end is not None else ""
        head = s[: last.start()].strip()
        if (
            end is not None
            and head
            and re.search(r"[^\W\d_]", content)
            and not re.search(r"\d", content)
            and re.fullmatch(r"(?:\^\{?\d\}?)?\s*\.?\s*", s[end + 1 :])
        ):
            s = head
    # Unit words after a value: "5 cm", "3 hrs", "12 square feet", "2\pi units".
    for _ in range(3):
        m = _UNIT_TAIL_RE.search(s, max(0, len(s) - 40))  # units are short: look at the tail only
        if m is None:
            break
        head = s[: m.start()].rstrip()
        one_letter = m.group("word") in _UNIT_ONE_LETTER
        if not head or (one_letter and head == s[: m.start()]):
            break
        if re.search(r"[-+*/^=,({\[]$", head):  # "x + h": h is a variable, not hours
            break
        s = head
    return s


_TOKEN = r"[0-9a-zA-Z]|\\[a-zA-Z]+(?![a-zA-Z])"  # a one-token argument: digit, letter or command (\frac\pi2)


def _fix_shorthand(s: str) -> str:
    s = re.sub(rf"\\frac\s*({_TOKEN})\s*({_TOKEN})", r"\\frac{\1}{\2}", s)  # \frac12, \frac 34
    s = re.sub(rf"\\frac\s*({_TOKEN})\s*\{{", r"\\frac{\1}{", s)  # \frac1{72}
    s = re.sub(rf"\\frac\s*(\{{[^{{}}]*\}})\s*({_TOKEN})", r"\\frac\1{\2}", s)  # \frac{1}2
    s = re.sub(r"\\sqrt\s*([0-9a-zA-Z])", r"\\sqrt{\1}", s)  # \sqrt3
    return re.sub(r"([\^_])\{(\w)\}", r"\1\2", s)  # 10^{8} == 10^8, 4210_{5} == 4210_5


def _wrapping_brace_layers(s: str) -> int:
    """How many ``{...}`` pairs wrap the whole of ``s``: 2 for "{{5}}", 0 for "{1}{2}"; one pass."""
    layers = 0
    while layers < len(s) - layers - 1 and s[layers] == "{" and s[-1 - layers] == "}":
        layers += 1
    if not layers:
        return 0
    depth = 0
    for i, ch in enumerate(s):
        if ch in "{}":
            depth += 1 if ch == "{" else -1
            if depth < 0:
                return 0
            if layers <= i < len(s) - layers and depth < layers:
                layers = depth  # an outer brace closed early: it does not wrap everything
    return layers if depth == 0 else 0


def _strip_outer_braces(s: str) -> str:
    s = s.strip()
    while layers := _wrapping_brace_layers(s):  # loops again only for "{ {5} }"
        s = s[layers:-layers].strip()
    return s


def normalize_answer(s: str, strip_units: bool = True) -> str:
    """Canonical form of an answer or gold string, used for string comparison and the symbolic step.

    It stays valid LaTeX: spaces go except after a command, letters are lower-cased except commands.
    ``strip_units=False`` keeps unit words, so that "7 grams" can still match "7\\text{ grams}".

    >>> normalize_answer(r"\\left( 3, \\dfrac{\\pi}{2} \\right)")
    '(3,\\\\frac{\\\\pi}{2})'
    """
    s = s.strip()
    s = re.sub(r"\s+", " ", s)
    s = _SPACE_THOUSANDS_RE.sub(lambda m: m.group().replace(" ", ""), s)  # before "\," becomes a space
    s = s.replace("{,}", ",")  # 10{,}000: LaTeX's thousands comma
    s = s.replace("\\$", "").replace("$", "")
    for delim in ("\\(", "\\)", "\\[", "\\]"):
        s = s.replace(delim, "")
    s = s.replace("\\!", "")  # negative space, also inside thousands "1,\!000"
    s = _SPACING_RE.sub(" ", s)
    s = re.sub(r"\\(?:left|right|middle|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\lbrace(?![a-zA-Z])", r"\\{", re.sub(r"\\rbrace(?![a-zA-Z])", r"\\}", s))
    s = re.sub(r"\\[dt]frac(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\\(le|ge|ne)q(?![a-zA-Z])", r"\\\1", s)
    s = re.sub(r"\\overline\s*\{([a-zA-Z]+)\}", r"\1", s)  # segment AB; not 0.\overline{3}
    s = s.replace("\\displaystyle", "")
    s = re.sub(r"\\begin\{array\}\{[^{}]*\}", r"\\begin{pmatrix}", s)
    s = s.replace("\\end{array}", "\\end{pmatrix}")
    s = s.replace("bmatrix", "pmatrix")
    s = _DEGREE_RE.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.strip()
    if (m := re.fullmatch(r"\\(?:text|textrm|mbox|mathrm|textbf)\s*\{(.*)\}", s)) and _match_brace(
        s, s.index("{")
    ) == len(s) - 1:
        s = m.group(1).strip()  # a whole-string \text{Evelyn} is the answer, not a unit
    s = _strip_outer_braces(s)
    if s.startswith("\\{") and s.endswith("\\}") and s.count("\\{") == 1 and s.count("\\}") == 1:
        s = s[2:-2].strip()  # the set \{1, 2\} is the list of solutions 1, 2
    s = _SEPARATOR_RE.sub(",", s)  # "1 and 2", "4 \text{ or } 5" are lists
    if strip_units:
        s = _strip_trailing_units(s)
    s = _unwrap_macros(s).strip()
    s = _strip_outer_braces(s)
    s = _WORD_CONSTANT_RE.sub(lambda m: "\\pi" if m.group(1).lower() == "pi" else "\\infty", s)
    # "x = 5" -> "5" when the left side is a short name (reference rule); equations stay whole.
    if s.count("=") == 1 and len(s.split("=")[0].strip()) <= 2:
        s = s.split("=")[1].strip()
    s = _MIXED_SLASH_RE.sub(r"\1\\frac{\2}{\3}", s)  # "3 1/2" is three and a half
    s = _fix_shorthand(s)
    s = _DIGIT_SPACE_RE.sub(SPACE_MARK, s)
    # Drop spaces, except one between a command and a letter: "\sin x" must not become "\sinx".
    s = _SPACE_RE.sub(lambda m: m.group(1) + " " if m.group(1) else "", s)
    s = _THOUSANDS_RE.sub("", s)  # 1,000,000 -> 1000000; (1,2) is left alone
    s = re.sub(r"(?<![\d.])\.(?=\d)", "0.", s)  # .5 -> 0.5
    s = _strip_outer_braces(s)
    # Text answers are case-insensitive (reference); commands keep their case (\Pi, \Delta).
    s = _LOWER_RE.sub(lambda m: m.group(1) or m.group(0).lower(), s)
    if _DECIMAL_RE.fullmatch(s) and math.isfinite(x := float(s)) and 0 < abs(x - round(x)) <= INTEGER_TOLERANCE:
        s = str(round(x))
    return s


# --------------------------------------------------------------------------------------------------
# Element-wise comparison


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


def _decide(answer: str, gold: str) -> bool | Pending:
    """String-level verdict for one (answer, gold): True, False, or the element pairs sympy must check."""
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


# --------------------------------------------------------------------------------------------------
# Symbolic step (runs in worker processes)


@functools.lru_cache(maxsize=4096)  # a gold is compared with every sample of its group
def _to_sympy(latex: str) -> Any:
    import sympy
    from latex2sympy2_extended import latex2sympy
    from math_verify.grader import should_treat_as_complex

    expr = latex2sympy(
        latex, is_real=not should_treat_as_complex(latex), convert_degrees=False, normalization_config=None
    )
    # Decimals become exact rationals so that math-verify's 6-digit float rounding cannot call
    # 3.464102 equal to 2\sqrt{3}: decimal answers are compared exactly, as the reference does.
    floats = expr.atoms(sympy.Float) if hasattr(expr, "atoms") else set()
    return expr.xreplace({f: sympy.Rational(str(f)) for f in floats}) if floats else expr


def _differ_at_a_point(g: Any, a: Any) -> bool:
    """True if the two expressions take clearly different values at one arbitrary point, which proves
    them unequal far more cheaply than simplify(); False means "don't know"."""
    import sympy

    symbols = sorted(g.free_symbols | a.free_symbols, key=str)
    # Positive non-integers away from 0 and 1, so sqrt/log branches and removable singularities are rare.
    point = {s: sympy.Rational(31 + 7 * i, 17 + 3 * i) for i, s in enumerate(symbols)}
    try:
        gv, av = complex(g.evalf(30, subs=point)), complex(a.evalf(30, subs=point))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return False
    if not all(map(cmath.isfinite, (gv, av))):
        return False
    return abs(gv - av) > 1e-9 * max(1.0, abs(gv), abs(av))


def symbolic_equal(gold: str, answer: str) -> bool:
    """Whether two normalised elements are mathematically equal (latex2sympy + math-verify).

    No time limit here: call it through ``grade_batch`` (worker processes) unless the input is trusted.

    >>> symbolic_equal(r"\\frac{x+1}{2}", r"x/2+1/2")
    True
    """
    import sympy
    from math_verify import verify

    try:
        g, a = _to_sympy(gold), _to_sympy(answer)
        if isinstance(g, sympy.Expr) and isinstance(a, sympy.Expr):
            # Sound shortcuts, each several times cheaper than verify()'s simplify().
            if sympy.expand(g - a) == 0:
                return True
            if _differ_at_a_point(g, a):
                return False
        return bool(verify(g, a, timeout_seconds=None, strict=True))
    except Exception:  # untrusted strings: any parser or sympy failure means "not shown equal"
        return False


def _worker_main() -> None:
    """Worker loop: one JSON request a line on stdin ([[gold, answer], ...]), one JSON bool a line out."""
    protocol = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print from a library must not corrupt the protocol
    logging.disable(logging.WARNING)  # math-verify warns on every call made without its SIGALRM timeout
    symbolic_equal("\\frac{1}{2}", "0.5")  # warm up the parser and sympy before saying ready
    symbolic_equal("(x+1)^2", "x^2+2x+1")
    try:
        protocol.write(b'"ready"\n')
        protocol.flush()
        for line in sys.stdin.buffer:
            pairs = json.loads(line)
            ok = all(symbolic_equal(g, a) for g, a in pairs)
            protocol.write(b"true\n" if ok else b"false\n")
            protocol.flush()
    except BrokenPipeError:
        os._exit(0)  # the parent is gone: leave quietly (no flush of the dead pipe at exit)


# --------------------------------------------------------------------------------------------------
# Worker pool
#
# Plain subprocesses, not a maintained pool, because none of those does both things asked of it: kill
# one comparison that runs over, and drop what is left of a batch at its deadline.
# - concurrent.futures.ProcessPoolExecutor and multiprocessing.Pool cannot stop a running task: a hung
#   sympy call can only be ended by breaking the whole pool. Their 'spawn' start also re-imports the
#   trainer's __main__ (and our package) in every worker, and 'fork' would fork the CUDA-threaded trainer.
# - pebble (5.2.3) kills a task past its timeout, but cancelling its queued tasks at a batch deadline does
#   not drop them: a trivial job sent after a batch whose 38 queued hangs were cancelled at its 2 s
#   deadline waited 48 s while they still ran, each to its own timeout.
# Here each worker runs this file as a script (-P: no script dir on sys.path), starts clean, never forks
# the trainer (subprocess does fork+exec at once), and can be killed and replaced on its own.

_STATS_LOCK = threading.Lock()
# timeouts: comparisons past their own limit; cut: left ungraded at the batch deadline (both score 0).
_STATS = {"timeouts": 0, "cut": 0, "worker_errors": 0, "symbolic_jobs": 0}


def _count(key: str, n: int = 1) -> None:
    with _STATS_LOCK:
        _STATS[key] += n


def timeout_count() -> int:
    """Number of symbolic comparisons that ran over their time limit (and scored 0) in this process."""
    with _STATS_LOCK:
        return _STATS["timeouts"]


def grader_stats() -> dict[str, int]:
    """Counters since this process started: timeouts (symbolic comparisons past their own limit), cut
    (comparisons, or answers not yet compared, left ungraded at a batch's deadline), worker_errors (a worker
    died or failed to start), symbolic_jobs. What timed out or was cut scored 0."""
    with _STATS_LOCK:
        return dict(_STATS)


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # Ctrl-C is for the trainer; workers exit when their stdin closes
        )
        self.buf = b""
        self.ready = False
        self.job: int | None = None
        self.deadline = time.monotonic() + WORKER_START_TIMEOUT_S

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


class _Pool:
    def __init__(self, size: int) -> None:
        self.size = size
        self.pid = os.getpid()
        self.lock = threading.Lock()  # one batch at a time; callers from other threads wait
        self.workers: list[_Worker] = []
        self.sel = selectors.DefaultSelector()

    def _add(self) -> None:
        w = _Worker()
        self.workers.append(w)
        self.sel.register(w.proc.stdout, selectors.EVENT_READ, w)

    def _drop(self, w: _Worker) -> None:
        self.sel.unregister(w.proc.stdout)
        self.workers.remove(w)
        w.kill()

    def close(self) -> None:
        with self.lock:
            for w in list(self.workers):
                self._drop(w)

    def run(self, jobs: list[Pending], timeout_s: float, budget_s: float) -> list[bool | None]:
        """Result per job: True/False, or None when it timed out, was cut at the deadline (``budget_s``
        from the first ready worker: starting workers does not use it up) or its worker died."""
        with self.lock:
            return self._run(jobs, timeout_s, budget_s)

    def _replace(self, w: _Worker) -> None:
        self._drop(w)
        self._add()

    def _run(self, jobs: list[Pending], timeout_s: float, budget_s: float) -> list[bool | None]:
        results: list[bool | None] = [None] * len(jobs)
        todo = list(range(len(jobs)))[::-1]  # popped from the end, so in order
        start_failures = 0
        deadline = math.inf
        while len(self.workers) < self.size:
            self._add()
        while todo or any(w.job is not None for w in self.workers):
            now = time.monotonic()
            if deadline == math.inf and any(w.ready for w in self.workers):
                deadline = now + budget_s
            if now >= deadline:
                # Out of time: what runs is killed (its worker restarts in the background), the rest is cut.
                running = [w for w in self.workers if w.job is not None]
                for w in running:
                    self._replace(w)
                _count("cut", len(running) + len(todo))
                return results
            for w in self.workers:
                if w.ready and w.job is None and todo:
                    job = todo.pop()
                    try:
                        w.proc.stdin.write(json.dumps(jobs[job]).encode() + b"\n")
                        w.proc.stdin.flush()
                    except OSError:  # died while idle: retry the job on a fresh worker
                        todo.append(job)
                        w.ready = False
                        w.deadline = 0.0
                        continue
                    w.job, w.deadline = job, time.monotonic() + timeout_s
            waiting = [w.deadline for w in self.workers if w.job is not None or not w.ready]
            wait = max(0.0, min([*waiting, deadline]) - time.monotonic()) if waiting else 0.0
            for key, _ in self.sel.select(wait):
                w = key.data
                data = os.read(w.proc.stdout.fileno(), 65536)
                if not data:  # the worker died (crash, out of memory): its job scores 0
                    _count("worker_errors")
                    start_failures += not w.ready
                    self._replace(w)
                    continue
                w.buf += data
                while b"\n" in w.buf:
                    line, w.buf = w.buf.split(b"\n", 1)
                    if line == b'"ready"':
                        w.ready = True
                    elif w.job is not None:
                        results[w.job] = line == b"true"
                        w.job = None
            now = time.monotonic()
            for w in [w for w in self.workers if w.deadline <= now and (w.job is not None or not w.ready)]:
                if w.job is not None:  # ran over: kill it, the answer scores 0, count it
                    _count("timeouts")
                else:
                    start_failures += 1
                self._replace(w)
            if start_failures > 2 * self.size:
                # Workers cannot start (broken environment): score the rest 0 rather than loop forever.
                logger.error("reward workers fail to start; %d symbolic comparisons scored 0", len(todo))
                _count("worker_errors", len(todo))
                for w in list(self.workers):
                    self._drop(w)
                return results
        return results


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def default_workers() -> int:
    env = os.environ.get("REWARD_WORKERS")
    if env:
        return max(0, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _get_pool(workers: int) -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():  # a forked child must not share its parent's pipes
            _POOL = _Pool(workers)
        _POOL.size = max(_POOL.size, workers)
        return _POOL


@atexit.register
def shutdown_pool() -> None:
    """Kill the worker processes (they also exit on their own when this process goes away)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()


def _run_symbolic(jobs: list[Pending], timeout_s: float, workers: int, budget_s: float) -> list[bool | None]:
    if not jobs:
        return []
    _count("symbolic_jobs", len(jobs))
    if workers <= 0:  # inline, for debugging: no time limit, so only for trusted input
        return [all(symbolic_equal(g, a) for g, a in job) for job in jobs]
    return _get_pool(workers).run(jobs, timeout_s, budget_s)


# --------------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class Grade:
    """Verdict for one response: the evaluation category and the rewards, from one decision."""

    category: str  # "correct" | "wrong_answer" | "format_failure"
    format_reason: str | None  # None | "missing_think_answer" | "missing_answer_close" | "truncated"
    answer: str | None  # extracted answer (None: format failure or malformed box)
    gold: str | None  # reduced gold answer (the matching one for a list of golds)
    format_reward: float
    answer_reward: float
    reward: float
    timed_out: bool = False

    def rewards(self) -> dict[str, float]:
        names = ("format_reward", "answer_reward", "reward")
        return {name: getattr(self, name) for name in names}


def _extract_answer(response: str) -> str | None:
    answer = response.split(ANSWER_OPEN)[-1].replace(ANSWER_CLOSE, "")
    while "\\boxed" in answer:  # also unwraps \boxed{\boxed{5}}
        boxed = extract_boxed(answer, allow_unbraced=False)
        if boxed is None:
            return None  # malformed box: wrong, as in the reference
        answer = boxed
    return answer


def classify_batch(
    responses: Sequence[Any],
    ground_truths: Sequence[Any],
    truncated: Sequence[bool] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    batch_timeout_s: float | None = None,
) -> list[Grade]:
    """``classify`` for many responses, with the symbolic comparisons spread over worker processes.

    ``timeout_s`` bounds each symbolic comparison; ``batch_timeout_s`` (None: no bound) the whole batch,
    not counting the start of worker processes. Answers not graded in time score 0 with ``timed_out``.

    >>> [g.category for g in classify_batch(["x </think> <answer>5</answer>", "x"], ["5", "5"])]
    ['correct', 'format_failure']
    """
    deadline = math.inf if batch_timeout_s is None else time.monotonic() + batch_timeout_s
    workers = default_workers() if workers is None else workers
    truncated = truncated if truncated is not None else [False] * len(responses)
    out: list[Grade | None] = [None] * len(responses)
    cut = 0
    # Per formatted item: (index, answer, golds, decisions). A decision is True/False, or the tuple of
    # element pairs sympy must check, which is also the dedupe key (a GRPO group repeats its answers).
    open_items: list[tuple[int, str, list[str], list[bool | tuple[tuple[str, str], ...]]]] = []
    for i, (raw, gt, trunc) in enumerate(zip(responses, ground_truths, truncated, strict=True)):
        response = _as_text(raw)
        if not formatted(response):
            reason = (
                TRUNCATED
                if trunc
                else (MISSING_THINK_ANSWER if THINK_ANSWER not in response else MISSING_ANSWER_CLOSE)
            )
            out[i] = Grade(FORMAT_FAILURE, reason, None, None, 0.0, 0.0, 0.0)
            continue
        if time.monotonic() >= deadline:  # out of time: the rest of the batch is cut (~10 ms an answer at most)
            out[i] = Grade(WRONG_ANSWER, None, None, None, 1.0, 0.0, 0.0, timed_out=True)
            cut += 1
            continue
        answer = _extract_answer(response)
        gts = list(gt) if isinstance(gt, (list, tuple)) else [gt]
        golds = [g for g in map(_reduce_gold, gts) if g is not None]
        if answer is None or not golds:
            out[i] = Grade(WRONG_ANSWER, None, answer, golds[0] if golds else None, 1.0, 0.0, 0.0)
            continue
        decisions = [_decide(answer, gold) for gold in golds]
        open_items.append((i, answer, golds, [tuple(d) if isinstance(d, list) else d for d in decisions]))

    # Symbolic work only where strings could not decide and no gold already matched.
    jobs = list(
        dict.fromkeys(d for *_, ds in open_items if True not in ds for d in ds if isinstance(d, tuple))
    )
    _count("cut", cut)
    budget = max(0.0, deadline - time.monotonic())
    results = dict(zip(jobs, _run_symbolic([list(j) for j in jobs], timeout_s, workers, budget), strict=True))
    for i, answer, golds, decisions in open_items:
        resolved = [results.get(d) if isinstance(d, tuple) else d for d in decisions]
        hit = next((g for g, v in zip(golds, resolved, strict=True) if v is True), None)
        if hit is not None:
            out[i] = Grade(CORRECT, None, answer, hit, 1.0, 1.0, 1.0)
        else:
            timed_out = any(v is None for v in resolved)  # None: ran over, cut, or its worker died
            out[i] = Grade(WRONG_ANSWER, None, answer, golds[0], 1.0, 0.0, 0.0, timed_out)
    return out  # type: ignore[return-value]


def classify(
    response: Any, ground_truth: Any, truncated: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Grade:
    """Evaluation verdict for one response: category, format-failure reason, answers and rewards.

    ``truncated`` (the generation ran out of tokens) turns any format failure into reason "truncated".

    >>> classify("... </think> <answer>\\\\boxed{2/4}</answer>", "\\\\frac12").category
    'correct'
    """
    return classify_batch([response], [ground_truth], [truncated], timeout_s)[0]


def grade_batch(
    responses: Sequence[Any],
    ground_truths: Sequence[Any],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    batch_timeout_s: float | None = None,
) -> list[dict[str, float]]:
    """``r1_zero_reward_fn`` for a batch: string work in this thread, sympy in ``workers`` processes.
    The time limits are ``classify_batch``'s.

    >>> grade_batch(["a </think> <answer>6</answer>"], ["5"])
    [{'format_reward': 1.0, 'answer_reward': 0.0, 'reward': 0.0}]
    """
    grades = classify_batch(responses, ground_truths, None, timeout_s, workers, batch_timeout_s)
    return [g.rewards() for g in grades]


def r1_zero_reward_fn(response: str, ground_truth: str | list[str], fast: bool = True) -> dict[str, float]:
    """Reward of one r1_zero response: ``format_reward``, ``answer_reward`` and ``reward`` (== answer).

    ``fast`` is accepted for compatibility with the reference and ignored: there is one grading path.

    >>> r1_zero_reward_fn("I add. </think> <answer>\\\\boxed{\\\\dfrac{1}{2}}</answer>", "0.5")
    {'format_reward': 1.0, 'answer_reward': 1.0, 'reward': 1.0}
    """
    del fast
    return grade_batch([response], [ground_truth])[0]


# --------------------------------------------------------------------------------------------------
# TRL reward functions


def _completion_text(completion: Any) -> str:
    # Plain-text completions are strings; conversational ones are [{"role": "assistant", "content": ...}].
    if isinstance(completion, (list, tuple)):
        parts = []
        for message in completion:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
            parts.append(content if isinstance(content, str) else "")
        return "".join(parts)
    return _as_text(completion)


def answer_reward(completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """TRL reward function: 1.0 for a correct, well-formatted answer, else 0.0; None (TRL ignores the
    sample) where the gold answer cannot be extracted from ``solution`` (see ``extract_gold``).

    The batch is graded within ``REWARD_BATCH_TIMEOUT_S``. With TRL's ``log_metric`` keyword it logs
    ``rewards/grader_timeouts``: the answers of this batch that scored 0 because grading ran out of time.

    >>> answer_reward([[{"role": "assistant", "content": "</think> <answer>72</answer>"}]], ["#### 72"])
    [1.0]
    """
    texts = [_completion_text(c) for c in completions]
    golds = [extract_gold(s) for s in solution]
    keep = [i for i, g in enumerate(golds) if g is not None]
    grades = classify_batch(
        [texts[i] for i in keep], [golds[i] for i in keep], batch_timeout_s=REWARD_BATCH_TIMEOUT_S
    )
    if (log_metric := kwargs.get("log_metric")) is not None:
        log_metric("rewards/grader_timeouts", float(sum(g.timed_out for g in grades)))
    out: list[float | None] = [None] * len(texts)
    for i, g in zip(keep, grades, strict=True):
        out[i] = g.reward
    return out


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """TRL reward function logging the format rate (register it with weight 0).

    It checks only the format gate, which is a substring test, so it does not share a cache with
    ``answer_reward``: grading twice costs microseconds and a cache would be one more thing to go stale.

    >>> format_reward(["</think> <answer>5</answer>", "5"])
    [1.0, 0.0]
    """
    texts = [_completion_text(c) for c in completions]
    return [1.0 if formatted(t) else 0.0 for t in texts]


__all__ = [
    "Grade",
    "answer_reward",
    "classify",
    "classify_batch",
    "default_workers",
    "extract_boxed",
    "extract_gold",
    "format_reward",
    "grade_batch",
    "grader_stats",
    "normalize_answer",
    "r1_zero_reward_fn",
    "shutdown_pool",
    "symbolic_equal",
    "timeout_count",
]


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker_main()
