"""Data: gold filtering, the held-out split (disjoint, deterministic), prompt building and length filter."""

from __future__ import annotations

import json
import re

import pytest

from train.config import ConfigError, load_config
from train.data import build_examples, build_splits, heldout_examples, load_rows, render, to_trl_dataset

from .conftest import TEMPLATE, make_rows


def cfg_for(path, *more):
    return load_config(None, [f"data.path={path}", "data.eval_holdout=10", *more])


def test_template_file_is_the_r1_zero_prompt():
    assert TEMPLATE.endswith("Assistant: <think>")
    assert TEMPLATE.count("{question}") == 1 and "\r" not in TEMPLATE


def test_render_keeps_latex_braces():
    assert render("Q: {question} A:", "Find $\\frac{1}{2}$ of {x}") == "Q: Find $\\frac{1}{2}$ of {x} A:"


def test_rows_without_gold_are_dropped_and_counted(tiny_data):
    cfg = cfg_for(tiny_data)
    splits = build_splits(cfg, load_rows(cfg.data))
    assert splits.stats["rows"] == 60 and splits.stats["dropped_no_gold"] == 6  # every 10th has no \boxed
    assert splits.stats["dropped_duplicate"] == 1  # make_rows(60) draws one sum twice
    assert splits.stats["train"] + splits.stats["heldout"] == 53


def test_a_repeated_problem_is_never_both_held_out_and_trained_on(tmp_path):
    """10 problems, each 4 times (as scraped sets repeat a problem across sources, spaced differently): each is kept
    once, before the split, so that no held-out problem is trained on."""
    spellings = ["What is {i} + 1?", "What is {i}  + 1?\n", " What is {i} + 1?", "What\tis {i} + 1?"]
    rows = [{"problem": spelled.format(i=i), "solution": f"So \\boxed{{{i + 1}}}.", "source": f"s{k}"}
            for k, spelled in enumerate(spellings) for i in range(10)]
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    cfg = cfg_for(path, "data.eval_holdout=4")
    splits = build_splits(cfg, load_rows(cfg.data))
    assert splits.stats == {"rows": 40, "dropped_no_problem": 0, "dropped_no_gold": 0, "dropped_duplicate": 30,
                            "train": 6, "heldout": 4}
    trained = {" ".join(p.split()) for p in splits.train["problem"]}
    same = trained & {" ".join(e.problem.split()) for e in splits.heldout}
    assert not same, f"held-out problems trained on: {same}"
    assert sorted([*splits.train["id"], *(e.id for e in splits.heldout)]) == list(range(10))  # the first of each
    assert heldout_examples(cfg, load_rows(cfg.data)) == splits.heldout  # what evaluate.py recomputes


def test_rows_without_a_problem_are_dropped_and_counted(tmp_path):
    """A null, missing or blank problem would become the prompt 'None' (or an empty question): dropped, counted."""
    rows = make_rows(20)
    rows[0]["problem"], rows[1]["problem"], rows[2]["problem"] = None, "  \n", 7  # a number is a problem: '7'
    del rows[3]["problem"]
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    cfg = cfg_for(path, "data.eval_holdout=2")
    splits = build_splits(cfg, load_rows(cfg.data))
    assert splits.stats["dropped_no_problem"] == 3 and splits.stats["dropped_no_gold"] == 2
    prompts = list(splits.train["prompt"]) + [e.prompt for e in splits.heldout]
    assert len(prompts) == 15 and not any("None" in p for p in prompts)
    assert [e.id for e in build_examples(cfg, load_rows(cfg.data))][:2] == [2, 4]  # a transfer set drops them too
    nothing = write(tmp_path / "e.jsonl", "".join(json.dumps({**r, "problem": None}) + "\n" for r in rows))
    with pytest.raises(ConfigError, match=r"^data.problem_column: no row of .*e.jsonl has a problem in column "
                                          r"'problem' \(every one is empty\)"):
        build_splits(cfg_for(nothing), load_rows(cfg_for(nothing).data))


def test_rows_whose_gold_is_empty_are_dropped(tmp_path):
    """A solution whose last box is empty (or malformed) has no gold: kept, it would reward an empty answer."""
    no_gold = ["So $\\boxed{}$.", "So $\\boxed{ }$.", "First \\boxed{3}, then \\boxed{}.", "So $\\boxed {4}$."]
    rows = make_rows(20) + [{"problem": "Q?", "solution": s, "source": "amc"} for s in no_gold]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = cfg_for(path)
    splits = build_splits(cfg, load_rows(cfg.data))
    assert splits.stats["dropped_no_gold"] == 2 + len(no_gold)  # make_rows: every 10th has no \boxed
    assert "Q?" not in list(splits.train["problem"]) + [e.problem for e in splits.heldout]


