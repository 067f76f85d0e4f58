"""Data: load NuminaMath-CoT (or any local file with the same shape), keep rows with a problem and a gold answer,
once per problem, carve a seeded held-out split that training never sees, and build r1_zero prompts.

A problem repeated in the data (NuminaMath-CoT repeats some across its sources) is kept once, its first row with a
gold answer, before the split: otherwise its copies could land on both sides, and the held-out score would count
problems the model trained on. Problems are compared as text with Unicode compatibility forms folded and runs of
white space made one space (not case: in math, x and X are different unknowns). Rows without a problem, without
a gold answer, or repeating one are dropped and counted.

The held-out split is drawn before the tokenizer-dependent prompt-length filter, so it depends only on the
data and the seed: a base model and its trained checkpoint are always evaluated on the same problems.

The rows stay in Arrow, memory-mapped from datasets' cache (NuminaMath-CoT is 860k rows, 1.3 GB of text):
the per-row work (gold answers; prompts and their lengths) runs once as `Dataset.map`, whose results are
cached beside the data, keyed by the data, the template, this code and the grader's, and the tokenizer. The
first process on a machine computes them; the others read them (train_trl.py orders this).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from train.config import Config, ConfigError, DataConfig, resolve_path
from train.rewards_math import extract_gold

if TYPE_CHECKING:
    import datasets
    import numpy as np

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
EXAMPLE_COLUMNS = ["id", "problem", "gold", "source", "prompt", "solution"]  # the fields of Example
TRL_COLUMNS = ["prompt", "solution", "source"]
QUIET_BELOW = 20000  # rows: smaller data is done in seconds, without progress bars


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
    train: datasets.Dataset  # EXAMPLE_COLUMNS in training order, memory-mapped (860k rows would not fit in RAM)
    heldout: list[Example]
    stats: dict = field(default_factory=dict)


def load_template(cfg: DataConfig, tokenizer=None) -> str:
    """The prompt template as text with a {question} placeholder: the file as it is, or (data.use_chat_template) the
    conversation made of it, rendered by the tokenizer's chat template."""
    path = resolve_path(cfg.prompt_template)
    if not path.is_file():
        raise ConfigError(f"data.prompt_template: {path} not found")
    text = path.read_text()
    if "{question}" not in text:
        raise ConfigError(f"data.prompt_template: {path} has no {{question}} placeholder")
    return as_conversation(text, tokenizer, path) if cfg.use_chat_template else text


# the r1_zero text form: the instruction, a `User: ` line with the question, and `Assistant: ` with the turn's opening
TURNS = re.compile(r"(?P<system>.*?)\n?User: (?P<user>.*?)\nAssistant: ?(?P<opening>.*)", re.S)


def as_conversation(template: str, tokenizer, path: Path) -> str:
    r"""The r1_zero text template as a conversation in the model's own chat template: the instruction before `User:`
    is the system message, the user's message holds {question}, and the assistant turn is opened with the text after
    `Assistant:` (`<think>`). The result is a text template again, filled by `render` like a plain one.

    >>> from types import SimpleNamespace
    >>> chat = SimpleNamespace(chat_template="...", bos_token=None, apply_chat_template=lambda m, **kw: "".join(
    ...     f"<{x['role']}>{x['content']}</{x['role']}>" for x in m) + "<assistant>")
    >>> as_conversation("Be brief.\nUser: {question}\nAssistant: <think>", chat, Path("p"))
    '<system>Be brief.</system><user>{question}</user><assistant><think>'
    """
    if tokenizer is None:
        raise ValueError("data.use_chat_template: the prompts need the model's tokenizer")
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"data.use_chat_template: the tokenizer of {getattr(tokenizer, 'name_or_path', 'the model')} "
                          "has no chat template; set data.use_chat_template=false (the template's text as it is)")
    turns = TURNS.fullmatch(template)
    if turns is None:
        raise ConfigError(f"data.prompt_template: {path} has no 'User: ' and 'Assistant: ' lines to make a "
                          "conversation of (data.use_chat_template); write it in the r1_zero form "
                          "(config/prompts/r1_zero.prompt)")
    messages = [{"role": "system", "content": turns["system"]}] if turns["system"].strip() else []
    messages.append({"role": "user", "content": turns["user"]})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + turns["opening"]
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]  # the tokenizer adds it again when it encodes the prompt
    if "{question}" not in text:
        raise ConfigError(f"data.use_chat_template: the chat template of {tokenizer.name_or_path} changed the "
                          "{question} placeholder; set data.use_chat_template=false")
    return text


def render(template: str, question: str) -> str:
    # str.replace, not str.format: LaTeX braces in the question must stay as they are.
    return template.replace("{question}", question)


