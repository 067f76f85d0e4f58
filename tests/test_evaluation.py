"""Final evaluation: categorisation and summary arithmetic on fixture responses, then `evaluate()` and the
standalone command on the tiny model (CPU), wandb offline, plots."""

from __future__ import annotations

import glob
import json
import os
import re
import struct
import time
from pathlib import Path

import pytest
import yaml

import train.evaluation
from train.config import load_config
from train.data import Example
from train.evaluation import evaluate, score
from train.reporting import curve_panels, format_report, plot_by_source, plot_training_curves
from train.summary import CATEGORIES, pass_at_k, summarize, wilson_interval

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [json.loads(line) for line in (FIXTURES / "eval_responses.jsonl").read_text().splitlines()]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A TRL 1.16 log_history: training steps, a periodic eval and the final train summary entry.
LOG_HISTORY = [
    {"step": s, "loss": 0.01 * s, "reward": 0.1 * s, "reward_std": 0.2, "rewards/answer_reward/mean": 0.1 * s,
     "rewards/format_reward/mean": 0.2 * s, "completions/mean_length": 100 - s, "completions/clipped_ratio": 0.1,
     "entropy": 1.0 - 0.05 * s, "learning_rate": 1e-5, "grad_norm": 0.5}
    for s in range(1, 5)
] + [{"step": 4, "eval_reward": 0.3}, {"step": 4, "train_runtime": 12.0, "train_loss": 0.02}]


def records_from(cases: list[dict]) -> list[dict]:
    examples = [Example(c["prompt_id"], f"problem {c['prompt_id']}", c["gold"], c["source"], "prompt") for c in cases]
    gens = [{"text": c["response"], "num_tokens": len(c["response"].split()), "truncated": c["truncated"]}
            for c in cases]
    return score(examples, gens)


# ------------------------------------------------------------------------------------------ categorisation
@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_categories_on_fixture_responses(case):
    (rec,) = records_from([case])
    assert (rec["category"], rec["format_reason"]) == (case["category"], case["format_reason"])
    # the reward the trainer optimised agrees with the category
    assert rec["reward"] == float(rec["category"] == "correct")
    assert rec["format_reward"] == float(rec["category"] != "format_failure")
    assert rec["prompt_id"] == case["prompt_id"] and rec["gold"] == case["gold"]


def test_an_answer_the_grader_runs_out_of_time_on_is_wrong_and_counted():
    """As in training: sympy past its time limit scores 0, and the summary counts it."""
    hang = {"prompt_id": 0, "gold": "\\frac13", "source": "s", "response": "</think> <answer>9^{9^{9^{9}}}</answer>",
            "truncated": False}
    records = records_from([hang, {**hang, "prompt_id": 1, "gold": "5", "response": "</think> <answer>5</answer>"}])
    assert [(r["category"], r["grader_timed_out"]) for r in records] == [("wrong_answer", True), ("correct", False)]
    assert summarize(records)["grader_timeouts"] == 1


def test_record_fields():
    (rec,) = records_from(CASES[:1])
    assert set(rec) >= {"prompt_id", "source", "response", "answer", "gold", "category", "format_reason",
                        "num_tokens", "truncated"}
    assert rec["answer"] == "5"


# ------------------------------------------------------------------------------------------------- summary
def test_summary_arithmetic_on_fixtures():
    s = summarize(records_from(CASES))
    expected = {c: sum(case["category"] == c for case in CASES) for c in CATEGORIES}
    total = len(CASES)
    assert s["total_samples"] == total
    assert (s["category_1_correct"], s["category_2_wrong_answer"], s["category_3_format_failure"]) == (
        expected["correct"], expected["wrong_answer"], expected["format_failure"])
    assert sum(s["categories"][c]["count"] for c in CATEGORIES) == total
    assert sum(s["categories"][c]["percent"] for c in CATEGORIES) == pytest.approx(100.0)
    for c in CATEGORIES:
        assert s["categories"][c]["percent"] == pytest.approx(100 * expected[c] / total)
    assert s["accuracy"] == pytest.approx(expected["correct"] / total)
    assert s["format_accuracy"] == pytest.approx((expected["correct"] + expected["wrong_answer"]) / total)
    # the source breakdown partitions the samples
    sb = s["source_breakdown"]
    assert sum(b["total"] for b in sb.values()) == total
    for c in CATEGORIES:
        assert sum(b[c] for b in sb.values()) == expected[c]
    for src, b in sb.items():
        assert b["total"] == sum(case["source"] == src for case in CASES)
        assert b["total"] == sum(b[c] for c in CATEGORIES)
        assert b["accuracy"] == pytest.approx(b["correct"] / b["total"])
    reasons = [case["format_reason"] for case in CASES if case["format_reason"]]
    assert s["format_failure_reasons"] == {r: reasons.count(r) for r in set(reasons)}
    lo, hi = s["accuracy_ci95"]
    assert 0 <= lo <= s["accuracy"] <= hi <= 1
    assert s["truncation_rate"] == pytest.approx(sum(c["truncated"] for c in CASES) / total)
    assert "pass_at_k" not in s
    text = format_report(s)
    assert "accuracy" in text and "wrong_answer" in text and "olympiads" in text and "truncated" in text


