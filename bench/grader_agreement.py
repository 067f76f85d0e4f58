"""Agreement of the grader (train/rewards_math.py) with the reference's recorded verdicts, per group.

Prints the table of docs/grader.md; --list adds every case where the answer reward differs.

    .venv/bin/python bench/grader_agreement.py [--vectors tests/fixtures/r1_zero_vectors_dev.jsonl] [--list]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from train.rewards_math import classify_batch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=Path, default=ROOT / "tests/fixtures/r1_zero_vectors_dev.jsonl")
    ap.add_argument("--list", action="store_true", help="list the cases whose answer reward differs")
    args = ap.parse_args()

    rows = [json.loads(line) for line in args.vectors.read_text().splitlines() if line.strip()]
    # A generous limit: the figure is about the grading rules, not about how loaded the machine is.
    grades = classify_batch([r["response"] for r in rows], [r["ground_truth"] for r in rows], timeout_s=5.0)
    pairs = list(zip(rows, grades, strict=True))
    groups: dict[str, list] = {}
    for r, g in pairs:
        groups.setdefault(r["group"], []).append((r, g))
    quirk = groups.pop("quirk", [])
    # The quirk group records where the reference is wrong: it is shown apart, as in docs/grader.md.
    groups.update({"all but quirk": [p for p in pairs if p[0]["group"] != "quirk"], "quirk": quirk, "all": pairs})

    print("| group | cases | format_reward agrees | answer_reward agrees |\n|---|---:|---:|---:|")
    for name, members in groups.items():
        fmt = sum(g.format_reward == r["expected"]["format_reward"] for r, g in members)
        ans = sum(g.answer_reward == r["expected"]["answer_reward"] for r, g in members)
        n = len(members)
        print(f"| {name} | {n} | {fmt} ({fmt / n:.1%}) | {ans} ({ans / n:.1%}) |")
    if args.list:
        for r, g in pairs:
            if g.answer_reward != r["expected"]["answer_reward"]:
                print(f"{r['id']}: ours {g.answer_reward:g}, reference {r['expected']['answer_reward']:g}: {r['note']}")


if __name__ == "__main__":
    main()