def test_heldout_is_disjoint_deterministic_and_seeded(tiny_data):
    cfg = cfg_for(tiny_data)
    rows = load_rows(cfg.data)
    a, b = build_splits(cfg, rows), build_splits(cfg, rows)
    ids = [e.id for e in a.heldout]
    assert ids == [e.id for e in b.heldout]  # same data + seed -> same split
    assert len(ids) == 10 and not set(ids) & set(a.train["id"])  # never trained on
    other = build_splits(load_config(None, [f"data.path={tiny_data}", "data.eval_holdout=10", "training.seed=7"]), rows)
    assert ids != [e.id for e in other.heldout]  # the seed chooses the split


def test_heldout_does_not_depend_on_the_tokenizer(tiny_data, tiny_model):
    """The split is drawn before the prompt-length filter: base and trained models see the same problems."""
    from transformers import AutoTokenizer

    cfg = cfg_for(tiny_data, "data.max_prompt_tokens=1")  # every training prompt is too long
    rows = load_rows(cfg.data)
    with pytest.raises(ConfigError, match="no training rows left"):
        build_splits(cfg, rows, AutoTokenizer.from_pretrained(tiny_model))
    cfg = cfg_for(tiny_data)
    plain = build_splits(cfg, rows)
    tok = build_splits(cfg, rows, AutoTokenizer.from_pretrained(tiny_model))
    assert [e.id for e in plain.heldout] == [e.id for e in tok.heldout]
    assert tok.stats["dropped_long_prompt"] == 0