# ---------------------------------------------------------------------------------------------- loading
def load_rows(cfg: DataConfig) -> datasets.Dataset:
    """The raw rows (problem, solution, source columns only) as a datasets.Dataset memory-mapped from datasets'
    cache; ConfigError on a missing, empty or unreadable file, or a missing column."""
    import datasets

    path = resolve_path(cfg.path)
    suffix = path.suffix.lower()
    if suffix in LOCAL_FORMATS or path.exists():
        if not path.is_file():
            raise ConfigError(f"data.path: {path} not found (a local .jsonl/.json/.parquet file or a Hub dataset id)")
        if suffix not in LOCAL_FORMATS:
            raise ConfigError(f"data.path: {path} is not .jsonl, .json or .parquet")
        with progress_bars(False):  # a local file loads in seconds; a Hub download keeps its bars
            ds = load_local(path, LOCAL_FORMATS[suffix])
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
    if len(ds) == 0:
        raise ConfigError(f"data.path: {cfg.path} has no rows")
    return ds.select_columns(list(wanted.values()))


def load_local(path: Path, fmt: str) -> datasets.Dataset:
    """A local file through datasets (converted to Arrow once, then memory-mapped); a file that cannot be read
    is named with what is wrong in it, in one line."""
    import datasets

    size = path.stat().st_size
    if size == 0:
        raise ConfigError(f"data.path: {path} is empty")
    if fmt == "parquet":
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(max(0, size - 4))
            tail = f.read(4)
        if head != b"PAR1" or tail != b"PAR1":  # Parquet starts and ends with this marker
            what = "cut off (no Parquet footer)" if head == b"PAR1" else "not a Parquet file"
            raise ConfigError(f"data.path: {path} is {what}; write it again with a Parquet writer")
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_metadata(path).num_rows
        except pa.ArrowException as e:
            raise ConfigError(f"data.path: {path} is a damaged Parquet file ({e}); write it again") from None
        if rows == 0:  # datasets would say only "corresponds to no data"
            raise ConfigError(f"data.path: {path} has no rows")
    try:
        return datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as e:  # the readers fail in many types (ArrowInvalid, DatasetGenerationError, ...)
        why = json_problem(path) if fmt == "json" else None
        if why is None:
            root = e
            while root.__cause__ or root.__context__:
                root = root.__cause__ or root.__context__
            first_line = (str(root).splitlines() or [""])[0][:200]
            why = f"could not be read as {fmt} ({type(root).__name__}: {first_line})"
        raise ConfigError(f"data.path: {path} {why}") from None


def json_problem(path: Path) -> str | None:
    """Where a JSON Lines file goes wrong ("line N ..."), or None when every line is a JSON object. Only read
    after the loader failed, so its cost never falls on a good file."""
    if path.suffix.lower() == ".json":  # one JSON document (datasets also reads JSON Lines named .json)
        try:
            json.loads(path.read_text(errors="replace"))
            return None
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":  # "Extra data" after the first value: JSON Lines, checked below
                return f"line {e.lineno} is not valid JSON ({e.msg}); fix that line"
    rows = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if not any(rest.strip() for rest in f):
                    return (f"line {n}, the last, is cut off ({e.msg}): the file was not completely written; "
                            "copy it again or delete that line")
                return f"line {n} is not valid JSON ({e.msg}); fix or delete that line"
            if not isinstance(row, dict):
                return f"line {n} is not a JSON object (one {{\"problem\": ..., \"solution\": ...}} per line)"
            rows += 1
    return None if rows else "has no rows (only blank lines)"


# ------------------------------------------------------------------------------------ per-row work, cached
@contextlib.contextmanager
def progress_bars(shown: bool):
    import datasets

    def show(on: bool) -> None:
        datasets.enable_progress_bars() if on else datasets.disable_progress_bars()

    was_shown = not datasets.are_progress_bars_disabled()
    show(shown)
    try:
        yield
    finally:
        show(was_shown)


def cache_key(*parts) -> str:
    """The fingerprint of a cached map. datasets hashes a module's function by its name, not its code, so the
    code that computes the columns (the functions below and the grader's gold extraction) is part of the key:
    a change there recomputes them instead of serving stale gold answers."""
    import inspect

    from datasets.fingerprint import Hasher

    from train import grader_extract, grader_normalize, rewards_math

    grader = (rewards_math, grader_extract, grader_normalize)  # the face and the parts extract_gold runs
    code = "".join(inspect.getsource(f) for f in (_golds, _prompts, render, *grader))
    return Hasher.hash([hashlib.sha256(code.encode()).hexdigest(), *parts])


def _golds(problems: list, solutions: list, ids: list[int]) -> dict:
    return {"id": ids, "gold": [extract_gold(str(s or "")) for s in solutions],
            "problem_key": [problem_key(p) for p in problems]}


