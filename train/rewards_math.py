"""Reward function and grader for r1_zero-style math answers.

One module decides the training reward and the evaluation verdict, so the two can never disagree.
It follows CS336's ``r1_zero_reward_fn`` (Dr. GRPO / understand-r1-zero ``math_grader.py``), rewritten
on our own normalisation plus math-verify for the symbolic step. This file is the grader's face; its
parts live beside it:

- Format gate (here): the response must contain ``</think> <answer>`` (one space) and ``</answer>``;
  otherwise every reward is 0 and the ground truth is not looked at.
- Answer and gold (train/grader_extract.py): the text after the last ``<answer>``, its last box if it
  holds one; a ground truth holding ``\\boxed`` is reduced to its last box. A gold that is empty once
  normalised (``\\boxed{}``), or whose box is malformed, is no gold: nothing matches it.
- Equivalence: both sides are normalised (train/grader_normalize.py: ``\\left``/``\\right``, ``\\dfrac``,
  units and am/pm, ``\\text{}``, ``^\\circ``, ``\\%``, ``$``, thousands separators, ``inf``/``pi``/``sqrt``
  as words, ``\\{ \\}`` sets, ``\\frac12`` shorthand, ``x =`` prefix, integers within 1e-7, ...), compared as
  strings, then as exact numbers (train/grader_equal.py), then symbolically (train/grader_symbolic.py) in
  worker processes with a time limit (train/grader_pool.py).
  Tuples and intervals compare element-wise with matching brackets; bare comma lists in any order.
  An integer gold needs an integer-looking answer (``10^3`` is not accepted for ``1000``).
- ``reward == answer_reward``: the format only gates, a well-formatted wrong answer earns 0.
- Where the reference is mathematically wrong we are right instead (it accepted ``\\frac{x+1}{2}`` for
  ``x+\\frac12`` and ``\\sqrt[3]{8}`` for ``2\\sqrt2``, rejected ``2/4`` for ``\\frac12``); docs/grader.md
  lists every remaining disagreement.

Each symbolic comparison has its own time limit: one that runs over scores 0 and ``timeout_count()`` goes
up. The training reward also bounds a whole batch (``REWARD_BATCH_TIMEOUT_S``): what is not graded by then
scores 0 and is counted as cut. Everything else is pure string work in the caller's thread, safe to call
from any thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from train.grader_equal import decide
from train.grader_extract import as_text, extract_answer, extract_boxed, extract_gold, reduce_gold
from train.grader_normalize import normalize_answer
from train.grader_pool import count_stat, default_workers, grader_stats, run_symbolic, shutdown_pool, timeout_count
from train.grader_symbolic import symbolic_equal
from train.protocol import ANSWER_CLOSE, ANSWER_OPEN, THINK_ANSWER


def formatted(response: str) -> bool:
    """The format gate: `</think> <answer>` and `</answer>` are both in the response."""
    return THINK_ANSWER in response and ANSWER_CLOSE in response


DEFAULT_TIMEOUT_S = 1.0
# The training reward's ceiling for one batch, whatever it holds: the worst legitimate batch measured (1,024
# distinct answers that all need sympy, 2 workers) took 1.8 s, while each answer that sends sympy into its
# time limit costs ~1 s of a worker. What is not graded by then scores 0 and is counted as cut.
REWARD_BATCH_TIMEOUT_S = 2.0

CORRECT, WRONG_ANSWER, FORMAT_FAILURE = "correct", "wrong_answer", "format_failure"
MISSING_THINK_ANSWER, MISSING_ANSWER_CLOSE = "missing_think_answer", "missing_answer_close"
TRUNCATED = "truncated"


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
        response = as_text(raw)
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
        answer = extract_answer(response)
        gts = list(gt) if isinstance(gt, (list, tuple)) else [gt]
        golds = [g for g in map(reduce_gold, gts) if g is not None]
        if answer is None or not golds:
            out[i] = Grade(WRONG_ANSWER, None, answer, golds[0] if golds else None, 1.0, 0.0, 0.0)
            continue
        decisions = [decide(answer, gold) for gold in golds]
        open_items.append((i, answer, golds, [tuple(d) if isinstance(d, list) else d for d in decisions]))

    # Symbolic work only where strings could not decide and no gold already matched.
    jobs = list(
        dict.fromkeys(d for *_, ds in open_items if True not in ds for d in ds if isinstance(d, tuple))
    )
    count_stat("cut", cut)
    budget = max(0.0, deadline - time.monotonic())
    results = dict(zip(jobs, run_symbolic([list(j) for j in jobs], timeout_s, workers, budget), strict=True))
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
    return as_text(completion)


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
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "THINK_ANSWER",
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