def test_summary_with_n_samples_per_problem():
    # problem 0: 2 of 4 correct, problem 1: 0 of 4, problem 2: 4 of 4
    outcomes = {0: [1, 0, 1, 0], 1: [0, 0, 0, 0], 2: [1, 1, 1, 1]}
    records = [{"prompt_id": pid, "source": "s", "category": "correct" if ok else "wrong_answer",
                "format_reason": None, "num_tokens": 10 + ok, "truncated": False}
               for pid, oks in outcomes.items() for ok in oks]
    s = summarize(records, n=4)
    assert (s["total_samples"], s["num_problems"]) == (12, 3)
    assert s["accuracy"] == pytest.approx(6 / 12)
    assert s["pass_at_k"]["1"] == pytest.approx(s["accuracy"])  # pass@1 is the mean accuracy
    assert s["pass_at_k"]["2"] == pytest.approx((1 - 1 / 6 + 0 + 1) / 3)
    assert s["pass_at_k"]["4"] == pytest.approx(2 / 3)  # any of the 4 samples right
    assert list(s["pass_at_k"]) == ["1", "2", "4"]
    assert s["mean_response_tokens"]["correct"] == 11 and s["mean_response_tokens"]["wrong_answer"] == 10
    assert "not independent" in s["ci_method"]


@pytest.mark.parametrize("n,c,k,expected", [
    (4, 0, 1, 0.0),  # nothing correct
    (4, 4, 3, 1.0),  # everything correct
    (4, 1, 1, 0.25),  # pass@1 = c / n
    (4, 3, 2, 1.0),  # fewer than k wrong samples: a correct one is always drawn
    (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2)
])
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize("successes,total", [(0, 10), (10, 10), (40, 100), (1, 3), (2023, 5000)])
def test_wilson_interval_contains_estimate(successes, total):
    lo, hi = wilson_interval(successes, total)
    assert 0.0 <= lo <= successes / total <= hi <= 1.0
    assert hi - lo < 1.0


@pytest.mark.parametrize("successes,total", [(1, 10), (40, 100), (1, 3), (2023, 5000), (99, 100)])
def test_wilson_interval_ends_are_the_score_tests_bounds(successes, total):
    """Wilson's interval by its definition: the proportions p0 that a score test at 95% does not reject, so at
    each end |p - p0| = z * sqrt(p0 (1 - p0) / n); and k successes mirror n - k failures."""
    from train.summary import Z95

    p = successes / total
    lo, hi = wilson_interval(successes, total)
    for end in (lo, hi):
        assert abs(p - end) == pytest.approx(Z95 * (end * (1 - end) / total) ** 0.5, rel=1e-9)
    mirrored = wilson_interval(total - successes, total)
    assert (lo, hi) == pytest.approx((1 - mirrored[1], 1 - mirrored[0]), abs=1e-12)
    assert wilson_interval(40, 100) == pytest.approx((0.3094, 0.4980), abs=1e-4)  # a published value


@pytest.mark.parametrize("golds,accuracy,answer", [
    (["7", "7", "7", "3"], 0.75, "7"),  # the most frequent gold, written in the format, graded like any answer
    (["2", "2.0", "3", "\\frac{1}{2}"], 0.5, "2"),  # two spellings of one number count together
    (["1", "2", "3", "4"], 0.25, "1"),
])
def test_best_constant_answer_is_graded_in_the_format(golds, accuracy, answer):
    """The shortcut detector answers every problem with one constant in the r1_zero format (closed by </answer>):
    an answer that fails the format gate would score 0 and hide a model that only guesses."""
    from train.summary import best_constant

    records = [{"prompt_id": i, "gold": g} for i, g in enumerate(golds)]
    assert best_constant(records) == {"best_constant_accuracy": accuracy, "best_constant_answer": answer}
    summary = summarize([{**r, "source": "s", "category": "wrong_answer", "format_reason": None, "num_tokens": 5,
                          "truncated": False} for r in records])
    assert summary["best_constant_accuracy"] == accuracy


# --------------------------------------------------------------------------------------------------- plots
def is_png(path: Path) -> bool:
    data = path.read_bytes()
    if not data.startswith(PNG_MAGIC):
        return False
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    return len(data) > 1000 and width > 100 and height > 100