def problem_key(problem) -> str | None:
    """What a problem is recognised by among its repeats: a digest of its text in NFKC form with white space
    runs made one space (a digest keeps the column small at 860k rows); None for a missing or blank problem.

    >>> problem_key("What is  1+1?\\n") == problem_key(" What is 1+1?"), problem_key("  "), problem_key(None)
    (True, None, None)
    """
    if problem is None:
        return None
    text = " ".join(unicodedata.normalize("NFKC", str(problem)).split())
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest() if text else None


def _prompts(problems: list, sources: list | None = None, *, template: str, tokenizer=None) -> dict:
    prompts = [render(template, str(p)) for p in problems]
    out = {"prompt": prompts, "source": ["all"] * len(prompts) if sources is None else [str(s) for s in sources]}
    if tokenizer is not None:
        out["prompt_tokens"] = [len(ids) for ids in tokenizer(prompts, return_attention_mask=False)["input_ids"]]
    return out


def gold_answers(cfg: Config, rows: datasets.Dataset) -> datasets.Dataset:
    """Columns `id` (the row index), `gold` (None where the solution has no gold answer) and `problem_key` (None
    where the problem is missing or blank), one per row."""
    import datasets

    d = cfg.data
    with progress_bars(len(rows) >= QUIET_BELOW):
        return rows.map(_golds, batched=True, with_indices=True, input_columns=[d.problem_column, d.solution_column],
                        remove_columns=rows.column_names, desc="gold answers", features=datasets.Features(
                            id=datasets.Value("int64"), gold=datasets.Value("string"),  # not null if a batch has none
                            problem_key=datasets.Value("string")),
                        new_fingerprint=cache_key(rows._fingerprint, "gold", d.problem_column, d.solution_column))


def prompts(cfg: Config, rows: datasets.Dataset, tokenizer=None) -> datasets.Dataset:
    """Columns `prompt`, `source` and, given a tokenizer, `prompt_tokens`, one per row."""
    d = cfg.data
    template = load_template(d, tokenizer)
    columns = [d.problem_column] + ([d.source_column] if d.source_column else [])
    key = cache_key(rows._fingerprint, "prompts", columns, template, tokenizer)  # datasets hashes a tokenizer stably
    with progress_bars(len(rows) >= QUIET_BELOW):
        return rows.map(_prompts, batched=True, input_columns=columns, remove_columns=rows.column_names,
                        fn_kwargs={"template": template, "tokenizer": tokenizer},
                        desc="prompts" + (" and their lengths" if tokenizer is not None else ""), new_fingerprint=key)


def examples_at(cfg: Config, rows: datasets.Dataset, golds: datasets.Dataset, ids, tokenizer=None) -> list[Example]:
    """The rows at `ids` as Examples, in that order (a few thousand: an evaluation set)."""
    d = cfg.data
    template = load_template(d, tokenizer)
    # Copied once into a small cached table that the other processes read: a random read into the memory-mapped
    # file maps the 64 KB around each row, and 5000 rows then bring a whole 1 GB file into this process's RSS.
    with progress_bars(False):
        picked = rows.select(ids).flatten_indices()
    gold = golds.select(ids)["gold"]
    sources = picked[d.source_column] if d.source_column else ["all"] * len(picked)
    return [Example(int(i), str(p), g, str(src), render(template, str(p)), str(s or ""))
            for i, p, g, src, s in zip(ids, picked[d.problem_column], gold, sources, picked[d.solution_column],
                                       strict=True)]


def ids_with_gold(golds: datasets.Dataset, once: bool = True) -> np.ndarray:
    """Indices of the rows that have a problem and a gold answer, in file order; with `once`, only the first such
    row of each problem (the split's rows: a repeat must not land on both sides of it)."""
    import numpy as np
    import pyarrow.compute as pc

    table = golds.data
    keys = table.column("problem_key").combine_chunks()
    ids = np.flatnonzero(table.column("gold").is_valid().to_numpy(zero_copy_only=False)
                         & keys.is_valid().to_numpy(zero_copy_only=False))
    if once:
        codes = pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False)
        ids = np.sort(ids[np.unique(codes[ids], return_index=True)[1]])
    return ids


def dropped(golds: datasets.Dataset, kept: int) -> dict:
    """What the split left out and why: rows without a problem, without a gold answer, repeating a problem."""
    table = golds.data
    no_problem = table.column("problem_key").null_count
    usable = len(ids_with_gold(golds, once=False))
    return {"dropped_no_problem": no_problem, "dropped_no_gold": len(golds) - no_problem - usable,
            "dropped_duplicate": usable - kept}


