"""Data: load NuminaMath-CoT (or any local file with the same shape), keep rows with a gold answer, carve a
seeded held-out split that training never sees, and build r1_zero prompts.

The held-out split is drawn before the tokenizer-dependent prompt-length filter, so it depends only on the
data and the seed: a base model and its trained checkpoint are always evaluated on the same problems.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from train.config import Config, ConfigError, DataConfig, resolve_path
from train.rewards_math import extract_gold

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass
class Example:
    id: int  # row index in the source file/split: stable across runs, written to heldout_ids.json
    problem: str
    gold: str  # extracted gold answer
    source: str
    prompt: str
    solution: str = ""  # the dataset's solution text; the reward extracts the gold from it again


@dataclass
class Splits:
    train: list[Example]
    heldout: list[Example]
    stats: dict = field(default_factory=dict)


def load_template(cfg: DataConfig) -> str:
    path = resolve_path(cfg.prompt_template)
    if not path.is_file():
        raise ConfigError(f"data.prompt_template: {path} not found")
    text = path.read_text()
    if "{question}" not in text:
        raise ConfigError(f"data.prompt_template: {path} has no {{question}} placeholder")
    return text


def render(template: str, question: str) -> str:
    # str.replace, not str.format: LaTeX braces in the question must stay as they are.
    return template.replace("{question}", question)


def load_rows(cfg: DataConfig) -> list[dict]:
    """The raw rows (problem, solution, source columns only); ConfigError on a missing file or column."""
    import datasets

    path = resolve_path(cfg.path)
    suffix = path.suffix.lower()
    if suffix in LOCAL_FORMATS or path.exists():
        if not path.is_file():
            raise ConfigError(f"data.path: {path} not found (a local .jsonl/.json/.parquet file or a Hub dataset id)")
        if suffix not in LOCAL_FORMATS:
            raise ConfigError(f"data.path: {path} is not .jsonl, .json or .parquet")
        datasets.disable_progress_bars()  # a local file loads in seconds; a Hub download keeps its bars
        ds = datasets.load_dataset(LOCAL_FORMATS[suffix], data_files=str(path), split="train")
        datasets.enable_progress_bars()
    else:
        try:
            ds = datasets.load_dataset(cfg.path, split=cfg.split)
        except Exception as e:  # Hub errors come in many types; all mean the same thing to the user
            raise ConfigError(f"data.path: could not load Hub dataset '{cfg.path}' split '{cfg.split}' "
                              f"({type(e).__name__}); download it or give a local file") from None
    wanted = {"problem_column": cfg.problem_column, "solution_column": cfg.solution_column}
    if cfg.source_column:
        wanted["source_column"] = cfg.source_column
    for key, col in wanted.items():
        if col not in ds.column_names:
            raise ConfigError(f"data.{key}: column '{col}' not in {cfg.path} (columns: {', '.join(ds.column_names)})")
    return ds.select_columns(list(wanted.values())).to_list()


def build_examples(cfg: Config, rows: list[dict]) -> list[Example]:
    """Every row with a gold answer as a prompted example (rows without one are left out)."""
    d = cfg.data
    template = load_template(d)
    examples = []
    for i, row in enumerate(rows):
        solution = str(row[d.solution_column] or "")
        gold = extract_gold(solution)
        if gold is None:
            continue
        source = str(row[d.source_column]) if d.source_column else "all"
        problem = str(row[d.problem_column])
        examples.append(Example(i, problem, gold, source, render(template, problem), solution))
    return examples


def build_splits(cfg: Config, rows: list[dict], tokenizer=None) -> Splits:
    """Gold extraction, held-out split, prompt-length filter. Deterministic given the data and the seed."""
    d = cfg.data
    examples = build_examples(cfg, rows)
    stats = {"rows": len(rows), "dropped_no_gold": len(rows) - len(examples)}
    if d.eval_holdout >= len(examples):
        raise ConfigError(f"data.eval_holdout={d.eval_holdout} leaves nothing to train on ({len(examples)} rows "
                          "with a gold answer); lower it")
    order = list(range(len(examples)))
    random.Random(cfg.training.seed).shuffle(order)
    heldout = sorted((examples[i] for i in order[: d.eval_holdout]), key=lambda e: e.id)
    train = [examples[i] for i in order[d.eval_holdout:]]
    if tokenizer is not None:
        lengths = prompt_lengths(tokenizer, [e.prompt for e in train])
        kept = [e for e, n in zip(train, lengths, strict=True) if n <= d.max_prompt_tokens]
        stats["dropped_long_prompt"] = len(train) - len(kept)
        train = kept
    if d.max_train_samples is not None:
        train = train[: d.max_train_samples]
    if not train:
        raise ConfigError(f"no training rows left after filtering ({stats}); raise data.max_prompt_tokens")
    stats.update(train=len(train), heldout=len(heldout))
    return Splits(train, heldout, stats)


def prompt_lengths(tokenizer, prompts: list[str], batch: int = 2048) -> list[int]:
    from tqdm import tqdm

    out: list[int] = []
    for i in tqdm(range(0, len(prompts), batch), desc="tokenizing prompts", disable=len(prompts) < 20000):
        out += [len(ids) for ids in tokenizer(prompts[i : i + batch])["input_ids"]]
    return out


def write_heldout_ids(splits: Splits, cfg: Config, out_dir: Path) -> Path:
    path = out_dir / "heldout_ids.json"
    path.write_text(json.dumps({"data": cfg.data.path, "split": cfg.data.split, "seed": cfg.training.seed,
                                "ids": [e.id for e in splits.heldout]}))
    return path


def to_trl_dataset(examples: list[Example]):
    """TRL's GRPOTrainer reads `prompt`; the other columns reach the reward functions as keyword arguments.
    `solution` is the dataset's text, not the extracted answer: the reward extracts the gold itself (its
    `None` for an unextractable gold must stay meaningful, and a bare answer like `12` is not a solution)."""
    import datasets

    return datasets.Dataset.from_dict({
        "prompt": [e.prompt for e in examples],
        "solution": [e.solution for e in examples],
        "source": [e.source for e in examples],
    })