def test_each_curve_panel_says_in_words_what_it_shows():
    panels = dict(curve_panels(LOG_HISTORY))
    # the reward is the answer reward (format weight 0): one line, and the format rate in a panel of its own
    assert panels["answered correctly (share; the reward)"] == ["reward"]
    assert panels["in the </think> <answer> format (share)"] == ["rewards/format_reward/mean"]
    assert panels["cut by the length limit (share)"] == ["completions/clipped_ratio"]
    assert panels["held-out: answered correctly (share)"] == ["eval_reward"]
    drawn = [name for names in panels.values() for name in names]
    assert len(drawn) == len(set(drawn))  # no measure drawn twice
    for title in panels:
        assert not re.search(r"\w[/_]\w", title), f"{title!r} names a metric key, not what it shows"


def test_plots_written(tmp_path):
    s = summarize(records_from(CASES))
    plot_by_source(s, tmp_path / "by_source.png")
    assert is_png(tmp_path / "by_source.png")
    assert plot_training_curves(LOG_HISTORY, tmp_path / "curves.png")
    assert is_png(tmp_path / "curves.png")
    assert not plot_training_curves([{"train_runtime": 1.0}], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_the_share_correct_band_stays_within_0_and_1(tmp_path, monkeypatch):
    """The band around the share answered correctly is its spread over the step's rollouts (mean +- std); a share
    lies in [0, 1], so the band is drawn clipped there (0.1 +- 0.3 would reach -0.2)."""
    import matplotlib.axes

    bands = []
    real = matplotlib.axes.Axes.fill_between
    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between",
                        lambda ax, x, lo, hi, **kw: bands.append((list(lo), list(hi))) or real(ax, x, lo, hi, **kw))
    history = [{"step": 1, "reward": 0.1, "reward_std": 0.3}, {"step": 2, "reward": 0.9, "reward_std": 0.3},
               {"step": 3, "reward": 0.5, "reward_std": 0.25}]
    assert plot_training_curves(history, tmp_path / "curves.png")
    ((lo, hi),) = bands
    assert min(lo) == 0.0 and max(hi) == 1.0  # clipped where mean - std < 0 and mean + std > 1
    assert (lo[2], hi[2]) == (0.25, 0.75)  # untouched inside


# ------------------------------------------------------------------------------------ generation bookkeeping
@pytest.mark.parametrize("text,tail,max_tokens,expected", [
    # stopped at </answer>, the rest of the row is padding (pad == EOS here): not truncated
    ("a </think> <answer> 5 </answer>", ["eos"] * 3, 64, ("a </think> <answer> 5 </answer>", 0, False)),
    # ran out of tokens mid-reasoning: truncated
    ("thinking and thinking", [], None, ("thinking and thinking", 0, True)),
    # the model ended with EOS before max_tokens: not truncated, the EOS counts as a token (as in vLLM)
    ("short answer", ["eos", "eos"], 64, ("short answer", 1, False)),
    # a stop string followed by more text in the same row: cut right after </answer>
    ("x </think> <answer>5</answer> more", [], 64, ("x </think> <answer>5</answer>", None, False)),
])
def test_finish_cuts_and_counts(tiny_model, text, tail, max_tokens, expected):
    from train.generation import _finish
    from train.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model))
    ids = tok(text)["input_ids"]
    row = ids + [tok.eos_token_id] * len(tail)
    got = _finish(row, tok, {tok.eos_token_id}, {tok.eos_token_id, tok.pad_token_id}, max_tokens or len(ids))
    want_text, extra_tokens, want_truncated = expected
    assert (got["text"], got["truncated"]) == (want_text, want_truncated)
    if extra_tokens is not None:
        assert got["num_tokens"] == len(ids) + extra_tokens


# ------------------------------------------------------------------------------------ evaluate() end to end
def tiny_config(tmp_path: Path, tiny_model: Path, tiny_data: Path, **extra) -> Path:
    data = {
        "model": {"name_or_path": str(tiny_model)},
        "data": {"path": str(tiny_data), "eval_holdout": 6},
        "training": {"seed": 0},
        "checkpointing": {"output_dir": str(tmp_path / "run")},
        "vllm": {"use_vllm": False},
        "evaluation": {"max_tokens": 16, "batch_size": 6, "use_vllm": False},
        "logging": {"wandb": "off"},
    }
    for key, value in extra.items():
        section, name = key.split("__")
        data[section][name] = value
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def heldout(cfg):
    from train.data import build_splits, load_rows

    return build_splits(cfg, load_rows(cfg.data)).heldout