def test_long_prompts_are_dropped(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    rows = make_rows(30)
    rows[0]["problem"] = "very long " * 500
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(None, [f"data.path={path}", "data.eval_holdout=2", "data.max_prompt_tokens=400"])
    splits = build_splits(cfg, load_rows(cfg.data), AutoTokenizer.from_pretrained(tiny_model))
    assert splits.stats["dropped_long_prompt"] >= 1
    assert all("very long" not in p for p in splits.train["problem"])


def test_gsm8k_style_answers_are_gold(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 1,002"}) + "\n")
    cfg = load_config(None, [f"data.path={path}", "data.problem_column=question", "data.solution_column=answer",
                             "data.source_column=null", "data.eval_holdout=0", "evaluation.enabled=false"])
    (ex,) = build_splits(cfg, load_rows(cfg.data)).train.to_list()
    assert (ex["gold"], ex["source"]) == ("1002", "all")


def test_parquet_and_json_load(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(make_rows(5))
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.to_json(str(tmp_path / "d.json"), lines=False)
    for name in ("d.parquet", "d.json"):
        cfg = load_config(None, [f"data.path={tmp_path / name}"])
        assert len(load_rows(cfg.data)) == 5


@pytest.mark.parametrize("override,message", [
    ("data.path=/missing.jsonl", "data.path: /missing.jsonl not found"),  # a missing local file
    ("data.solution_column=answer", "data.solution_column: column 'answer' not in"),  # a missing column
    ("data.source_column=origin", "data.source_column: column 'origin' not in"),
])
def test_data_errors_name_the_key(tiny_data, override, message):
    cfg = load_config(None, [f"data.path={tiny_data}", override])
    with pytest.raises(ConfigError, match=message):
        load_rows(cfg.data)


def test_wrong_suffix(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="not .jsonl, .json or .parquet"):
        load_rows(load_config(None, [f"data.path={tmp_path / 'd.csv'}"]).data)


def test_trl_dataset_columns(tiny_data):
    cfg = cfg_for(tiny_data)
    ds = to_trl_dataset(build_splits(cfg, load_rows(cfg.data)).train)
    assert set(ds.column_names) == {"prompt", "solution", "source"}
    assert ds[0]["prompt"].endswith("Assistant: <think>")


def test_trl_rows_are_gradable_by_the_real_reward(tiny_data):
    """What the trainer feeds the reward must grade: a right answer scores 1, a wrong one 0, never None."""
    from train.rewards_math import answer_reward

    cfg = cfg_for(tiny_data)
    train = build_splits(cfg, load_rows(cfg.data)).train.select(range(5))
    ds, golds = to_trl_dataset(train), train["gold"]
    right = [f"ok </think> <answer>{g}</answer>" for g in golds]
    wrong = [f"ok </think> <answer>{int(g) + 1}</answer>" for g in golds]
    assert answer_reward(right, ds["solution"]) == [1.0] * 5
    assert answer_reward(wrong, ds["solution"]) == [0.0] * 5


# ------------------------------------------------------------------------------- the split, pinned
# Held-out ids and the training order computed by the list-based implementation this Arrow one replaced, on
# make_rows(500, seed=5) with eval_holdout=40, each problem made distinct: runs' heldout_ids.json files must keep
# matching their data (on data that repeats problems, the repeats are dropped before the split).
PINNED = {
    42: ([4, 6, 7, 12, 37, 41, 45, 67, 97, 98, 111, 121, 133, 158, 160, 161, 170, 173, 176, 180, 187, 192, 198, 207,
          225, 266, 267, 268, 295, 312, 323, 337, 366, 393, 402, 437, 446, 463, 466, 477],
         [167, 2, 65, 390, 223, 291, 181, 423, 85, 340, 424, 102], "7f70b04168f79bef"),
    7: ([1, 10, 11, 15, 18, 61, 88, 105, 108, 124, 128, 138, 143, 144, 145, 152, 162, 184, 245, 261, 270, 286, 293,
         295, 341, 354, 358, 364, 371, 375, 377, 383, 407, 442, 446, 458, 476, 484, 490, 496],
        [488, 454, 230, 4, 192, 186, 122, 86, 147, 165, 68, 452], "fcb21a4c13a9edff"),
}


@pytest.fixture(scope="module")
def rows500(tmp_path_factory):
    path = tmp_path_factory.mktemp("pinned") / "rows500.jsonl"
    rows = [{**r, "problem": f"{r['problem']} (problem {i})"} for i, r in enumerate(make_rows(500, seed=5))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("seed", sorted(PINNED))
def test_split_is_pinned(rows500, seed):
    import hashlib

    cfg = load_config(None, [f"data.path={rows500}", "data.eval_holdout=40", f"training.seed={seed}"])
    splits = build_splits(cfg, load_rows(cfg.data))
    heldout, train_head, train_sha = PINNED[seed]
    assert [e.id for e in splits.heldout] == heldout
    train = list(splits.train["id"])
    assert train[:12] == train_head and len(train) == 410
    assert hashlib.sha256(json.dumps(train).encode()).hexdigest()[:16] == train_sha
    assert heldout_examples(cfg, load_rows(cfg.data)) == splits.heldout  # what evaluate.py recomputes


def reference_split(rows, tok, seed, holdout, max_tokens, cap):
    """The replaced implementation, in lists: gold rows in file order (the first of each problem), a seeded shuffle
    of their positions, the first `holdout` held out (sorted), the rest filtered by prompt length in the shuffled
    order, then capped."""
    import random

    from train.rewards_math import extract_gold

    examples, seen = [], set()
    for i, r in enumerate(rows):
        if extract_gold(r["solution"]) is not None and r["problem"] not in seen:
            seen.add(r["problem"])
            examples.append((i, TEMPLATE.replace("{question}", r["problem"])))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    heldout = sorted(examples[i][0] for i in order[:holdout])
    train = [examples[i] for i in order[holdout:]]
    train = [i for i, prompt in train if len(tok(prompt)["input_ids"]) <= max_tokens]
    return heldout, train[:cap]


@pytest.mark.parametrize("seed,holdout,max_tokens,cap", [
    (42, 40, 400, None),  # the recipe's shape
    (3, 1, 260, None),  # a tight prompt limit: the filter drops many rows, in the shuffled order
    (11, 100, 400, 25),  # a training cap after the filter
])
def test_split_matches_the_list_implementation(tmp_path, tiny_model, seed, holdout, max_tokens, cap):
    from transformers import AutoTokenizer

    rows = make_rows(400, seed=seed)
    for i, r in enumerate(rows):
        r["problem"] += " and some more words" * (i % 13)  # prompts of many lengths
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    cfg = load_config(None, [f"data.path={path}", f"data.eval_holdout={holdout}", f"training.seed={seed}",
                             f"data.max_prompt_tokens={max_tokens}", f"data.max_train_samples={cap or 'null'}"])
    splits = build_splits(cfg, load_rows(cfg.data), tok)
    heldout, train = reference_split(rows, tok, seed, holdout, max_tokens, cap)
    assert [e.id for e in splits.heldout] == heldout
    assert list(splits.train["id"]) == train
    if max_tokens == 260:
        assert splits.stats["dropped_long_prompt"] > 50 and splits.stats["train"] > 20


def test_a_second_process_reads_the_cache(tmp_path, tiny_model, monkeypatch):
    """Gold answers, prompts and their lengths are computed once; a second build (another rank) reads them
    from datasets' cache: neither the grader nor the tokenizer runs again, and the result is the same."""
    from transformers import AutoTokenizer

    import train.data

    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_rows(200, seed=2)))
    cfg = cfg_for(path)
    first = build_splits(cfg, load_rows(cfg.data), AutoTokenizer.from_pretrained(tiny_model))

    def boom(*a, **k):
        raise AssertionError("recomputed instead of read from the cache")

    tok = AutoTokenizer.from_pretrained(tiny_model)  # a fresh tokenizer, as another process loads it
    monkeypatch.setattr(train.data, "extract_gold", boom)
    monkeypatch.setattr(type(tok), "__call__", boom)
    second = build_splits(cfg, load_rows(cfg.data), tok)
    assert second.heldout == first.heldout and second.stats == first.stats
    assert second.train.to_list() == first.train.to_list()
    assert second.train.cache_files  # memory-mapped from disk, not held in memory


def test_the_cache_follows_the_grader_code(monkeypatch):
    """datasets would serve gold answers computed by an older grader: its source is part of the cache key."""
    import inspect

    import train.rewards_math
    from train.data import cache_key

    before = cache_key("data")
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda o: real(o) + ("#" if o is train.rewards_math else ""))
    assert cache_key("data") != before


@pytest.mark.parametrize("part", ["grader_extract", "grader_normalize"])
def test_the_cache_follows_the_graders_parts(monkeypatch, part):
    """The gold answers come from the grader's parts beside its face: a change in one recomputes them."""
    import importlib
    import inspect

    from train.data import cache_key

    module = importlib.import_module(f"train.{part}")
    before = cache_key("data")
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda o: real(o) + ("#" if o is module else ""))
    assert cache_key("data") != before


