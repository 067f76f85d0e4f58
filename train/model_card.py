"""The model card written with the final model (final_model/README.md), and the final model's push to the Hub.

The card says what a reader of the model needs: the base model, the data, the resolved configuration's key values
(and the whole of it), the steps trained, the held-out result with its 95% interval and the best-constant baseline,
the software versions, and the command that evaluates it again. `trl.push_to_hub` passes through to TRL (which
pushes checkpoints as transformers does); the final model is pushed here, once its evaluation and card are written.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from train.config import Config, dump_yaml, resolve_path
from train.lora import ADAPTER_DIR


def read_summary(out: Path, since: float) -> dict | None:
    """`out/eval_summary.json` when the final evaluation wrote it after `since` (a time.time()), else None."""
    path = out / "eval_summary.json"
    if not path.is_file() or path.stat().st_mtime < since:
        return None
    return json.loads(path.read_text())


def write_model_card(cfg: Config, final_dir: Path, steps: int, summary: dict | None) -> Path:
    """final_model/README.md, with the resolved configuration beside it (resolved_config.yaml)."""
    (final_dir / "resolved_config.yaml").write_text(dump_yaml(cfg))
    card = final_dir / "README.md"
    card.write_text(render_card(cfg, final_dir, steps, summary))
    return card


def hub_id(name: str) -> str | None:
    """A Hub id (`org/name`) for the card's metadata; None for a local path.

    >>> hub_id("Qwen/Qwen2.5-Math-1.5B"), hub_id("/models/x"), hub_id("~/.cache/grpo-math/qwen")
    ('Qwen/Qwen2.5-Math-1.5B', None, None)
    """
    if name.startswith((".", "/", "~")) or name.count("/") != 1 or resolve_path(name).exists():
        return None
    return name


def render_card(cfg: Config, final_dir: Path, steps: int, summary: dict | None) -> str:
    from train.evaluation import versions

    m, d, t, g, p = cfg.model, cfg.data, cfg.training, cfg.grpo, cfg.peft
    tags = ["grpo", "trl", "math", "r1-zero", *(["lora"] if p.enabled else [])]
    meta = {"library_name": "transformers", "tags": tags}
    if hub_id(m.name_or_path):
        meta["base_model"] = m.name_or_path
    if hub_id(d.path):
        meta["datasets"] = [d.path]
    base = f"`{m.name_or_path}`" + (f" (`{m.gguf_file}`, converted)" if m.gguf_file else "")
    prompt = f"`{d.prompt_template}`" + (", rendered by the tokenizer's chat template" if d.use_chat_template else "")
    rows = [
        ("base model", base),
        ("data", f"`{d.path}` (split `{d.split}`; problem `{d.problem_column}`, solution `{d.solution_column}`); "
                 f"{d.eval_holdout} problems held out, never trained on"),
        ("prompt", prompt),
        ("steps", f"{steps} of {t.max_steps}, each {t.prompts_per_step} problems x {g.group_size} completions"),
        ("rewards (weight)", ", ".join(f"`{name}` {w:g}" for name, w in cfg.rewards.items())),
        ("GRPO", f"loss `{g.loss_type}`, advantages scaled by `{g.scale_rewards}`, beta {g.beta:g}, epsilon "
                 f"{g.epsilon:g}, temperature {g.temperature:g}, {g.max_completion_length} completion tokens"),
        ("optimizer", f"`{t.optim}`, learning rate {t.learning_rate:g} (`{t.lr_scheduler_type}`), betas "
                      f"{t.adam_beta1:g}/{t.adam_beta2:g}, weight decay {t.weight_decay:g}, seed {t.seed}"),
        ("weights", f"trained in `{m.dtype}`"),
    ]
    if p.enabled:
        rows.append(("LoRA", f"rank {p.r}, alpha {p.alpha}, dropout {p.dropout:g}, modules "
                             f"{', '.join(p.target_modules)}; merged into these weights (the adapter alone: "
                             f"`{ADAPTER_DIR}/` beside this folder)"))
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {final_dir.parent.name}", "",
             f"{base} trained with GRPO (TRL's GRPOTrainer, grpo-math) to solve math problems in the r1_zero format: "
             "reasoning in `<think> ... </think>`, then the answer in `<answer> ... </answer>`.", "",
             "## Training", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "The whole resolved configuration is `resolved_config.yaml` in this folder.", "",
             "## Held-out evaluation", "", *evaluation_lines(summary), "",
             "## Software", "", "| package | version |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in ((summary or {}).get("versions") or versions()).items()), "",
             "## Evaluate it", "",
             "With grpo-math installed (`pip install -e .` in its clone), from this folder's parent:", "",
             "```bash", f"grpo-math-eval --config {final_dir.name}/resolved_config.yaml --model {final_dir.name}",
             "```", "",
             "It recomputes the held-out problems from the data and the seed, samples as above and grades every "
             "answer with the reward's grader (vLLM on a GPU, transformers elsewhere).", ""]
    return "\n".join(lines)


def evaluation_lines(s: dict | None) -> list[str]:
    if s is None:
        return ["Not evaluated with the run (evaluation.enabled was false, or the evaluation failed): run the "
                "command below."]
    lo, hi = s["accuracy_ci95"]
    sampling = s.get("sampling", {})
    out = [f"**{100 * s['accuracy']:.1f}%** answered correctly (95% CI {100 * lo:.1f}-{100 * hi:.1f}%) on "
           f"{s['total_samples']} samples of {s.get('dataset', {}).get('num_problems', '?')} held-out problems, "
           f"sampled at temperature {sampling.get('temperature', '?')}, top_p {sampling.get('top_p', '?')}, up to "
           f"{sampling.get('max_tokens', '?')} tokens; {100 * s['format_accuracy']:.1f}% in the format."]
    if s.get("best_constant_accuracy") is not None:
        out += ["", f"Baseline: the best constant answer, `{s['best_constant_answer']}` for every problem, scores "
                    f"{100 * s['best_constant_accuracy']:.1f}% on the same problems (a model that only guesses "
                    "scores about that much)."]
    return out


def push_final_model(repo_id: str, final_dir: Path, trl: dict) -> None:
    """Upload final_model/ (the model, its card and configuration) to the repository TRL created (`trl.hub_*`
    settings as given), and a LoRA run's adapter under adapter/."""
    from huggingface_hub import HfApi

    api = HfApi(token=trl.get("hub_token"))
    message = "final model, its held-out evaluation and model card"
    api.upload_folder(repo_id=repo_id, folder_path=str(final_dir), commit_message=message,
                      revision=trl.get("hub_revision"))
    adapter = final_dir.parent / ADAPTER_DIR
    if adapter.is_dir():
        api.upload_folder(repo_id=repo_id, folder_path=str(adapter), path_in_repo="adapter",
                          commit_message=message, revision=trl.get("hub_revision"))

