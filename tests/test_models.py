"""`train.models.materialize`: a GGUF file becomes, once, a plain model folder that vLLM and transformers load.

The GGUF is written here with the `gguf` package from the tiny model's weights, the way llama.cpp's
`convert_hf_to_gguf.py` writes a llama model, so the conversion is checked against the model it came from.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from train.config import ModelConfig

PROMPT = "What is 12 + 30? Let's think step by step. </think> <answer> 42 </answer>"
BOS = "<|im_start|>"  # an extra control token, as SmolLM2's GGUF has: transformers reads it as the eos


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp stores q/k rows interleaved per rotary pair (`LlamaModel.permute`); transformers undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, model, tok) -> None:
    """The model (float32) and its byte-level BPE tokenizer as a llama GGUF, plus one BOS control token at the end
    of the vocabulary that is not the EOS (the disagreement `materialize` corrects)."""
    import gguf

    c = model.config
    tokens = tok.convert_ids_to_tokens(list(range(len(tok)))) + [BOS]
    assert c.vocab_size == len(tokens)
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in (tok.eos_token, BOS) else gguf.TokenType.NORMAL
                       for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(len(tokens) - 1)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        a = tensor.numpy()
        if name.endswith("q_proj.weight"):
            a = permute(a, c.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            a = permute(a, c.num_key_value_heads)
        w.add_tensor(names.get_name(name, try_suffixes=(".weight",)), np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory, tiny_model):
    """(folder holding tiny.gguf, the model it was written from, the tiny model's tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("gguf")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    torch.manual_seed(0)
    model.resize_token_embeddings(len(tok) + 1)  # room for the BOS token
    write_gguf(folder / "tiny.gguf", model, tok)
    return folder, model, tok


def gguf_config(folder, cache) -> ModelConfig:
    return ModelConfig(name_or_path=str(folder), gguf_file="tiny.gguf", cache_dir=str(cache))


def count_gguf_loads(monkeypatch) -> list:
    from transformers import AutoModelForCausalLM

    calls, load = [], AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: (k.get("gguf_file") and calls.append(k["gguf_file"])) or load(*a, **k))
    return calls


