"""Normalisation of answer and gold strings for the grader (train/rewards_math.py is its face).

Both sides of a comparison go through ``normalize_answer``: ``\\left``/``\\right``, ``\\dfrac``, units and
am/pm, ``\\text{}``, ``^\\circ``, ``\\%``, ``$``, thousands separators, ``inf``/``pi`` as words, ``\\{ \\}``
sets, ``\\frac12`` shorthand, ``x =`` prefix, integers within 1e-7, ... The result stays valid LaTeX, so
the symbolic step can parse it. Pure string work, safe from any thread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# Answers (and golds) longer than this are compared as raw strings only: real final answers are short,
# and it bounds the regex work on adversarial 100 KB completions.
MAX_ANSWER_CHARS = 1000

_BRACKET_RES = {"{": re.compile(r"[{}]"), "(": re.compile(r"[()]")}


def last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last match of ``pattern`` in ``text``, or None."""
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - keeping the last one is the point
        pass
    return last


def match_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` (or ``)``) closing the ``{`` (or ``(``) at ``open_idx``, or None if unbalanced.

    >>> match_brace("{a{b}}c", 0), match_brace("(1+(2))", 0), match_brace("(1", 0)
    (5, 6, None)
    """
    depth = 0
    for m in _BRACKET_RES[text[open_idx]].finditer(text, open_idx):
        depth += 1 if m.group() in "{(" else -1
        if depth == 0:
            return m.start()
    return None


# 1,000,000 -> 1000000 (a comma before exactly three digits); (1,2) is left alone.
THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


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
# sqrt written as a word, as models do ("2*sqrt(3)"): read as \sqrt, as the reference's letter guard does.
_WORD_SQRT_RE = re.compile(r"(?<![a-zA-Z\\])sqrt(?![a-zA-Z])", re.IGNORECASE)
# A decimal this close to an integer is that integer (the reference's tolerance): 4.99999999 is 5.
INTEGER_TOLERANCE = 1e-7
_DECIMAL_RE = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?e[-+]?\d{1,3})")


def _unwrap_macros(s: str, macro_re: re.Pattern[str] = _TEXT_MACRO_RE) -> str:
    # \text{X} -> X etc.; one macro per pass, so it is linear in the number of macros.
    while (m := macro_re.search(s)) is not None:
        end = match_brace(s, m.end() - 1)
        if end is None:
            return s  # malformed: leave the rest as it is, it will simply not match
        s = s[: m.start()] + s[m.end() : end] + s[end + 1 :]
    return s


def _read_word_sqrt(s: str) -> str:
    """``sqrt`` as a word is ``\\sqrt``, and the parentheses right after it its braces (when balanced), so that
    ``(1+sqrt(5))/2`` reads as ``(1+\\sqrt{5})/2``: valid LaTeX, and no four unknown letters."""
    pos = 0
    while (m := _WORD_SQRT_RE.search(s, pos)) is not None:
        arg = len(s) - len(s[m.end() :].lstrip())  # the first character after sqrt that is not a space
        end = match_brace(s, arg) if s.startswith("(", arg) else None
        if end is None:  # sqrt3, sqrt{3}, or unbalanced: the command alone, the shorthand rule does the rest
            s = s[: m.start()] + "\\sqrt" + s[m.end() :]
        else:
            s = s[: m.start()] + "\\sqrt{" + s[arg + 1 : end] + "}" + s[end + 1 :]
        pos = m.start() + len("\\sqrt")  # an inner sqrt(...) is read on the next pass
    return s


def _strip_trailing_units(s: str) -> str:
    # A trailing \text{...} of words after a value is a unit ("36 \text{ units}", "5 \mbox{ cm}").
    last = last_match(_UNIT_MACRO_RE, s)
    if last is not None:
        end = match_brace(s, last.end() - 1)
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
    if (m := re.fullmatch(r"\\(?:text|textrm|mbox|mathrm|textbf)\s*\{(.*)\}", s)) and match_brace(
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
    s = _read_word_sqrt(s)
    # "x = 5" -> "5" when the left side is a short name (reference rule); equations stay whole.
    if s.count("=") == 1 and len(s.split("=")[0].strip()) <= 2:
        s = s.split("=")[1].strip()
    s = _MIXED_SLASH_RE.sub(r"\1\\frac{\2}{\3}", s)  # "3 1/2" is three and a half
    s = _fix_shorthand(s)
    s = _DIGIT_SPACE_RE.sub(SPACE_MARK, s)
    # Drop spaces, except one between a command and a letter: "\sin x" must not become "\sinx".
    s = _SPACE_RE.sub(lambda m: m.group(1) + " " if m.group(1) else "", s)
    s = THOUSANDS_RE.sub("", s)  # 1,000,000 -> 1000000; (1,2) is left alone
    s = re.sub(r"(?<![\d.])\.(?=\d)", "0.", s)  # .5 -> 0.5
    s = _strip_outer_braces(s)
    # Text answers are case-insensitive (reference); commands keep their case (\Pi, \Delta).
    s = _LOWER_RE.sub(lambda m: m.group(1) or m.group(0).lower(), s)
    if _DECIMAL_RE.fullmatch(s) and math.isfinite(x := float(s)) and 0 < abs(x - round(x)) <= INTEGER_TOLERANCE:
        s = str(round(x))
    return s