def test_evaluate_writes_everything(tmp_path, tiny_model, tiny_data, capsys):
    cfg = load_config(tiny_config(tmp_path, tiny_model, tiny_data), ["evaluation.n=2"])
    examples = heldout(cfg)
    out = tmp_path / "eval"
    summary = evaluate(cfg, str(tiny_model), examples, out, log_history=LOG_HISTORY,
                       heldout_ids_file=tmp_path / "heldout_ids.json")
    assert summary["total_samples"] == 2 * len(examples) == 12
    on_disk = json.loads((out / "eval_summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("timestamp", "model_path", "total_samples", "accuracy", "format_accuracy", "category_1_correct",
                "category_2_wrong_answer", "category_3_format_failure", "source_breakdown", "accuracy_ci95",
                "pass_at_k", "versions", "device", "wall_time_s", "sampling", "dataset"):
        assert key in on_disk, key
    assert on_disk["sampling"]["backend"] == "transformers" and on_disk["device"] == "cpu"
    assert on_disk["dataset"]["heldout_ids_file"].endswith("heldout_ids.json")
    samples = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12
    assert {s["prompt_id"] for s in samples} == {e.id for e in examples}
    assert all(0 < s["num_tokens"] <= 16 for s in samples)
    # a random tiny model never closes </answer>: a 16-token response is truncated, a shorter one hit EOS
    assert all(s["truncated"] == (s["num_tokens"] == 16) for s in samples)
    assert is_png(out / "eval_by_source.png") and is_png(out / "training_curves.png")
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "format_failure" in printed and "source" in printed


def test_generation_is_seeded(tmp_path, tiny_model, tiny_data):
    cfg = load_config(tiny_config(tmp_path, tiny_model, tiny_data), ["evaluation.max_samples=3"])
    examples = heldout(cfg)
    a = evaluate(cfg, str(tiny_model), examples, tmp_path / "a")
    evaluate(cfg, str(tiny_model), examples, tmp_path / "b")
    assert (tmp_path / "a/eval_samples.jsonl").read_text() == (tmp_path / "b/eval_samples.jsonl").read_text()
    assert a["total_samples"] == 3 and not (tmp_path / "a/training_curves.png").exists()


def test_vllm_path_with_a_fake_engine(tmp_path, tiny_model, tiny_data, monkeypatch):
    """The vLLM glue on CPU: a stand-in `vllm` module with the API the code uses (the real engine runs on GPU)."""
    import sys
    import types

    import train.generation
    import train.models

    made = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class LLM:
        def __init__(self, **kw):
            made["llm"] = kw

        def generate(self, prompts, params, use_tqdm=True):
            made["params"] = params
            done = types.SimpleNamespace(text="Add. </think> <answer>5</answer>", token_ids=[7] * 9,
                                         finish_reason="stop")
            return [types.SimpleNamespace(outputs=[done] + [
                types.SimpleNamespace(text="and so on", token_ids=[7] * p.max_tokens, finish_reason="length")
            ] * (p.n - 1)) for p in params]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    monkeypatch.setattr(train.models, "has_gpu", lambda: True)
    monkeypatch.setattr(train.generation, "gpu_total_memory", lambda: 80 << 30)
    cfg = load_config(tiny_config(tmp_path, tiny_model, tiny_data), ["evaluation.use_vllm=true", "evaluation.n=2"])
    examples = [Example(1, "What is 2 + 3?", "5", "amc", "What is 2 + 3? Assistant: <think>"),
                Example(2, "long", "5", "amc", "many words " * 1500)]  # longer than the model's 1024 positions
    summary = evaluate(cfg, str(tiny_model), examples, tmp_path / "eval")

    assert summary["sampling"]["backend"] == "vllm"
    assert made["llm"]["max_model_len"] == 1024 and made["llm"]["dtype"] == "bfloat16"
    # the KV cache is sized for what is sent (one prompt x 2 samples of 1024 tokens), not a share of the card
    assert made["llm"]["max_num_seqs"] == 2
    assert made["llm"]["kv_cache_memory_bytes"] == train.generation.kv_cache_bytes(str(tiny_model), 1024, 2)
    (params,) = made["params"]  # the over-long prompt is not sent
    assert (params.n, params.max_tokens, params.stop, params.include_stop_str_in_output) == (2, 16, ["</answer>"], True)
    assert (params.temperature, params.top_p, params.min_tokens) == (1.0, 1.0, 4)
    assert made["llm"]["seed"] == 0 and not hasattr(params, "seed")  # one engine seed, no per-request seeds
    assert os.environ["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"  # forking after CUDA init fails
    samples = [json.loads(line) for line in (tmp_path / "eval/eval_samples.jsonl").read_text().splitlines()]
    got = [(r["prompt_id"], r["category"], r["format_reason"], r["num_tokens"], r["truncated"]) for r in samples]
    assert got == [(1, "correct", None, 9, False), (1, "format_failure", "truncated", 16, True),
                   (2, "format_failure", "truncated", 0, True), (2, "format_failure", "truncated", 0, True)]


class FakeColocatedEngine:
    """The trainer's colocated vLLM engine as the final evaluation uses it: weights synced, then generate()."""

    def __init__(self, sleep: bool = False):
        self.calls, self.enable_sleep_mode = [], sleep
        self.llm = self

    def sync_weights(self):
        self.calls.append("sync")

    def wake_up(self, tags):
        self.calls.append(("wake", tuple(tags)))

    def generate(self, prompts, params, use_tqdm=True):
        import types

        self.calls.append(("generate", list(prompts), [p.max_tokens for p in params]))
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(
            text=f"{p} </think> <answer>{k}</answer>", token_ids=[7] * 3, finish_reason="stop")
            for k in range(q.n)]) for p, q in zip(prompts, params, strict=True)]


