"""From launch to answer: where the wall time of one training command goes (start-up, first step, training, save,
final evaluation), through the project's own launcher.

    python bench/wall_time.py --variants ours,own_engine --out wall.json -- training.max_steps=3

Each variant runs `launch_trl.sh 1` on `bench/grpo_step.py`'s random Qwen2.5 model and synthetic problems (built
once with `--prepare` there), with this file as the entry point (GRPO_ENTRY). The trainer prints one line of its
stages (`[grpo] wall time: start-up 41.2 s, first step ...`); this script keeps it, with the command's own wall
time from launch to exit, and the evaluation's generation speed.
Variants: `ours` (the final evaluation on the trainer's colocated engine) and `own_engine` (the final evaluation
in a process and vLLM engine of its own, as when the trainer's engine cannot serve it).
A random model never writes `</answer>`: every rollout and every answer runs to its token limit, the slowest case.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {"ours": {}, "own_engine": {"WALL_OWN_ENGINE": "1"}}


def stages(line: str) -> dict[str, float]:
    """The trainer's `wall time:` line as numbers.

    >>> stages("[grpo] wall time: start-up 40.0 s, first step 9.5 s, total 49.5 s")
    {'start-up': 40.0, 'first step': 9.5, 'total': 49.5}
    """
    return {k: float(v) for k, v in re.findall(r"([a-z][a-z -]*?) ([\d.]+) s", line.split("wall time:", 1)[1])}


def main() -> int:
    if os.environ.get("WALL_ENTRY"):  # started by launch_trl.sh as GRPO_ENTRY
        import step3_GRPO.train_trl as tt

        if os.environ.get("WALL_OWN_ENGINE"):
            tt.colocated_engine = lambda *a, **k: None
        a = tt.parse_args(sys.argv[1:])
        return tt.run(a.config, a.overrides)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="ours,own_engine")
    ap.add_argument("--work", default="/tmp/grpo-bench", help="bench/grpo_step.py --prepare's folder")
    ap.add_argument("--model", default="1.5B")
    ap.add_argument("--out", default=None)
    ap.add_argument("overrides", nargs="*", help="config overrides for every variant (after --)")
    args = ap.parse_args()
    work = Path(args.work)
    model = work / f"qwen2.5-{args.model}-random"
    results = {"model": args.model, "overrides": args.overrides, "variants": {}}
    for variant in args.variants.split(","):
        out = work / f"wall-{variant}"
        config = ["--config", str(ROOT / "config/grpo_config.yaml"), f"model.name_or_path={model}",
                  f"data.path={work / 'problems.jsonl'}", "data.source_column=source", "data.eval_holdout=500",
                  f"checkpointing.output_dir={out}", "checkpointing.resume=never", "checkpointing.overwrite=true",
                  "logging.wandb=off", *args.overrides]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRPO_ENTRY": __file__, "WALL_ENTRY": "1",
               "PYTHON": sys.executable, **VARIANTS[variant]}
        t = time.perf_counter()
        r = subprocess.run([str(ROOT / "launch_trl.sh"), "1", *config], env=env, capture_output=True, text=True)
        wall = round(time.perf_counter() - t, 1)
        log = r.stdout + r.stderr
        (work / f"wall-{variant}.log").write_text(log)
        line = next((x for x in log.splitlines() if "wall time:" in x), None)
        speed = re.findall(r"\[eval\] (\d+) tokens generated in ([\d.]+) s", log)
        results["variants"][variant] = {"rc": r.returncode, "launch_to_exit_s": wall,
                                        "stages_s": stages(line) if line else None,
                                        "eval_tokens": [int(n) for n, _ in speed],
                                        "eval_generate_s": [float(s) for _, s in speed]}
        print(f"[wall] {variant}: {json.dumps(results['variants'][variant])}", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
