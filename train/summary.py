"""The evaluation summary's statistics from per-sample records: pure functions, no model and no files.

>>> s = summarize([{"prompt_id": 0, "source": "amc", "category": "correct", "format_reason": None,
...                 "num_tokens": 10, "truncated": False}])
>>> s["accuracy"], s["category_1_correct"], s["source_breakdown"]["amc"]["total"]
(1.0, 1, 1)
>>> s["best_constant_accuracy"], s["median_think_tokens"]  # the records carry no gold and no think length
(None, None)
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from train.protocol import STOP

CATEGORIES = ("correct", "wrong_answer", "format_failure")
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def summarize(records: list[dict], *, n: int = 1) -> dict:
    """The statistics of the summary JSON from per-sample records (pure: no model, no files).

    Records need `prompt_id`, `source`, `category`, `format_reason`, `num_tokens`, `truncated`. With n > 1
    samples per problem the CI treats samples as independent (they are not: it is then too narrow), and
    pass@k (unbiased estimator, Chen et al. 2021) is reported for k = 1, 2, 4, ..., n.
    """
    total = len(records)
    if total == 0:
        raise ValueError("summarize() needs at least one record")
    counts = Counter(r["category"] for r in records)
    unknown = set(counts) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; expected {CATEGORIES}")
    correct, wrong, fmt = (counts[c] for c in CATEGORIES)
    lo, hi = wilson_interval(correct, total)
    truncated = sum(bool(r["truncated"]) for r in records)
    out = {
        "total_samples": total,
        "num_problems": len({r["prompt_id"] for r in records}),
        "samples_per_problem": n,
        "accuracy": correct / total,
        "format_accuracy": (correct + wrong) / total,  # format_reward == 1
        "category_1_correct": correct,
        "category_2_wrong_answer": wrong,
        "category_3_format_failure": fmt,
        "categories": {c: {"count": counts[c], "percent": 100.0 * counts[c] / total} for c in CATEGORIES},
        "accuracy_ci95": [lo, hi],
        "ci_method": "wilson, over samples" + (f" ({n} per problem: not independent, too narrow)" if n > 1 else ""),
        "format_failure_reasons": dict(Counter(r["format_reason"] or "unknown"
                                               for r in records if r["category"] == "format_failure")
                                       .most_common()),
        "mean_response_tokens": {
            "all": _mean(r["num_tokens"] for r in records),
            **{c: _mean(r["num_tokens"] for r in records if r["category"] == c) for c in CATEGORIES},
        },
        "truncated": truncated,
        "truncation_rate": truncated / total,
        "grader_timeouts": sum(bool(r.get("grader_timed_out")) for r in records),  # scored wrong, as in training
        **best_constant(records),
        "median_think_tokens": _median(r["think_tokens"] for r in records if r.get("think_tokens") is not None),
    }
    if n > 1:
        per_problem: dict = defaultdict(list)
        for r in records:
            per_problem[r["prompt_id"]].append(r["category"] == "correct")
        ks = sorted({2**i for i in range(int(math.log2(n)) + 1)} | {n})
        out["pass_at_k"] = {str(k): _mean(pass_at_k(len(v), sum(v), k) for v in per_problem.values()) for k in ks}
        out["mean_at_k"] = {str(n): out["accuracy"]}  # mean accuracy of the n samples of each problem
    by_source: dict = defaultdict(Counter)
    for r in records:
        by_source[r["source"]][r["category"]] += 1
    out["source_breakdown"] = {
        src: {"total": sum(c.values()), **{k: c[k] for k in CATEGORIES}, "accuracy": c["correct"] / sum(c.values()),
              "format_accuracy": (c["correct"] + c["wrong_answer"]) / sum(c.values())}
        for src, c in sorted(by_source.items(), key=lambda kv: -sum(kv[1].values()))
    }
    return out


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (sensible at 0% and 100%, unlike the normal approximation).

    >>> [round(x, 3) for x in wilson_interval(40, 100)]
    [0.309, 0.498]
    """
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # the exact endpoints at 0% and 100% (floating point leaves 0.9999999999999999)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == total else min(1.0, centre + half)
    return (lo, hi)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    >>> pass_at_k(4, 2, 1), round(pass_at_k(4, 2, 2), 4), pass_at_k(4, 0, 4)
    (0.5, 0.8333, 0.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def best_constant(records: list[dict], candidates: int = 5) -> dict:
    """The accuracy of answering every problem with one constant, graded like any answer: the best of the
    `candidates` most frequent gold answers. A model that learned to guess rather than to reason scores near
    this; a reasoning model far above it.

    >>> best_constant([{"prompt_id": i, "gold": g} for i, g in enumerate(["2", "2.0", "3", "\\frac{1}{2}"])])
    {'best_constant_accuracy': 0.5, 'best_constant_answer': '2'}
    """
    from train.rewards_math import THINK_ANSWER, classify_batch, normalize_answer

    golds = list({r["prompt_id"]: r["gold"] for r in records if r.get("gold") is not None}.values())
    if not golds:
        return {"best_constant_accuracy": None, "best_constant_answer": None}
    spelled = {}  # one spelling of each normalised gold, as the model would write it
    for g in golds:
        spelled.setdefault(normalize_answer(g), g)
    counts = Counter(normalize_answer(g) for g in golds)
    best = (-1, "")
    for norm, _ in counts.most_common(candidates):
        grades = classify_batch([f"{THINK_ANSWER} {spelled[norm]} {STOP}"] * len(golds), golds, [False] * len(golds))
        best = max(best, (sum(g.category == "correct" for g in grades), spelled[norm]), key=lambda b: b[0])
    return {"best_constant_accuracy": best[0] / len(golds), "best_constant_answer": best[1]}


def _median(values) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None