def byte_tokenizer():
    """A tokenizer without merges: one token per byte, so every prompt is longer than under the tiny model's."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def test_another_template_builds_the_prompts_again(tmp_path, tiny_model):
    """The same data in the same cache with another prompt template: training trains on the new prompts (a stale
    cache would serve the old ones, while the held-out prompts, built apart, used the new one)."""
    from transformers import AutoTokenizer

    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in make_rows(40, seed=3)))
    other = write(tmp_path / "other.prompt", "Q: {question}\nA: <think>")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    cfg = cfg_for(path)
    before = build_splits(cfg, load_rows(cfg.data), tok)
    assert all(p.startswith(TEMPLATE[:20]) for p in before.train["prompt"])
    cfg = cfg_for(path, f"data.prompt_template={other}")
    after = build_splits(cfg, load_rows(cfg.data), tok)
    assert all(p.startswith("Q: ") for p in list(after.train["prompt"]) + [e.prompt for e in after.heldout])


def test_another_tokenizer_measures_the_prompts_again(tmp_path, tiny_model):
    """The prompt-length filter counts with the run's tokenizer, never with lengths cached for another one."""
    from transformers import AutoTokenizer

    rows = make_rows(40, seed=4)
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    longest = max(len(ids) for ids in tok([render(TEMPLATE, r["problem"]) for r in rows])["input_ids"])
    cfg = cfg_for(path, f"data.max_prompt_tokens={longest}")
    assert build_splits(cfg, load_rows(cfg.data), tok).stats["dropped_long_prompt"] == 0
    with pytest.raises(ConfigError, match="every training prompt is longer than data.max_prompt_tokens"):
        build_splits(cfg, load_rows(cfg.data), byte_tokenizer())  # one token per byte: all too long


def test_another_solution_column_extracts_the_golds_again(tmp_path):
    """One file with two answer columns: switching data.solution_column trains on the other column's golds."""
    rows = [{"problem": f"p{i}", "solution": f"so \\boxed{{{i}}}", "answer": f"#### {i + 100}", "source": "s"}
            for i in range(30)]
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    for column, offset in (("solution", 0), ("answer", 100)):
        cfg = cfg_for(path, f"data.solution_column={column}")
        splits = build_splits(cfg, load_rows(cfg.data))
        assert all(int(r["gold"]) == r["id"] + offset for r in splits.train.to_list())
        assert all(int(e.gold) == e.id + offset for e in splits.heldout)


def test_a_first_batch_without_any_gold_answer(tmp_path):
    """The gold column is typed: a first batch of rows without gold (all None) must not fix its type to null."""
    rows = [{"problem": f"p{i}", "solution": "no answer" if i < 2500 else f"so \\boxed{{{i}}}", "source": "s"}
            for i in range(3000)]
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    cfg = cfg_for(path)
    splits = build_splits(cfg, load_rows(cfg.data))
    assert splits.stats == {"rows": 3000, "dropped_no_problem": 0, "dropped_no_gold": 2500, "dropped_duplicate": 0,
                            "train": 490, "heldout": 10}
    assert splits.train[0]["gold"] == str(splits.train[0]["id"])


