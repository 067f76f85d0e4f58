"""What the grader compares (train/rewards_math.py is its face): the answer of a response, the gold answer of
a data set's solution, and the ``\\boxed{...}`` both may hold.

- Answer: the text after the last ``<answer>`` with every ``</answer>`` removed (text after the closing
  tag stays in the answer). If it holds ``\\boxed``, the last box must be well formed (braced) and its
  content is the answer; otherwise the answer is wrong.
- Gold: a ground truth holding ``\\boxed`` is reduced to its last box; otherwise it is used as-is. A gold
  that is empty once normalised (``\\boxed{}``), or whose box is malformed, is no gold: nothing matches it.
"""

from __future__ import annotations

import re
from typing import Any

from train.grader_normalize import MAX_ANSWER_CHARS, THOUSANDS_RE, last_match, match_brace, normalize_answer
from train.protocol import ANSWER_CLOSE, ANSWER_OPEN

_BOXED_RE = re.compile(r"\\boxed(?![a-zA-Z])")
_FBOX_RE = re.compile(r"\\fbox(?![a-zA-Z])")


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
    last = last_match(_BOXED_RE, text) or last_match(_FBOX_RE, text)
    if last is None:
        return None
    i = last.end()
    if text.startswith("{", i):
        end = match_brace(text, i)
        return None if end is None else text[i + 1 : end]
    if allow_unbraced and text[i : i + 1] in (" ", "\t"):
        content = re.split(r"[$\n]", text[i:], maxsplit=1)[0].strip()
        return content if content and not content.startswith("{") else None
    return None


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
        gold = THOUSANDS_RE.sub("", solution.rsplit("####", 1)[1].strip())
    else:
        return None
    return None if gold is None or _no_answer(gold) else gold


def reduce_gold(ground_truth: Any) -> str | None:
    """The gold answer of a ground truth given to the grader, or None where nothing can match it.

    Reference semantics: only a ground truth holding ``\\boxed`` is reduced; anything else is used as-is.

    >>> reduce_gold("\\\\boxed{5}"), reduce_gold(7), reduce_gold("\\\\boxed{}")
    ('5', '7', None)
    """
    if isinstance(ground_truth, (int, float)) and not isinstance(ground_truth, bool):
        ground_truth = str(ground_truth)
    if not isinstance(ground_truth, str):
        return None
    gold = extract_boxed(ground_truth) if "\\boxed" in ground_truth else ground_truth
    return None if gold is None or _no_answer(gold) else gold


def as_text(x: Any) -> str:
    """A response as text: bytes are decoded, anything else that is not a string is the empty response."""
    if isinstance(x, str):
        return x
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("utf-8", "replace")
    return ""  # None or any other garbage: an empty response, which fails the format gate


def extract_answer(response: str) -> str | None:
    """The answer of a formatted response, unboxed; None when its last box is malformed.

    >>> extract_answer("x </think> <answer> \\\\boxed{\\\\boxed{5}} </answer>")
    '5'
    """
    answer = response.split(ANSWER_OPEN)[-1].replace(ANSWER_CLOSE, "")
    while "\\boxed" in answer:  # also unwraps \boxed{\boxed{5}}
        boxed = extract_boxed(answer, allow_unbraced=False)
        if boxed is None:
            return None  # malformed box: wrong, as in the reference
        answer = boxed
    return answer
