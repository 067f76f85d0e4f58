"""Speed of the reward (train/rewards_math.py): per-call latency, 1024-completion batches, and the batch
ceiling of the training reward on batches built to exceed it.

Responses are the reference vectors (tests/fixtures/r1_zero_vectors_dev.jsonl: real MATH-500 answers,
equivalences, 48k-char reasonings) replicated to the batch size, with adversarial ones mixed in
(100 KB strings, unbalanced braces, deep nesting, broken LaTeX). Prints a small table.

    .venv/bin/python bench/reward_speed.py [--n 1024] [--workers 2] [--repeats 5] [--batch-timeout 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path

from train import rewards_math as rm

ROOT = Path(__file__).resolve().parents[1]

VECTORS = ROOT / "tests/fixtures/r1_zero_vectors_dev.jsonl"
HANG = "x </think> <answer>9^{9^{9^{%d}}}</answer>"  # sympy never finishes: hits the time limit
# Just under the length at which answers are compared as raw strings: the most string work one answer costs.
LONG = ("\\frac{1}{2}\\text{ cm} 1 000 {,} pi inf \\{ " * 20)[:980]

ADVERSARIAL = [
    ("a" * 100_000 + " </think> <answer>5</answer>", "5"),
    ("x </think> <answer>" + "1+" * 50_000 + "</answer>", "5"),
    ("x </think> <answer>" + "{" * 100_000 + "</answer>", "5"),
    ("x </think> <answer>\\boxed{" + "x" * 100_000 + "</answer>", "5"),
    ("x </think> <answer>" + "{" * 495 + "5" + "}" * 495 + "</answer>", "5"),
    ("x </think> <answer>\\frac\\frac\\sqrt^_{}</answer>", "\\frac12"),
    ("x </think> <answer>" + "(" * 300 + "x" + ")" * 300 + "</answer>", "x"),
    ("x </think> <answer>\ud800\x00 😀 ∑ √ ∞</answer>", "\\infty"),
]


def load_cases(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["response"], r["ground_truth"]) for r in rows]


def batch_of(cases: list[tuple[str, str]], n: int, adversarial_every: int = 16) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        if i % adversarial_every == adversarial_every - 1:
            out.append(ADVERSARIAL[(i // adversarial_every) % len(ADVERSARIAL)])
        else:
            out.append(cases[i % len(cases)])
    return out


def all_symbolic(n: int) -> list[tuple[str, str]]:
    # Every answer distinct and needing sympy, half of them wrong: the worst case for the worker pool
    # (no dedupe, nothing decided by strings or numbers).
    return [
        (f"x </think> <answer>\\frac{{{2 * k}x+{2 * k + k % 2}}}{{{4 * k}}}</answer>", "\\frac{x+1}{2}")
        for k in range(1, n + 1)
    ]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=Path, default=VECTORS)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=rm.default_workers())
    ap.add_argument("--timeout", type=float, default=rm.DEFAULT_TIMEOUT_S)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-timeout", type=float, default=rm.REWARD_BATCH_TIMEOUT_S,
                    help="the training reward's ceiling for one batch (seconds)")
    args = ap.parse_args()

    cases = load_cases(args.vectors)
    batch = batch_of(cases, args.n)
    responses, golds = [r for r, _ in batch], [g for _, g in batch]
    grade = lambda rs, gs: rm.grade_batch(rs, gs, timeout_s=args.timeout, workers=args.workers)  # noqa: E731

    rows: list[tuple[str, str]] = []
    cold = timed(lambda: grade(responses, golds))  # includes starting the worker processes
    rows.append((f"grade_batch {args.n}, cold (workers start)", f"{cold:.2f} s"))

    per_call = []
    for response, gold in cases + ADVERSARIAL:
        per_call.append(timed(lambda r=response, g=gold: rm.r1_zero_reward_fn(r, g)) * 1000)
    q = statistics.quantiles(per_call, n=100)
    rows.append(
        (f"r1_zero_reward_fn, {len(per_call)} calls: median", f"{statistics.median(per_call):.2f} ms")
    )
    rows.append(("  p90 / p99 / max", f"{q[89]:.2f} / {q[98]:.2f} / {max(per_call):.1f} ms"))

    warm = [timed(lambda: grade(responses, golds)) for _ in range(args.repeats)]
    n_adv = sum(1 for b in batch if b in ADVERSARIAL)
    label = f"grade_batch {args.n} ({n_adv} adversarial), warm"
    rows.append((label, f"{statistics.median(warm):.2f} s (max {max(warm):.2f})"))

    sym = all_symbolic(args.n)
    t_sym = timed(lambda: grade([r for r, _ in sym], [g for _, g in sym]))
    rows.append((f"grade_batch {args.n}, all distinct + symbolic, half wrong", f"{t_sym:.2f} s"))

    before = rm.timeout_count()
    with_hangs = responses[:-4] + [HANG % k for k in range(2, 6)]  # distinct, so not deduplicated
    t_hang = timed(lambda: grade(with_hangs, golds[:-4] + ["\\frac13"] * 4))
    label = f"grade_batch {args.n} with 4 sympy hangs (limit {args.timeout:g} s)"
    rows.append((label, f"{t_hang:.2f} s, {rm.timeout_count() - before} timeouts"))

    # The training reward's batch ceiling, on batches that would take far longer without it.
    bounded = {
        "all distinct + symbolic": sym,
        "all distinct sympy hangs": [(HANG % k, "\\frac13") for k in range(2, args.n + 2)],
        f"all distinct {len(LONG)}-char answers": [(f"x </think> <answer>{LONG}{k}</answer>", "\\frac13")
                                                  for k in range(args.n)],
        "all 100 KB adversarial": [(r.replace("</answer>", f"{k}</answer>"), g)
                                   for k, (r, g) in enumerate(ADVERSARIAL * (args.n // len(ADVERSARIAL)))],
    }
    for name, cases in bounded.items():
        grade([r for r, _ in sym[:4]], [g for _, g in sym[:4]])  # workers killed by the previous row restart
        before = rm.grader_stats()
        elapsed = timed(lambda c=cases: rm.grade_batch([r for r, _ in c], [g for _, g in c], timeout_s=args.timeout,
                                                       workers=args.workers, batch_timeout_s=args.batch_timeout))
        after = rm.grader_stats()
        cut, timeouts = after["cut"] - before["cut"], after["timeouts"] - before["timeouts"]
        label = f"{len(cases)}, {name}, ceiling {args.batch_timeout:g} s"
        rows.append((label, f"{elapsed:.2f} s, {cut} cut, {timeouts} timeouts"))

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = f"math-verify {version('math-verify')}, sympy {version('sympy')}"
    print(f"python {platform.python_version()}, {versions}, {cpus} CPUs, workers={args.workers}")
    width = max(len(k) for k, _ in rows)
    print(f"| {'measure':<{width}} | result |\n|{'-' * (width + 2)}|--------|")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")


if __name__ == "__main__":
    main()