def test_a_rewritten_data_file_is_not_read_from_a_stale_cache(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_rows(60, seed=0)))
    cfg = cfg_for(path)
    before = build_splits(cfg, load_rows(cfg.data))
    path.write_text("".join(json.dumps(r) + "\n" for r in make_rows(80, seed=1)))
    after = build_splits(cfg, load_rows(cfg.data))
    assert after.stats["rows"] == 80 and after.heldout != before.heldout


def test_transfer_set_examples(tiny_data):
    cfg = cfg_for(tiny_data)
    examples = build_examples(cfg, load_rows(cfg.data))
    assert [e.id for e in examples] == [i for i in range(60) if i % 10 != 9]  # every row with a gold, in order
    assert examples[0].prompt.endswith("Assistant: <think>") and examples[0].gold.isdigit()


# ------------------------------------------------------------------------ bad data, in one line
def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


GOOD = "".join(json.dumps(r) + "\n" for r in make_rows(5))
# (file name, content, text the one-line error must contain)
BAD_FILES = [
    ("d.jsonl", "", "is empty"),
    ("d.jsonl", "\n\n  \n", "has no rows"),
    ("d.jsonl", GOOD + GOOD.splitlines()[0][:25], "line 6, the last, is cut off"),  # a copy that stopped early
    ("d.jsonl", GOOD.replace("}\n", "\n", 1), "line 1 is not valid JSON"),  # a broken line in the middle
    ("d.jsonl", GOOD + "[1, 2]\n", "line 6 is not a JSON object"),
    ("d.json", '[{"problem": "a",\n "solution": }]', "line 2 is not valid JSON"),  # one JSON document
    ("d.parquet", "problem,solution\n1+1,2\n", "is not a Parquet file"),  # a text file with the wrong suffix
    ("d.parquet", b"PAR1" + b"\0" * 64, "cut off (no Parquet footer)"),
]


@pytest.mark.parametrize("name,content,message", BAD_FILES, ids=[m for _, _, m in BAD_FILES])
def test_bad_data_file_is_named_in_one_line(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        load_rows(load_config(None, [f"data.path={path}"]).data)
    assert str(e.value).startswith(f"data.path: {path} ") and "\n" not in str(e.value)


def test_parquet_without_rows(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"problem": [], "solution": [], "source": []}).to_parquet(str(tmp_path / "d.parquet"))
    with pytest.raises(ConfigError, match="has no rows"):
        load_rows(load_config(None, [f"data.path={tmp_path / 'd.parquet'}"]).data)


def test_bad_data_file_exits_2_and_writes_nothing(tmp_path, tiny_model, capsys):
    from step3_GRPO.train_trl import main

    data = write(tmp_path / "d.jsonl", GOOD + GOOD.splitlines()[0][:25])
    out = tmp_path / "out"
    assert main([f"model.name_or_path={tiny_model}", f"data.path={data}", f"checkpointing.output_dir={out}",
                 "logging.wandb=off"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: data.path: {data} line 6, the last, is cut off (Unterminated string starting at): " \
                  "the file was not completely written; copy it again or delete that line"
    assert not out.exists()


@pytest.mark.parametrize("rows,override,message,not_said", [
    # no gold answer anywhere: the solution column is wrong, and eval_holdout has nothing to do with it
    ([{"problem": "1+1?", "solution": "two", "source": "x"}] * 20, "data.eval_holdout=5",
     "no row of .* has a gold answer .* in column 'solution'", "eval_holdout"),
    # a training cap of 0 leaves nothing: the prompt limit has nothing to do with it (refused with the config)
    (make_rows(30), "data.max_train_samples=0", "'data.max_train_samples' must be at least 1", "max_prompt_tokens"),
    # every row with a gold answer held out
    (make_rows(30), "data.eval_holdout=27",
     r"^data.eval_holdout=27 leaves nothing to train on \(27 distinct problems with a gold answer\); lower it$",
     "max_prompt_tokens"),
])
def test_empty_training_set_blames_the_right_key(tmp_path, rows, override, message, not_said):
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError, match=message) as e:
        cfg = load_config(None, [f"data.path={path}", "data.eval_holdout=2", override])
        build_splits(cfg, load_rows(cfg.data))
    assert not_said not in str(e.value)