def test_gguf_becomes_a_plain_folder_with_the_same_model(tmp_path, gguf_model, monkeypatch):
    """The converted folder is a regular bfloat16 model whose logits are the GGUF's source model's (q/k rows
    un-permuted), with a tokenizer that encodes as the original and stops where the generation config says."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from train.models import materialize

    folder, source, tok = gguf_model
    loads = count_gguf_loads(monkeypatch)
    out = materialize(gguf_config(folder, tmp_path))
    assert out == str(tmp_path / "models" / "tiny") and loads == ["tiny.gguf"]
    files = {p.name for p in (tmp_path / "models" / "tiny").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    config = json.loads((tmp_path / "models" / "tiny" / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny"]  # no partial folder left

    converted = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    reference = copy.deepcopy(source).to(torch.bfloat16).to(torch.float32)  # materialize keeps bfloat16 weights
    ids = tok(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        got, want = converted(ids).logits, reference(ids).logits
    # equal but for the RMSNorm epsilon, which GGUF stores as a float32 (1e-6 -> 9.99999997e-07: 8e-7 here); q/k
    # rows left permuted, or permuted the wrong way, move these small logits (|x| < 1) by over 1e-3
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

    ctok = AutoTokenizer.from_pretrained(out)
    assert ctok(PROMPT).input_ids == ids[0].tolist()
    # the GGUF reader takes the tokenizer's eos from the BOS id; the generation config's eos wins
    assert converted.generation_config.eos_token_id == tok.eos_token_id
    assert (ctok.eos_token, ctok.eos_token_id) == (tok.eos_token, tok.eos_token_id)
    assert ctok.pad_token == tok.pad_token
    assert json.loads((tmp_path / "models" / "tiny" / "tokenizer_config.json").read_text())[
        "clean_up_tokenization_spaces"] is False

    assert materialize(gguf_config(folder, tmp_path)) == out and loads == ["tiny.gguf"]  # converted once


def test_two_conversions_at_once_leave_one_complete_folder(tmp_path, gguf_model, monkeypatch):
    """Another process (another pid) converts and publishes while this one is about to publish: this one keeps
    theirs and removes its own partial folder."""
    import train.models as models

    folder, _, _ = gguf_model
    cfg, publish, racer = gguf_config(folder, tmp_path), models.publish, {}

    def publish_after_a_racer(tmp, out):
        if not racer:
            racer["ours"] = tmp.name
            with monkeypatch.context() as m:
                m.setattr(os, "getpid", lambda: 1)
                racer["path"] = models.materialize(cfg)
            racer["inode"] = (out / "model.safetensors").stat().st_ino
        publish(tmp, out)

    monkeypatch.setattr(models, "publish", publish_after_a_racer)
    assert models.materialize(cfg) == racer["path"] == str(tmp_path / "models" / "tiny")
    assert racer["ours"] == f"tiny.partial-{os.getpid()}"  # the two wrote to folders of their own
    assert (tmp_path / "models" / "tiny" / "model.safetensors").stat().st_ino == racer["inode"]  # theirs kept
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny"]


def test_a_folder_without_config_is_not_taken_for_a_finished_conversion(tmp_path):
    """A rename that fails onto something that is not a complete model folder is an error, not a success."""
    from train.models import publish

    tmp, out = tmp_path / "m.partial-7", tmp_path / "m"
    tmp.mkdir()
    (tmp / "config.json").write_text("{}")
    out.mkdir()
    (out / "stray").write_text("x")
    with pytest.raises(OSError):
        publish(tmp, out)
    assert (tmp / "config.json").is_file()


@pytest.mark.parametrize(("eos", "ids"), [
    (None, []),
    (2, [2]),
    ([2, 7], [2, 7]),
    ((3,), [3]),
])
def test_eos_token_ids_is_always_a_list(eos, ids):
    from types import SimpleNamespace

    from train.models import eos_token_ids

    assert eos_token_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=eos))) == ids


@pytest.mark.parametrize(("name", "gguf_file", "offline", "error"), [
    ("model", None, False, None),  # a model folder
    ("gguf", "tiny.gguf", False, None),  # a folder holding the GGUF
    ("gguf", "other.gguf", False, "model.gguf_file: .*other.gguf not found"),  # a typo in the file name
    ("gguf", None, False, "has no config.json .*set model.gguf_file"),  # a GGUF folder given as a model folder
    ("./no-such-model", None, False, "model.name_or_path: folder .*no-such-model not found"),  # relative path
    ("a/b/c", None, True, "model.name_or_path: folder a/b/c not found"),  # no Hub id has two slashes
    ("org/cached", None, True, None),  # in the Hub cache
    ("org/missing", None, True, "org/missing is not in the Hub cache and HF_HUB_OFFLINE=1"),
    ("org/missing", None, False, None),  # online: the Hub is asked when the model loads
])
def test_model_source_is_checked_before_loading(tmp_path, monkeypatch, name, gguf_file, offline, error):
    import huggingface_hub.constants

    from train.config import ConfigError
    from train.models import check_model_source

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "gguf").mkdir()
    (tmp_path / "gguf" / "tiny.gguf").write_bytes(b"GGUF")
    snapshot = tmp_path / "hub" / "models--org--cached" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--cached" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--cached" / "refs" / "main").write_text("abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.chdir(tmp_path)
    cfg = ModelConfig(name_or_path=name if "/" in name else str(tmp_path / name), gguf_file=gguf_file)
    if error is None:
        check_model_source(cfg)
    else:
        with pytest.raises(ConfigError, match=error):
            check_model_source(cfg)


def test_a_cache_dir_that_cannot_hold_the_conversion_is_refused_first(tmp_path, gguf_model):
    """The converted folder is written into model.cache_dir after minutes of conversion: a cache_dir that cannot be
    written is refused before, in one line, and a folder converted already needs no writing."""
    from train.config import ConfigError
    from train.models import check_model_source

    folder, _, _ = gguf_model
    (tmp_path / "afile").write_text("x")
    cfg = ModelConfig(name_or_path=str(folder), gguf_file="tiny.gguf", cache_dir=str(tmp_path / "afile" / "cache"))
    with pytest.raises(ConfigError) as e:
        check_model_source(cfg)
    assert str(e.value) == (f"model.cache_dir: {tmp_path / 'afile/cache/models/tiny'} cannot be created: "
                            f"{tmp_path / 'afile'} is a file")
    check_model_source(gguf_config(folder, tmp_path / "cache"))  # a writable one
