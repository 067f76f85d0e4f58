"""The learning run's results as a markdown table (bench/offline/learning_run.sh writes the folders it reads).

    python bench/offline/learning_summary.py outputs/learning_run           # every evaluation and run, one row each
    python bench/offline/learning_summary.py --line outputs/learning_run/grpo   # one evaluation or run, one line
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def row(folder: Path) -> dict | None:
    """One evaluation folder (or a run folder, whose final model's training log is read too)."""
    summary = folder / "eval_summary.json"
    if not summary.is_file():
        return None
    s = json.loads(summary.read_text())
    lo, hi = s["accuracy_ci95"]
    out = {
        "evaluation": folder.name,
        "data": Path(s["dataset"]["path"]).parent.name + "/" + Path(s["dataset"]["path"]).name,
        "T": s["sampling"]["temperature"],
        "n": s["total_samples"],
        "accuracy": f"{100 * s['accuracy']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]",
        "format": f"{100 * s['format_accuracy']:.1f}%",
        "best constant": _pct(s.get("best_constant_accuracy")),
        "median think tokens": s.get("median_think_tokens"),
        "mean response tokens": round(s["mean_response_tokens"]["all"] or 0),
    }
    state = folder / "final_model" / "trainer_state.json"
    if state.is_file():
        steps = [e for e in json.loads(state.read_text())["log_history"] if "reward" in e]
        if steps:
            last = steps[-5:]
            out["steps"] = steps[-1].get("step")
            out["train reward (last 5 steps)"] = round(statistics.mean(e["reward"] for e in last), 3)
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--line", action="store_true", help="one folder, one line")
    args = ap.parse_args(argv)
    if args.line:
        r = row(args.folder)
        print(" ".join(f"{k}={v}" for k, v in r.items()) if r else "no eval_summary.json")
        return 0
    rows = [r for d in sorted(p for p in args.folder.iterdir() if p.is_dir()) if (r := row(d))]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
