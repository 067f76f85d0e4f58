"""final_model/README.md: the model card written with the final model, and the final model's push to the Hub
(trl.push_to_hub, passed through to TRL) against a local stand-in of the Hub, never the network."""

from __future__ import annotations

import concurrent.futures
import fnmatch
import json
import shutil
import types
from pathlib import Path

import pytest
import torch
import yaml

from step3_GRPO.evaluate import main as evaluate_main
from step3_GRPO.train_trl import main
from tests.test_train import config, weights
from train.config import load_config
from train.model_card import render_card


@pytest.fixture
def hub(tmp_path, monkeypatch) -> types.SimpleNamespace:
    """huggingface_hub's HfApi writing into a local folder: hub/<repo_id>/..., one list of calls beside it."""
    from huggingface_hub import HfApi

    root = tmp_path / "hub"
    root.mkdir()
    calls = []

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", repo_id))
        (root / repo_id).mkdir(parents=True, exist_ok=True)
        return types.SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, ignore_patterns=None, run_as_future=False,
                      **kw):
        calls.append(("upload_folder", repo_id, Path(folder_path).name, path_in_repo))
        dest = root / repo_id / (path_in_repo or "")
        for f in Path(folder_path).rglob("*"):
            rel = f.relative_to(folder_path)
            if f.is_file() and not any(fnmatch.fnmatch(str(rel), p) or fnmatch.fnmatch(rel.parts[0], p)
                                       for p in ignore_patterns or []):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, dest / rel)
        if run_as_future:
            done = concurrent.futures.Future()
            done.set_result(None)
            return done
        return None

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return types.SimpleNamespace(root=root, calls=calls)


def test_the_final_model_has_a_card_and_goes_to_the_hub(tmp_path, tiny_model, tiny_data, hub, monkeypatch):
    cfg = config(tmp_path, tiny_model, tiny_data, trl={"push_to_hub": True, "hub_model_id": "me/tiny-grpo"})
    assert main(["--config", str(cfg)]) == 0
    out = tmp_path / "out"
    final = out / "final_model"
    card = (final / "README.md").read_text()
    summary = json.loads((out / "eval_summary.json").read_text())
    lo, hi = summary["accuracy_ci95"]
    resolved = yaml.safe_load((final / "resolved_config.yaml").read_text())
    assert resolved == yaml.safe_load((out / "resolved_config.yaml").read_text())
    for text in (f"`{tiny_model}`", f"`{tiny_data}`", "6 problems held out", "2 of 2, each 2 problems x 4",
                 "`answer` 1, `format` 0", f"**{100 * summary['accuracy']:.1f}%** answered correctly (95% CI "
                 f"{100 * lo:.1f}-{100 * hi:.1f}%) on 6 samples of 6 held-out problems",
                 f"the best constant answer, `{summary['best_constant_answer']}`",
                 f"| trl | {summary['versions']['trl']} |", f"| torch | {summary['versions']['torch']} |",
                 "grpo-math-eval --config final_model/resolved_config.yaml --model final_model"):
        assert text in card, text
    assert card.startswith("---\nlibrary_name: transformers\ntags:\n- grpo")

    # the Hub stand-in holds the final model with its card at the repository's root
    repo = hub.root / "me/tiny-grpo"
    assert ("create_repo", "me/tiny-grpo") in hub.calls
    assert hub.calls[-1] == ("upload_folder", "me/tiny-grpo", "final_model", None)
    assert (repo / "README.md").read_text() == card
    pushed, trained = weights(repo), weights(final)
    assert all(torch.equal(pushed[k], trained[k]) for k in trained)

    # the card's command evaluates the model again, from the folder above it
    monkeypatch.chdir(out)
    assert evaluate_main(["--config", "final_model/resolved_config.yaml", "--model", "final_model"]) == 0
    assert json.loads((final / "eval" / "eval_summary.json").read_text())["total_samples"] == 6


def test_a_card_without_an_evaluation_says_so_and_a_lora_card_names_the_adapter(tmp_path):
    cfg = load_config(None, ["model.name_or_path=Qwen/Qwen2.5-Math-1.5B", "peft.enabled=true", "peft.r=8"])
    card = render_card(cfg, tmp_path / "run" / "final_model", steps=50, summary=None)
    assert "base_model: Qwen/Qwen2.5-Math-1.5B" in card and "- lora" in card
    assert "datasets:\n- AI-MO/NuminaMath-CoT" in card
    assert "Not evaluated with the run" in card and "50 of 200" in card
    assert "| LoRA | rank 8, alpha 32, dropout 0.05, modules all-linear; merged into these weights" in card
    assert "`final_model_adapter/` beside this folder" in card
