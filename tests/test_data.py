"""Data: gold filtering, the held-out split (disjoint, deterministic), prompt building and length filter."""

from __future__ import annotations

import json

import pytest

from train.config import ConfigError, load_config
from train.data import build_splits, load_rows, render, to_trl_dataset

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
    assert splits.stats["train"] + splits.stats["heldout"] == 54


def test_rows_whose_gold_is_empty_are_dropped(tmp_path):
    """A solution whose last box is empty (or malformed) has no gold: kept, it would reward an empty answer."""
    no_gold = ["So $\\boxed{}$.", "So $\\boxed{ }$.", "First \\boxed{3}, then \\boxed{}.", "So $\\boxed {4}$."]
    rows = make_rows(20) + [{"problem": "Q?", "solution": s, "source": "amc"} for s in no_gold]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = cfg_for(path)
    splits = build_splits(cfg, load_rows(cfg.data))
    assert splits.stats["dropped_no_gold"] == 2 + len(no_gold)  # make_rows: every 10th has no \boxed
    assert all(e.problem != "Q?" for e in splits.train + splits.heldout)


def test_heldout_is_disjoint_deterministic_and_seeded(tiny_data):
    cfg = cfg_for(tiny_data)
    rows = load_rows(cfg.data)
    a, b = build_splits(cfg, rows), build_splits(cfg, rows)
    ids = [e.id for e in a.heldout]
    assert ids == [e.id for e in b.heldout]  # same data + seed -> same split
    assert len(ids) == 10 and not set(ids) & {e.id for e in a.train}  # never trained on
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
    assert all("very long" not in e.problem for e in splits.train)


def test_gsm8k_style_answers_are_gold(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 1,002"}) + "\n")
    cfg = load_config(None, [f"data.path={path}", "data.problem_column=question", "data.solution_column=answer",
                             "data.source_column=null", "data.eval_holdout=0", "evaluation.enabled=false"])
    (ex,) = build_splits(cfg, load_rows(cfg.data)).train
    assert (ex.gold, ex.source) == ("1002", "all")


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
    examples = build_splits(cfg, load_rows(cfg.data)).train[:5]
    ds = to_trl_dataset(examples)
    right = [f"ok </think> <answer>{e.gold}</answer>" for e in examples]
    wrong = [f"ok </think> <answer>{int(e.gold) + 1}</answer>" for e in examples]
    assert answer_reward(right, ds["solution"]) == [1.0] * 5
    assert answer_reward(wrong, ds["solution"]) == [0.0] * 5
