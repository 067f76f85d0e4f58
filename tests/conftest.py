"""Shared fixtures: a tiny random causal LM with a tokenizer trained here, and a tiny math data file.

Nothing is downloaded: the tokenizer is trained with the `tokenizers` library on a few hundred lines, the
model has random weights from a small Llama config. Both are built once per test session.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The processes the tests start (the commands, the launcher, accelerate's ranks) import this checkout's packages, as
# `pip install -e .` of it would, whichever checkout the environment has installed
os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
TEMPLATE = (PROJECT_ROOT / "config/prompts/r1_zero.prompt").read_text()


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """Addition problems in NuminaMath's shape; every 10th solution has no \\boxed answer."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        boxed = f"\\boxed{{{a + b}}}" if i % 10 != 9 else str(a + b)
        rows.append({
            "problem": f"What is {a} + {b}?",
            "solution": f"We add {a} and {b} to get {boxed}.",
            "source": ["amc", "gsm8k", "olympiads"][i % 3],
        })
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "tiny.jsonl", make_rows(60))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer Llama (~60k parameters) with a byte-level BPE tokenizer, saved as a model folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-model")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [TEMPLATE] + [r["problem"] + " " + r["solution"] for r in make_rows(200, seed=1)]
    corpus += ["</think> <answer> 42 </answer>", "\\frac{1}{2} x^2 + y", "step by step"] * 20
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def make_guess_rows(n: int, seed: int = 0) -> list[dict]:
    """Problems whose gold answer is 1 or 2, so that a model that only guesses between them is right half the time
    (each problem distinct: the data keeps one row per problem)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = rng.randint(1, 2)
        rows.append({"problem": f"Question {i}: what is {a} - 0?", "solution": f"It is \\boxed{{{a}}}.",
                     "source": "guess"})
    return rows


@pytest.fixture(scope="session")
def guess_data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("guess-data") / "guess.jsonl", make_guess_rows(40))


@pytest.fixture(scope="session")
def formatted_model(tmp_path_factory, tiny_model) -> Path:
    """The tiny model taught (a few seconds of supervised steps) to answer in the r1_zero format with 1 or 2 at
    random: the real reward then varies within a group, so GRPO has a signal on the real reward and stop."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("formatted-model")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    rng = random.Random(0)
    texts = [TEMPLATE.replace("{question}", r["problem"]) + f" ok </think> <answer> {rng.randint(1, 2)} </answer>"
             for r in make_guess_rows(64, seed=1)]
    batch = tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
