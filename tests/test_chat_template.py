"""data.use_chat_template: the r1_zero instruction as a conversation rendered by the tokenizer's own chat template.

For the 1.5B config (Qwen2.5-Coder-1.5B-Instruct, Qwen2.5's chat template), the plain r1_zero template rendered
this way gives the prompts of config/prompts/r1_zero_chatml.prompt, the hand-written ChatML file, token for token.
The tokenizer is built here (no Hub): the tests' tiny BPE with Qwen's two chat tokens added as special tokens, and
the chat template of Qwen2.5's Instruct models (tests/fixtures/qwen2.5_chat_template.jinja)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.config import ConfigError, load_config
from train.data import build_splits, load_rows, load_template

ROOT = Path(__file__).resolve().parents[1]
QWEN_CHAT_TEMPLATE = (ROOT / "tests/fixtures/qwen2.5_chat_template.jinja").read_text()
CHAT = ["data.use_chat_template=true", "data.prompt_template=config/prompts/r1_zero.prompt"]


@pytest.fixture(scope="module")
def qwen_like(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with its tokenizer given <|im_start|> / <|im_end|> as special tokens and Qwen2.5's chat
    template (the two new ids are past the model's vocabulary: the prompts are tokenized, never run)."""
    import shutil

    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("qwen-like") / "model"
    shutil.copytree(tiny_model, out)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = QWEN_CHAT_TEMPLATE
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gsm8k_like(tmp_path_factory) -> Path:
    """GSM8K's shape (question, answer ending in '#### N'), with LaTeX braces the template must leave alone."""
    rows = [{"question": f"What is \\frac{{{i}}}{{2}} + {i}? Give {{the}} number.", "answer": f"ok\n#### {i * 1.5}"}
            for i in range(12)]
    path = tmp_path_factory.mktemp("gsm8k") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def coder_config(data: Path, *overrides: str):
    """config/qwen_coder_1.5b_gsm8k.yaml as it is, on a small local GSM8K-shaped file."""
    return load_config(ROOT / "config/qwen_coder_1.5b_gsm8k.yaml", [f"data.path={data}", "data.eval_holdout=4",
                                                                    *overrides])


def all_prompts(splits) -> list[str]:
    return list(splits.train["prompt"]) + [e.prompt for e in splits.heldout]


def test_the_coder_configs_chat_prompts_are_its_chatml_files_token_for_token(qwen_like, gsm8k_like):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen_like)
    file_cfg, chat_cfg = coder_config(gsm8k_like), coder_config(gsm8k_like, *CHAT)
    assert file_cfg.data.prompt_template.endswith("r1_zero_chatml.prompt") and not file_cfg.data.use_chat_template
    assert load_template(chat_cfg.data, tok) == load_template(file_cfg.data)
    rows = load_rows(file_cfg.data)
    from_file, from_chat = build_splits(file_cfg, rows, tok), build_splits(chat_cfg, rows, tok)
    prompts = all_prompts(from_file)
    assert prompts == all_prompts(from_chat) and len(prompts) == 12
    assert prompts[0].startswith("<|im_start|>system\nA conversation between User and Assistant.")
    assert prompts[0].endswith("<|im_end|>\n<|im_start|>assistant\n<think>") and "\\frac{" in prompts[0]
    assert tok(prompts)["input_ids"] == tok(all_prompts(from_chat))["input_ids"]
    assert tok.convert_tokens_to_ids("<|im_start|>") in tok(prompts[0])["input_ids"]  # one token, as in Qwen's vocab


def test_the_cached_prompts_follow_the_template_and_the_tokenizer(qwen_like, tiny_data, tmp_path):
    """The data stage caches prompts keyed by the rendered template: switching the chat template on, or changing
    the tokenizer's chat template, computes them again instead of serving the plain ones."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen_like)
    plain = load_config(None, [f"data.path={tiny_data}", "data.eval_holdout=4"])
    chat = load_config(None, [f"data.path={tiny_data}", "data.eval_holdout=4", "data.use_chat_template=true"])
    rows = load_rows(plain.data)
    first = all_prompts(build_splits(plain, rows, tok))
    second = all_prompts(build_splits(chat, rows, tok))
    assert first[0].startswith("A conversation") and second[0].startswith("<|im_start|>system\n")
    tok.chat_template = QWEN_CHAT_TEMPLATE.replace("<|im_start|>assistant\\n", "<|im_start|>model\\n")
    third = all_prompts(build_splits(chat, rows, tok))
    assert third[0].endswith("<|im_start|>model\n<think>")


def test_a_tokenizer_that_adds_its_own_bos_gets_none_from_the_template(tiny_model):
    """A chat template that writes the BOS token (Llama 3's does) would give two when the tokenizer adds one."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.add_special_tokens({"bos_token": "<s>"})
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[
        ("<s>", tok.bos_token_id)])
    tok.chat_template = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] "
    assert tok("x")["input_ids"][0] == tok.bos_token_id
    cfg = load_config(None, ["data.use_chat_template=true"])
    template = load_template(cfg.data, tok)
    assert template.startswith("[system] A conversation")
    assert template.endswith("[user] {question}\n[assistant] <think>")
    assert tok(template)["input_ids"].count(tok.bos_token_id) == 1


@pytest.mark.parametrize("overrides,message", [
    (["data.prompt_template=config/prompts/r1_zero_chatml.prompt"],
     "has no 'User: ' and 'Assistant: ' lines to make a conversation of (data.use_chat_template)"),
    (["data.prompt_template=config/prompts/r1_zero.prompt", "model.name_or_path=TINY"],
     "data.use_chat_template: the tokenizer of TINY has no chat template; set data.use_chat_template=false"),
])
def test_a_template_or_tokenizer_that_cannot_make_a_conversation_stops_before_the_model_loads(
        tmp_path, tiny_model, tiny_data, qwen_like, capsys, monkeypatch, overrides, message):
    import train.models
    from step3_GRPO.train_trl import main
    from tests.test_train import config

    monkeypatch.setattr(train.models, "load_policy", lambda *a, **k: pytest.fail("a model was loaded"))
    cfg = config(tmp_path, qwen_like, tiny_data, data={"use_chat_template": True})
    assert main(["--config", str(cfg), *(o.replace("TINY", str(tiny_model)) for o in overrides)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message.replace("TINY", str(tiny_model)) in err and "\n" not in err, err


def test_evaluate_renders_the_held_out_prompts_with_the_models_chat_template(tmp_path, qwen_like, tiny_data,
                                                                            monkeypatch):
    import train.evaluation
    from step3_GRPO.evaluate import main

    seen = {}
    monkeypatch.setattr(train.evaluation, "evaluate", lambda cfg, path, examples, *a, **k: seen.update(
        prompts=[e.prompt for e in examples]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{path: {tiny_data}, eval_holdout: 4, use_chat_template: true}}\n")
    assert main(["--config", str(cfg), "--model", str(qwen_like), "--output-dir", str(tmp_path / "ev")]) == 0
    assert len(seen["prompts"]) == 4 and all(p.startswith("<|im_start|>system\n") for p in seen["prompts"])


def test_the_chat_template_needs_the_tokenizer_and_must_keep_the_placeholder(tiny_model):
    from transformers import AutoTokenizer

    data = load_config(None, ["data.use_chat_template=true"]).data
    with pytest.raises(ValueError, match="need the model's tokenizer"):
        load_template(data)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = "{% for m in messages %}{{ m.content | upper }}{% endfor %}"  # rewrites what it is given
    with pytest.raises(ConfigError, match="changed the {question} placeholder; set data.use_chat_template=false"):
        load_template(data, tok)
