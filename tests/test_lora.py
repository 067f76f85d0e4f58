"""LoRA (peft:): TRL trains adapters on the frozen base; checkpoints hold the adapter, the run ends with the merged
model in final_model/ (what evaluate.py and vLLM load) beside the adapter; bad values stop before the model loads."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from step3_GRPO.evaluate import main as evaluate_main
from step3_GRPO.train_trl import main
from tests.test_train import config, varied_reward, weights  # noqa: F401 (varied_reward is a fixture)
from train.checkpoints import incomplete
from train.config import ConfigError, PeftSection, load_config

pytest.importorskip("peft")


def test_lora_trains_adapters_on_a_frozen_base_and_ends_with_a_merged_model(tmp_path, tiny_model, tiny_data,
                                                                            varied_reward):  # noqa: F811
    from safetensors.torch import load_file

    cfg = config(tmp_path, tiny_model, tiny_data, peft={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0})
    assert main(["--config", str(cfg)]) == 0
    out = tmp_path / "out"
    # checkpoints and final_model_adapter/ hold the adapter alone, trained: LoRA's B matrices start at zero
    for folder in (out / "checkpoint-2", out / "final_model_adapter"):
        assert (folder / "adapter_config.json").is_file() and not (folder / "model.safetensors").exists()
    adapter = load_file(str(out / "final_model_adapter" / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())
    assert json.loads((out / "final_model_adapter" / "adapter_config.json").read_text())["target_modules"]

    # final_model/ is the base with exactly the adapter's update merged in: every other weight is the base's
    base, merged = weights(tiny_model), weights(out / "final_model")
    assert set(merged) == set(base)
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    linear = {k for k in base if k.endswith("_proj.weight")}
    assert changed == linear  # all-linear: the attention and MLP projections; embeddings and norms untouched
    name = "model.layers.0.self_attn.q_proj.weight"
    a = adapter[f"base_model.model.{name.removesuffix('.weight')}.lora_A.weight"]
    b = adapter[f"base_model.model.{name.removesuffix('.weight')}.lora_B.weight"]
    torch.testing.assert_close(merged[name], base[name] + (8 / 4) * b @ a)
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["model_path"] == str(out / "final_model") and summary["total_samples"] == 6

    # a LoRA checkpoint is complete as the resume logic reads it (the adapter, its optimizer state), and evaluate.py
    # takes it as it is
    assert incomplete(out / "checkpoint-2") is None and (out / "checkpoint-2" / "optimizer.pt").is_file()
    assert evaluate_main(["--config", str(cfg), "--model", str(out / "checkpoint-2"),
                          "--output-dir", str(tmp_path / "eval-ck2")]) == 0
    assert (tmp_path / "eval-ck2" / "merged_model" / "config.json").is_file()
    assert json.loads((tmp_path / "eval-ck2" / "eval_summary.json").read_text())["total_samples"] == 6


@pytest.mark.parametrize("override,message", [
    ("peft.target_modules=[qq_proj]", "peft.target_modules ['qq_proj']: Target modules {'qq_proj'} not found in the "
                                      "base model"),
    ("peft.target_modules=[]", "'peft.target_modules' must be a name or a list of names, got []"),
    ("peft.r=0", "'peft.r' must be at least 1, got 0"),
    ("peft.dropout=1", "'peft.dropout' must be in [0, 1), got 1.0"),
])
def test_bad_lora_values_stop_before_the_model_loads(tmp_path, tiny_model, tiny_data, capsys, monkeypatch, override,
                                                     message):
    import train.models

    monkeypatch.setattr(train.models, "load_policy", lambda *a, **k: pytest.fail("a model was loaded"))
    cfg = config(tmp_path, tiny_model, tiny_data, peft={"enabled": True})
    assert main(["--config", str(cfg), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err


def test_lora_without_peft_installed_says_how_to_get_it(tmp_path, tiny_model, tiny_data, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else find_spec(name, *a))
    cfg = config(tmp_path, tiny_model, tiny_data, peft={"enabled": True})
    assert main(["--config", str(cfg)]) == 2
    assert "peft.enabled is true but peft is not installed: pip install -e '.[peft]'" in capsys.readouterr().err


def test_the_section_becomes_trls_lora_config():
    from train.lora import lora_config

    assert lora_config(PeftSection()) is None  # off by default: every weight trains
    lora = lora_config(PeftSection(enabled=True, r=8, alpha=16, dropout=0.1, target_modules=["q_proj", "v_proj"]))
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.task_type) == (8, 16, 0.1, "CAUSAL_LM")
    assert lora.target_modules == {"q_proj", "v_proj"}
    assert load_config(None, ["peft.target_modules=o_proj"]).peft.target_modules == ["o_proj"]  # one name


def test_the_disk_check_counts_the_adapter_not_the_whole_model(tmp_path, tiny_model, monkeypatch):
    """A LoRA checkpoint holds the adapter and its AdamW state (float32), not the model's weights: a disk too small
    for full fine-tuning's checkpoints holds a LoRA run's."""
    import train.checkpoints
    from train.checkpoints import OutputPlan, check_disk, parameter_count
    from train.lora import check_lora

    cfg = load_config(None, [f"checkpointing.output_dir={tmp_path / 'out'}", "peft.enabled=true", "peft.r=2",
                             "training.max_steps=2", "checkpointing.save_steps=2"])
    params, adapter = parameter_count(str(tiny_model)), check_lora(cfg, str(tiny_model))
    assert 0 < adapter < params / 10
    free = 12 * params  # one full checkpoint (weights + AdamW state): no room for the final model beside it
    monkeypatch.setattr(train.checkpoints.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10 * free, 9 * free, free))
    check_disk(cfg, str(tiny_model), OutputPlan(), adapter_params=adapter)
    with pytest.raises(ConfigError, match="checkpoint"):
        check_disk(cfg, str(tiny_model), OutputPlan())