def colocated_trainer(tiny_model, engine, *, rank=0, world=1, context=1024, **args):
    import types

    from train.models import load_tokenizer

    defaults = {"use_vllm": True, "vllm_mode": "colocate", "vllm_tensor_parallel_size": 1,
                "vllm_max_model_length": context}
    return types.SimpleNamespace(args=types.SimpleNamespace(**{**defaults, **args}), vllm_generation=engine,
                                 processing_class=load_tokenizer(str(tiny_model)),
                                 accelerator=types.SimpleNamespace(process_index=rank, num_processes=world))


@pytest.fixture
def fake_vllm(monkeypatch):
    import sys
    import types

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=SamplingParams))


def test_the_final_evaluation_runs_on_the_trainers_engine_after_syncing_its_last_weights(
        tmp_path, tiny_model, tiny_data, fake_vllm):
    from step3_GRPO.train_trl import colocated_engine

    cfg = load_config(tiny_config(tmp_path, tiny_model, tiny_data), ["evaluation.use_vllm=true", "evaluation.n=2"])
    examples = heldout(cfg)
    engine = FakeColocatedEngine(sleep=True)
    generate = colocated_engine(colocated_trainer(tiny_model, engine), cfg, examples)
    assert engine.calls == ["sync", ("wake", ("kv_cache",))]  # before any generation: the final weights
    summary = evaluate(cfg, str(tiny_model), examples, tmp_path / "eval", generate_fn=generate)
    (_, prompts, budgets) = engine.calls[-1]
    assert prompts == [e.prompt for e in examples] and budgets == [cfg.evaluation.max_tokens] * len(examples)
    assert summary["sampling"]["backend"] == "vllm (the trainer's engine)"
    assert summary["total_samples"] == 2 * len(examples)


def test_each_process_generates_its_share_and_rank_0_gets_all_in_order(tmp_path, tiny_model, tiny_data, fake_vllm,
                                                                         monkeypatch):
    import accelerate.utils

    from step3_GRPO.train_trl import colocated_engine

    cfg = load_config(tiny_config(tmp_path, tiny_model, tiny_data), ["evaluation.use_vllm=true"])
    examples = heldout(cfg)[:5]
    prompts = [e.prompt for e in examples]
    shares = {}

    def gather_for(rank):  # accelerate's gather_object: every process's list, rank 0's first
        def gather(share):
            shares[rank] = share
            return [*shares.get(0, []), *shares.get(1, [])]
        return gather

    for rank in (1, 0):  # rank 1 first, so that rank 0's gather holds both shares
        monkeypatch.setattr(accelerate.utils, "gather_object", gather_for(rank))
        engine = FakeColocatedEngine()
        backend, gens = colocated_engine(colocated_trainer(tiny_model, engine, rank=rank, world=2), cfg,
                                         examples)(prompts)
        assert engine.calls[-1][1] == prompts[rank::2]
    assert [g["text"].rsplit(" </think>", 1)[0] for g in gens] == prompts


@pytest.mark.parametrize("args,override", [
    ({"vllm_mode": "server"}, []),
    ({"use_vllm": False}, []),
    ({"vllm_tensor_parallel_size": 2}, []),
    ({}, ["evaluation.use_vllm=false"]),
    ({"context": 40}, []),  # a held-out prompt plus evaluation.max_tokens would not fit the engine's context
])
def test_the_final_evaluation_starts_an_engine_of_its_own_where_the_trainers_cannot_serve_it(
        tmp_path, tiny_model, tiny_data, fake_vllm, args, override):
    from step3_GRPO.train_trl import colocated_engine

    cfg = load_config(tiny_config(tmp_path, tiny_model, tiny_data), ["evaluation.use_vllm=true", *override])
    engine = FakeColocatedEngine()
    assert colocated_engine(colocated_trainer(tiny_model, engine, **args), cfg, heldout(cfg)) is None
    assert engine.calls == []  # nothing synced or generated


