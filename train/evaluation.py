"""Final evaluation on the held-out split: generate, grade with the reward's own grader, summarise, report.

- Generation (`train.generation`) follows the CS336 protocol by default (r1_zero prompt, temperature 1, top_p 1,
  1024 new tokens, stop at `</answer>` and keep it), all of it set in the YAML's `evaluation:` section; vLLM on a
  GPU, batched transformers generation elsewhere; seeded with `training.seed`.
- Every sample is graded by `train.rewards_math`, the module the trainer's reward calls, so the accuracy
  reported here is the quantity GRPO optimised. Three categories, as in the reference README:
  1 correct, 2 wrong answer (format ok), 3 format failure (with the reason).
- The summary (`train.summary`) holds shortcut detectors: the accuracy of the best constant answer on the same
  problems (a model that learned to guess scores about that much) and the median length of the reasoning.
- Outputs in `out_dir`: `eval_summary.json` (the reference's keys plus counts, percentages, a 95% CI,
  lengths, truncation, pass@k, the shortcut detectors, provenance), `eval_samples.jsonl` (one record per sample),
  `eval_by_source.png`, `training_curves.png` (when a log history is given); the same numbers on the
  console and, in the run's trackers (wandb, tensorboard, trackio), as `eval/*` metrics (`train.reporting`).
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from train.checkpoints import model_identity, write_atomic
from train.config import Config
from train.generation import generate
from train.models import inference_dtype
from train.protocol import MIN_NEW_TOKENS, STOP, THINK_CLOSE
from train.reporting import format_report, log_trackers, plot_by_source, plot_training_curves
from train.summary import summarize

if TYPE_CHECKING:
    from train.data import Example


def evaluate(cfg: Config, model_path: str, examples: list[Example], out_dir: Path, *,
             log_history: list[dict] | None = None, heldout_ids_file: Path | None = None,
             split: str = "heldout", generate_fn=None) -> dict:
    """Generate on `examples` (the held-out split, or with split="all" every row of a transfer set), grade,
    write the summary/samples/plots, print, log.

    Run it on one process (rank 0). `generate_fn(prompts) -> (backend, generations)` replaces the generation
    (the trainer passes its own engine); by default an engine of its own loads `model_path`, so the trainer's GPU
    memory must have been freed. Returns the summary dict that is written to `out_dir/eval_summary.json`.
    """
    ev = cfg.evaluation
    start = time.time()
    out_dir = Path(out_dir)
    if ev.max_samples is not None:
        examples = examples[: ev.max_samples]
    if not examples:
        raise ValueError("evaluate() got no held-out examples (data.eval_holdout or evaluation.max_samples is 0)")

    print(f"[eval] {len(examples)} problems x {ev.n} sample(s), model {model_path}", flush=True)
    evaluated = model_identity(Path(model_path))  # before generating: the weights that are then loaded
    t_gen = time.time()
    generate_fn = generate_fn or (lambda prompts: generate(cfg, model_path, prompts))
    backend, gens = generate_fn([e.prompt for e in examples])
    t_grade = time.time()
    for g, k in zip(gens, think_lengths(model_path, [g["text"] for g in gens]), strict=True):
        g["think_tokens"] = k
    records = score(examples, gens, ev.n)
    out_tokens = sum(g["num_tokens"] for g in gens)
    timing = {"load_and_generate_s": round(t_grade - t_gen, 2), "grade_s": round(time.time() - t_grade, 2),
              "output_tokens": out_tokens, "output_tokens_per_s": round(out_tokens / max(t_grade - t_gen, 1e-9))}

    summary = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_path": str(model_path),
        "model": evaluated,  # the step and the weights' digest: which model, of those that path has held
        **summarize(records, n=ev.n),
        "dataset": {"path": cfg.data.path, "split": split, "source_split": cfg.data.split,
                    "heldout_ids_file": str(heldout_ids_file) if heldout_ids_file else None,
                    "num_problems": len(examples), "seed": cfg.training.seed},
        "sampling": {"backend": backend, "n": ev.n, "temperature": ev.temperature, "top_p": ev.top_p,
                     "top_k": 0, "max_tokens": ev.max_tokens, "min_tokens": MIN_NEW_TOKENS, "stop": [STOP],
                     "seed": cfg.training.seed, "dtype": inference_dtype(cfg.model.dtype)},
        "versions": versions(),
        "device": device_name(),
        "timing": timing,  # output_tokens_per_s counts the engine's start too
    }
    summary["wall_time_s"] = round(time.time() - start, 2)

    # the summary last, and each file whole or not at all: a kill leaves no summary of half an evaluation, nor
    # an older one beside these samples
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "eval_samples.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    print(format_report(summary), flush=True)

    plots = {"by_source": out_dir / "eval_by_source.png"}
    plot_by_source(summary, plots["by_source"])
    if log_history and plot_training_curves(log_history, out_dir / "training_curves.png"):
        plots["training_curves"] = out_dir / "training_curves.png"
    write_atomic(out_dir / "eval_summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"[eval] wrote {out_dir / 'eval_summary.json'}, eval_samples.jsonl, "
          + ", ".join(p.name for p in plots.values()), flush=True)
    step = next((e["step"] for e in reversed(log_history or []) if "step" in e), 0)  # the training's last step
    log_trackers(cfg, summary, records, plots, model_path, step)
    return summary


def score(examples: list[Example], gens: list[dict], n: int = 1) -> list[dict]:
    """One record per sample, graded by `classify_batch`, the decision the trainer's reward is made of.

    `gens` is prompt-major: the n samples of examples[0], then those of examples[1], ...
    The symbolic comparisons run in the grader's worker pool with a per-answer time limit (0 on timeout).
    """
    from train.rewards_math import classify_batch

    if len(gens) != len(examples) * n:
        raise ValueError(f"{len(gens)} generations for {len(examples)} problems x {n} samples")
    owners = [e for e in examples for _ in range(n)]
    grades = classify_batch([g["text"] for g in gens], [e.gold for e in owners], [g["truncated"] for g in gens])
    return [
        {
            "prompt_id": e.id,
            "sample": k % n,
            "source": e.source,
            "problem": e.problem,
            "response": g["text"],
            "answer": grade.answer,
            "gold": e.gold,
            "category": grade.category,
            "format_reason": grade.format_reason,
            "format_reward": grade.format_reward,
            "answer_reward": grade.answer_reward,
            "reward": grade.reward,
            "grader_timed_out": grade.timed_out,
            "num_tokens": g["num_tokens"],
            "think_tokens": g.get("think_tokens"),
            "truncated": g["truncated"],
        }
        for k, (e, g, grade) in enumerate(zip(owners, gens, grades, strict=True))
    ]


def think_lengths(model_path: str, texts: list[str]) -> list[int | None]:
    """Tokens of reasoning in each response: the text before `</think>` (None where there is none)."""
    from train.models import load_tokenizer

    cut = [t.find(THINK_CLOSE) for t in texts]
    thoughts = [t[:c] for t, c in zip(texts, cut, strict=True) if c >= 0]
    if not thoughts:
        return [None] * len(texts)
    lengths = iter(len(i) for i in load_tokenizer(model_path)(thoughts, add_special_tokens=False)["input_ids"])
    return [next(lengths) if c >= 0 else None for c in cut]


def versions() -> dict:
    out = {}
    for pkg in ("torch", "transformers", "trl", "peft", "vllm", "datasets", "math-verify", "wandb"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