# --------------------------------------------------------------------------------------------- the split
def build_examples(cfg: Config, rows: datasets.Dataset, tokenizer=None) -> list[Example]:
    """Every row with a problem and a gold answer as a prompted example (the others are left out): a transfer set,
    evaluated as given, repeats included. The tokenizer is needed with data.use_chat_template."""
    golds = gold_answers(cfg, rows)
    return examples_at(cfg, rows, golds, ids_with_gold(golds, once=False), tokenizer)


def split_ids(cfg: Config, golds: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Held-out and training row ids: the rows with a problem and a gold answer, each problem once, shuffled with
    the seed; the first `eval_holdout` are held out (sorted), the rest are the training order."""
    import numpy as np

    d = cfg.data
    ids = ids_with_gold(golds)
    if len(ids) == 0 and golds.data.column("problem_key").null_count == len(golds):
        raise ConfigError(f"data.problem_column: no row of {d.path} has a problem in column '{d.problem_column}' "
                          "(every one is empty); point it at the column with the questions")
    if len(ids) == 0:
        raise ConfigError(f"data.solution_column: no row of {d.path} has a gold answer (a \\boxed{{}} or '#### ' "
                          f"answer) in column '{d.solution_column}'; point it at the column with worked solutions")
    if d.eval_holdout >= len(ids):
        raise ConfigError(f"data.eval_holdout={d.eval_holdout} leaves nothing to train on ({len(ids)} distinct "
                          "problems with a gold answer); lower it")
    order = list(range(len(ids)))
    random.Random(cfg.training.seed).shuffle(order)  # a list shuffle, as always: the same split for the same seed
    order = np.asarray(order)
    return np.sort(ids[order[: d.eval_holdout]]), ids[order[d.eval_holdout:]]


def heldout_examples(cfg: Config, rows: datasets.Dataset, tokenizer=None) -> list[Example]:
    """The held-out problems alone (what an evaluation needs): build_splits(cfg, rows, tokenizer).heldout."""
    golds = gold_answers(cfg, rows)
    return examples_at(cfg, rows, golds, split_ids(cfg, golds)[0], tokenizer)


def build_splits(cfg: Config, rows: datasets.Dataset, tokenizer=None) -> Splits:
    """Gold extraction, held-out split, prompt-length filter. Deterministic given the data and the seed.

    `train` stays in Arrow (a selection of memory-mapped rows); `heldout` is a list of Examples.
    """
    import datasets

    d = cfg.data
    golds = gold_answers(cfg, rows)
    heldout_ids, train_ids = split_ids(cfg, golds)
    stats = {"rows": len(rows), **dropped(golds, len(heldout_ids) + len(train_ids))}
    made = prompts(cfg, rows, tokenizer)
    if tokenizer is not None:
        lengths = made.data.column("prompt_tokens").to_numpy()
        kept = train_ids[lengths[train_ids] <= d.max_prompt_tokens]
        stats["dropped_long_prompt"] = len(train_ids) - len(kept)
        train_ids = kept
        if len(train_ids) == 0:
            raise ConfigError(f"no training rows left after filtering ({stats}): every training prompt is longer "
                              f"than data.max_prompt_tokens={d.max_prompt_tokens}; raise it")
    if d.max_train_samples is not None:  # >= 1: load_config refuses less
        train_ids = train_ids[: d.max_train_samples]
    texts = rows.select_columns([d.problem_column, d.solution_column])
    texts = texts.rename_columns({c: n for c, n in ((d.problem_column, "problem"), (d.solution_column, "solution"))
                                  if c != n})
    table = datasets.concatenate_datasets([texts, golds, made.select_columns(["prompt", "source"])], axis=1)
    train = table.select(train_ids).select_columns(EXAMPLE_COLUMNS)
    stats.update(train=len(train), heldout=len(heldout_ids))
    return Splits(train, examples_at(cfg, rows, golds, heldout_ids, tokenizer), stats)


def write_heldout_ids(splits: Splits, cfg: Config, out_dir: Path) -> Path:
    path = out_dir / "heldout_ids.json"
    path.write_text(json.dumps({"data": cfg.data.path, "split": cfg.data.split, "seed": cfg.training.seed,
                                "ids": [e.id for e in splits.heldout]}))
    return path


def to_trl_dataset(examples: datasets.Dataset | list[Example]) -> datasets.Dataset:
    """TRL's GRPOTrainer reads `prompt`; the other columns reach the reward functions as keyword arguments.
    `solution` is the dataset's text, not the extracted answer: the reward extracts the gold itself (its
    `None` for an unextractable gold must stay meaningful, and a bare answer like `12` is not a solution).
    Takes Splits.train (kept in Arrow) or a list of Examples."""
    import datasets

    if isinstance(examples, datasets.Dataset):
        return examples.select_columns(TRL_COLUMNS)
    return datasets.Dataset.from_dict({c: [getattr(e, c) for e in examples] for c in TRL_COLUMNS})