# ---------------------------------------------------------------------------------------- standalone command
def test_standalone_command(tmp_path, tiny_model, tiny_data, capsys):
    from step3_GRPO.evaluate import main

    config = tiny_config(tmp_path, tiny_model, tiny_data)
    # a "run" folder: the model as final_model, with the trainer state and held-out ids the trainer writes
    run = tmp_path / "run"
    model = run / "final_model"
    model.mkdir(parents=True)
    for f in tiny_model.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    (model / "trainer_state.json").write_text(json.dumps({"log_history": LOG_HISTORY}))
    cfg = load_config(config)
    (run / "heldout_ids.json").write_text(json.dumps({"data": cfg.data.path, "ids": [e.id for e in heldout(cfg)]}))

    assert main(["--config", str(config)]) == 0  # default --model: <output_dir>/final_model
    summary = json.loads((model / "eval/eval_summary.json").read_text())
    assert summary["total_samples"] == 6 and summary["model_path"] == str(model)
    assert summary["dataset"]["heldout_ids_file"] == str(run / "heldout_ids.json")
    assert is_png(model / "eval/training_curves.png")

    out = tmp_path / "base-eval"
    greedy = ["evaluation.max_samples=2", "evaluation.temperature=0"]
    assert main(["--config", str(config), "--model", "base", "--output-dir", str(out), *greedy]) == 0
    base = json.loads((out / "eval_summary.json").read_text())
    assert base["total_samples"] == 2 and base["sampling"]["temperature"] == 0
    assert not (out / "training_curves.png").exists()

    # the two side by side: one row each, and a warning, since they were not sampled alike
    capsys.readouterr()
    assert main(["--compare", f"base={out}", str(model / "eval/eval_summary.json"), "--output-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| base | 2 |" in table and "| eval | 6 |" in table
    assert "warning: not run alike:" in table and "sampling.temperature" in table
    assert is_png(tmp_path / "eval_compare.png")
    assert main(["--compare", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: --compare: ")


def test_standalone_command_on_a_transfer_set(tmp_path, tiny_model, tiny_data, capsys):
    """--data evaluates every row of another file (its own columns), never the config's held-out split."""
    from step3_GRPO.evaluate import main

    transfer = tmp_path / "math500.jsonl"
    rows = [{"problem": f"What is {i} + 1?", "solution": f"It is $\\boxed{{{i + 1}}}$.", "subject": s}
            for i, s in enumerate(["algebra", "algebra", "geometry"])]
    rows.append({"problem": "no answer", "solution": "none", "subject": "algebra"})  # no gold: left out
    transfer.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tiny_config(tmp_path, tiny_model, tiny_data)
    out = tmp_path / "transfer"
    keys = ["data.problem_column=problem", "data.solution_column=solution", "data.source_column=subject"]
    assert main(["--config", str(config), "--model", "base", "--data", str(transfer), "--output-dir", str(out),
                 *keys]) == 0
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["dataset"]["path"] == str(transfer) and summary["dataset"]["split"] == "all"
    assert summary["total_samples"] == 3 and set(summary["source_breakdown"]) == {"algebra", "geometry"}
    golds = [json.loads(line)["gold"] for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert golds == ["1", "2", "3"]

    assert main(["--config", str(config), "--model", "base", "--data", str(transfer)]) == 2  # default columns
    assert "error: " in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--model", "/nonexistent/model"], "--model: /nonexistent/model not found"),
    (["evaluation.nn=2"], "unknown key 'evaluation.nn'"),
    (["--model", "{model}/config.json"], "--model: {model}/config.json is a file (give a model folder"),  # not missing
    # a checkpoint copied without its tokenizer: refused before the data is read, with no eval/ left behind
    (["--model", "{bare}"], "--model: {bare} holds no tokenizer that loads (Couldn't instantiate the backend "
                            "tokenizer from one of); copy the tokenizer files"),
])
def test_standalone_command_errors(tmp_path, tiny_model, tiny_data, capsys, monkeypatch, args, message):
    import train.data
    from step3_GRPO.evaluate import main

    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        (bare / f).write_bytes((tiny_model / f).read_bytes())
    monkeypatch.setattr(train.data, "load_rows", lambda *a: pytest.fail("the data was read"))
    config = tiny_config(tmp_path, tiny_model, tiny_data)
    args = [a.format(model=tiny_model, bare=bare) for a in args]
    assert main(["--config", str(config), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message.format(model=tiny_model, bare=bare) in err, err
    assert "\n" not in err and not (bare / "eval").exists()


def test_an_interrupted_evaluation_says_so_in_one_line(tmp_path, tiny_model, tiny_data, capsys, monkeypatch):
    from step3_GRPO.evaluate import main

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.evaluation, "generate", interrupt)
    config = tiny_config(tmp_path, tiny_model, tiny_data)
    try:
        assert main(["--config", str(config), "--model", "base", "--output-dir", str(tmp_path / "ev")]) == 130
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out as a traceback")
    err = capsys.readouterr().err.strip()
    assert err == "interrupted: no evaluation summary was written; run the same command again"
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("content,message", [
    ("not json at all", "is not an evaluation summary (not JSON)"),
    ('{"accuracy": 0.5}', "is not an evaluation summary (no total_samples, accuracy_ci95, format_accuracy, "
                          "categories)"),
    ("[1, 2]", "is not an evaluation summary (no total_samples"),
    # the right keys with the wrong values once gave tracebacks from the table or the plot
    ('{"total_samples": 6, "accuracy": "high", "accuracy_ci95": [0, 1], "format_accuracy": 1, "categories": {}}',
     "is not an evaluation summary (accuracy is 'high', not a number)"),
    ('{"total_samples": 6, "accuracy": 0.5, "accuracy_ci95": 5, "format_accuracy": 1, "categories": {}}',
     "is not an evaluation summary (accuracy_ci95 is 5, not two numbers)"),
    ('{"total_samples": 0, "accuracy": 0.5, "accuracy_ci95": [0, 1], "format_accuracy": 1, "categories": {}}',
     "is not an evaluation summary (total_samples is 0, not a positive count)"),
    ('{"total_samples": 6, "accuracy": 0.5, "accuracy_ci95": [0, 1], "format_accuracy": 1, "categories": []}',
     "is not an evaluation summary (categories is [], not a mapping)"),
    ('{"total_samples": 6, "accuracy": 0.5, "accuracy_ci95": [0, 1], "format_accuracy": 1, "categories": '
     '{"correct": {"count": "3"}}}',
     "is not an evaluation summary (categories.correct is {'count': '3'}, not a mapping with a count)"),
])
def test_compare_refuses_what_is_not_a_summary(tmp_path, capsys, content, message):
    from step3_GRPO.evaluate import main

    (tmp_path / "x.json").write_text(content)
    assert main(["--compare", str(tmp_path / "x.json"), "--output-dir", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --compare: {tmp_path / 'x.json'} {message}") and "\n" not in err
    assert not (tmp_path / "cmp").exists()  # nothing half-written


@pytest.mark.parametrize("section,key,other", [
    ("dataset", "path", "math500.jsonl"), ("dataset", "num_problems", 100), ("dataset", "seed", 7),
    ("dataset", "split", "all"), ("sampling", "temperature", 0), ("sampling", "max_tokens", 512),
])
def test_compare_warns_when_evaluations_were_not_run_alike(section, key, other):
    """README: --compare warns when the evaluations were not run alike (other problems, other sampling)."""
    from train.reporting import compare

    def summary(change: dict | None = None):
        s = {"total_samples": 500, "accuracy": 0.5, "format_accuracy": 0.9, "accuracy_ci95": [0.45, 0.55],
             "categories": {"correct": {"count": 250}, "wrong_answer": {"count": 200}, "format_failure": {"count": 50}},
             "dataset": {"path": "gsm8k.jsonl", "split": "heldout", "num_problems": 500, "seed": 42},
             "sampling": {"temperature": 1.0, "max_tokens": 1024}}
        for (sec, k), v in (change or {}).items():
            s[sec] = {**s[sec], k: v}
        return s

    assert "warning" not in compare([("a", summary()), ("b", summary())])
    table = compare([("a", summary()), ("b", summary({(section, key): other}))])
    assert table.splitlines()[-1].startswith(f"warning: not run alike: {section}.{key} ")


def test_the_base_model_is_evaluated_into_the_run_folder_before_training(tmp_path, tiny_model, tiny_data):
    """README: evaluate the base model first (into <output_dir>/eval_base), then train into the same output_dir."""
    from step3_GRPO.evaluate import main
    from train.checkpoints import plan_output_dir

    config = tiny_config(tmp_path, tiny_model, tiny_data)
    assert main(["--config", str(config), "--model", "base", "evaluation.max_samples=1"]) == 0
    assert json.loads((tmp_path / "run/eval_base/eval_summary.json").read_text())["total_samples"] == 1
    assert plan_output_dir(load_config(config)).resume_from is None  # a fresh run, not "files not from a run"


def test_an_output_dir_that_is_a_file(tmp_path, tiny_model, tiny_data, capsys):
    from step3_GRPO.evaluate import main

    config = tiny_config(tmp_path, tiny_model, tiny_data)
    (tmp_path / "taken").write_text("x")
    assert main(["--config", str(config), "--model", "base", "--output-dir", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --output-dir: {tmp_path / 'taken'} is a file; choose a folder"


def test_the_heldout_check_sees_one_file_spelled_two_ways(tmp_path, tiny_model, tiny_data, capsys, monkeypatch):
    """The run recorded its data as ~/tiny.jsonl, the config says the absolute path: one file, so the run's
    held-out ids are checked (and here they differ), never skipped."""
    from step3_GRPO.evaluate import main

    monkeypatch.setenv("HOME", str(tiny_data.parent))
    config = tiny_config(tmp_path, tiny_model, tiny_data)
    (tmp_path / "run").mkdir()
    (tmp_path / "run/heldout_ids.json").write_text(json.dumps({"data": f"~/{tiny_data.name}", "ids": [0, 1]}))
    assert main(["--config", str(config), "--model", "base"]) == 2
    out, err = capsys.readouterr()
    assert "held-out split differs" in err and "evaluating on" not in out


def test_standalone_command_rejects_another_heldout_split(tmp_path, tiny_model, tiny_data, capsys):
    from step3_GRPO.evaluate import main

    config = tiny_config(tmp_path, tiny_model, tiny_data)
    (tmp_path / "run").mkdir()
    (tmp_path / "run/heldout_ids.json").write_text(json.dumps({"data": str(tiny_data), "ids": [0, 1]}))
    assert main(["--config", str(config), "--model", "base"]) == 2
    assert "held-out split differs" in capsys.readouterr().err


def test_a_heldout_split_of_the_same_size_from_another_seed_is_refused(tmp_path, tiny_model, tiny_data, capsys):
    """The run's held-out ids are compared one by one: another seed draws as many problems, others among them."""
    from step3_GRPO.evaluate import main

    config = tiny_config(tmp_path, tiny_model, tiny_data)
    ours = [e.id for e in heldout(load_config(config))]
    theirs = [e.id for e in heldout(load_config(config, ["training.seed=7"]))]
    assert len(theirs) == len(ours) and theirs != ours
    (tmp_path / "run").mkdir()
    (tmp_path / "run/heldout_ids.json").write_text(json.dumps({"data": str(tiny_data), "ids": theirs}))
    assert main(["--config", str(config), "--model", "base", "--output-dir", str(tmp_path / "eval")]) == 2
    assert "held-out split differs" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


# ----------------------------------------------------------------------------------------------------- wandb
def wandb_records(path: Path):
    """The records of a `.wandb` transaction log (wandb's LevelDB-style log: 32 KiB blocks of chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # a chunk still being written
            return
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a record is complete
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def test_wandb_offline_run_holds_eval_metrics(tmp_path, tiny_model, tiny_data, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_RUN_GROUP", "grpo-7")  # as the trainer sets it for its final evaluation
    cfg = load_config(tiny_config(tmp_path, tiny_model, tiny_data, logging__wandb="offline"),
                      ["evaluation.max_samples=3"])
    summary = evaluate(cfg, str(tiny_model), heldout(cfg), tmp_path / "eval")
    (log,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")  # under WANDB_DIR
    # wandb's service may still be flushing the log when finish() returns: wait for the run's exit record
    deadline = time.time() + 30
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(log)) and time.time() < deadline:
        time.sleep(0.2)
    history, runs = {}, []
    for record in wandb_records(log):
        if record.WhichOneof("record_type") == "run":
            runs.append((record.run.display_name, record.run.run_group))
        if record.WhichOneof("record_type") == "history":
            # wandb-core writes "eval/accuracy" as nested_key ["eval/accuracy"], a table field as [name, field]
            history.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
    assert history["eval/accuracy"] == pytest.approx(summary["accuracy"])
    assert history["eval/format_accuracy"] == pytest.approx(summary["format_accuracy"])
    assert history["eval/format_failure"] == summary["category_3_format_failure"]
    assert history["eval/total_samples"] == 3
    assert history["eval/by_source/_type"] == history["eval/samples/_type"] == "table-file"
    assert history["eval/by_source/nrows"] == len(summary["source_breakdown"])
    assert history["eval/samples/nrows"] == 3
    assert history["eval/best_constant_accuracy"] == pytest.approx(summary["best_constant_accuracy"])
    assert ("grpo-7-eval", "grpo-7") in runs  # named after the training run, in its group
    # README: an offline run ends with the `wandb sync` command that uploads it; its pattern names this run
    from train.tracking import sync_command

    command = sync_command(cfg.logging, tmp_path)
    assert command.startswith("wandb sync ") and glob.glob(command.removeprefix("wandb sync ")) == [str(log.parent)]
