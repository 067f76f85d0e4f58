"""Final evaluation on the held-out split: generate, grade with the reward's own grader, summarise, report.

- Generation follows the CS336 protocol by default (r1_zero prompt, temperature 1, top_p 1, 1024 new tokens,
  stop at `</answer>` and keep it), all of it set in the YAML's `evaluation:` section; vLLM on a GPU,
  batched transformers generation elsewhere; seeded with `training.seed`.
- Every sample is graded by `train.rewards_math`, the module the trainer's reward calls, so the accuracy
  reported here is the quantity GRPO optimised. Three categories, as in the reference README:
  1 correct, 2 wrong answer (format ok), 3 format failure (with the reason).
- Shortcut detectors in the summary: the accuracy of the best constant answer on the same problems (a model
  that learned to guess scores about that much) and the median length of the reasoning in tokens.
- Outputs in `out_dir`: `eval_summary.json` (the reference's keys plus counts, percentages, a 95% CI,
  lengths, truncation, pass@k, the shortcut detectors, provenance), `eval_samples.jsonl` (one record per sample),
  `eval_by_source.png`, `training_curves.png` (when a log history is given); the same numbers on the
  console and, when wandb is on, as `eval/*` metrics and tables.

>>> s = summarize([{"prompt_id": 0, "source": "amc", "category": "correct", "format_reason": None,
...                 "num_tokens": 10, "truncated": False}])
>>> s["accuracy"], s["category_1_correct"], s["source_breakdown"]["amc"]["total"]
(1.0, 1, 1)
>>> s["best_constant_accuracy"], s["median_think_tokens"]  # the records carry no gold and no think length
(None, None)
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from train.config import Config
from train.models import inference_dtype

if TYPE_CHECKING:
    from train.data import Example

THINK_CLOSE = "</think>"
STOP = "</answer>"  # the r1_zero answer ends here: generation stops and keeps it (the trainer's rollouts too)
MIN_NEW_TOKENS = 4  # an immediate EOS is not an answer
CATEGORIES = ("correct", "wrong_answer", "format_failure")
MAX_NUM_SEQS = 512  # sequences vLLM decodes at once in the evaluation; its KV cache is sized for them
WANDB_SAMPLE_ROWS = 500  # samples shown in the wandb table; every sample is in eval_samples.jsonl
Z95 = 1.959963984540054  # two-sided 95% normal quantile


# ---------------------------------------------------------------------------------------------- evaluate
def evaluate(cfg: Config, model_path: str, examples: list[Example], out_dir: Path, *,
             log_history: list[dict] | None = None, heldout_ids_file: Path | None = None,
             split: str = "heldout") -> dict:
    """Generate on `examples` (the held-out split, or with split="all" every row of a transfer set), grade,
    write the summary/samples/plots, print, log.

    Run it on one process (rank 0) after the trainer's GPU memory has been freed. Returns the summary dict
    that is written to `out_dir/eval_summary.json`.
    """
    ev = cfg.evaluation
    start = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if ev.max_samples is not None:
        examples = examples[: ev.max_samples]
    if not examples:
        raise ValueError("evaluate() got no held-out examples (data.eval_holdout or evaluation.max_samples is 0)")

    backend = "vllm" if _vllm_usable(ev.use_vllm) else "transformers"
    print(f"[eval] {len(examples)} problems x {ev.n} sample(s) with {backend}, model {model_path}", flush=True)
    prompts = [e.prompt for e in examples]
    t_gen = time.time()
    if backend == "vllm":
        gens = generate_vllm(cfg, model_path, prompts)
    else:
        gens = generate_transformers(cfg, model_path, prompts)
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

    (out_dir / "eval_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out_dir / "eval_samples.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(format_report(summary), flush=True)

    plots = {"by_source": out_dir / "eval_by_source.png"}
    plot_by_source(summary, plots["by_source"])
    if log_history and plot_training_curves(log_history, out_dir / "training_curves.png"):
        plots["training_curves"] = out_dir / "training_curves.png"
    print(f"[eval] wrote {out_dir / 'eval_summary.json'}, eval_samples.jsonl, "
          + ", ".join(p.name for p in plots.values()), flush=True)
    log_wandb(cfg, summary, records, plots, model_path)
    return summary


def _vllm_usable(wanted: bool) -> bool:
    if not wanted:
        return False
    from train.models import has_gpu

    if not has_gpu():
        return False
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        print(f"[eval] vllm not importable ({e}); generating with transformers", flush=True)
        return False
    return True


# -------------------------------------------------------------------------------------------- generation
def generate_vllm(cfg: Config, model_path: str, prompts: list[str]) -> list[dict]:
    """`n` samples per prompt with vLLM, flattened prompt-major: [{text, num_tokens, truncated}, ...]."""
    import gc

    import torch
    from vllm import LLM, SamplingParams

    from train.models import load_tokenizer

    # The engine's worker process must be spawned: forking after this process touched CUDA (the trainer did,
    # and so does any torch.cuda query) fails with "Cannot re-initialize CUDA in forked subprocess".
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    ev, seed = cfg.evaluation, cfg.training.seed
    # Held-out prompts are not length-filtered (the split must not depend on the tokenizer), so the context
    # is sized for the longest prompt, capped by the model's own context; a prompt that leaves less than
    # max_tokens gets the rest of the context as its budget, one that fills the context is not generated.
    lengths = [len(ids) for ids in load_tokenizer(model_path)(prompts)["input_ids"]]
    context = model_context(model_path) or max(lengths) + ev.max_tokens
    max_model_len = min(context, max(lengths) + ev.max_tokens)
    params = []
    for n_prompt in lengths:
        budget = min(ev.max_tokens, max_model_len - n_prompt)
        params.append(SamplingParams(n=ev.n, temperature=ev.temperature, top_p=ev.top_p,
                                     max_tokens=max(budget, 1), stop=[STOP], include_stop_str_in_output=True,
                                     min_tokens=min(MIN_NEW_TOKENS, max(budget, 1))))
    # No per-request seed: vLLM samples each seeded request with its own generator (a slower path); the
    # engine's global seed below already makes a run reproducible for the same prompts and settings.
    fits = [i for i, n_prompt in enumerate(lengths) if n_prompt < max_model_len]
    if len(fits) < len(prompts):
        print(f"[eval] {len(prompts) - len(fits)} prompt(s) longer than the model's context ({context}); "
              "they count as truncated format failures", flush=True)
    dtype = inference_dtype(cfg.model.dtype)
    seqs = min(len(fits) * ev.n, MAX_NUM_SEQS)
    # at most half of the evaluation's share: the rest holds the weights, activations and CUDA graphs; with a
    # smaller cache vLLM decodes fewer sequences at once
    share = ev.gpu_memory_utilization * gpu_total_memory()
    kv_bytes = min(kv_cache_bytes(model_path, max_model_len, seqs), int(share / 2))
    t0 = time.time()
    llm = LLM(model=model_path, gpu_memory_utilization=ev.gpu_memory_utilization, seed=seed, dtype=dtype,
              max_model_len=max_model_len, max_num_seqs=seqs, kv_cache_memory_bytes=kv_bytes)
    t1 = time.time()
    outputs = llm.generate([prompts[i] for i in fits], [params[i] for i in fits], use_tqdm=True)
    gen_s = time.time() - t1
    n_tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    print(f"[eval] vLLM engine ready in {t1 - t0:.1f} s; {n_tokens} tokens generated in {gen_s:.1f} s "
          f"({n_tokens / max(gen_s, 1e-9):.0f} tokens/s)", flush=True)
    by_prompt = dict(zip(fits, outputs, strict=True))
    gens = []
    for i in range(len(prompts)):
        if i not in by_prompt:
            gens += [{"text": "", "num_tokens": 0, "truncated": True}] * ev.n
            continue
        for o in by_prompt[i].outputs:
            gens.append({"text": o.text, "num_tokens": len(o.token_ids), "truncated": o.finish_reason == "length"})
    del llm
    gc.collect()
    torch.cuda.empty_cache()
    return gens


def kv_cache_bytes(model_path: str, max_model_len: int, seqs: int) -> int:
    """A bf16 KV cache that holds `seqs` sequences of `max_model_len` tokens at once, plus 5% for block rounding.

    The evaluation sizes vLLM's cache from what it needs rather than from a share of the card: the footprint is
    then known, and the engine's start skips vLLM's memory profiling, which fails when another process on the
    same GPU (a training run, another evaluation) frees memory meanwhile.
    """
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(model_path)
    conf = getattr(conf, "text_config", None) or conf
    head_dim = getattr(conf, "head_dim", None) or conf.hidden_size // conf.num_attention_heads
    kv_heads = getattr(conf, "num_key_value_heads", None) or conf.num_attention_heads
    per_token = 2 * conf.num_hidden_layers * kv_heads * head_dim * 2  # K and V, 2 bytes each
    return int(1.05 * per_token * max_model_len * seqs)


def gpu_total_memory() -> int:
    import torch

    return torch.cuda.get_device_properties(0).total_memory


def model_context(model_path: str) -> int | None:
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(model_path)
    conf = getattr(conf, "text_config", None) or conf
    return getattr(conf, "max_position_embeddings", None)


def generate_transformers(cfg: Config, model_path: str, prompts: list[str]) -> list[dict]:
    """`n` samples per prompt with `model.generate` on left-padded batches, flattened prompt-major."""
    import torch
    import transformers
    from tqdm import tqdm

    from train.models import eos_token_ids, has_gpu, load_policy, load_tokenizer

    ev = cfg.evaluation
    transformers.set_seed(cfg.training.seed)
    tok = load_tokenizer(model_path)  # left padding
    model = load_policy(model_path, inference_dtype(cfg.model.dtype)).eval()
    if has_gpu():
        model = model.cuda()
    eos_ids = set(eos_token_ids(model)) | {tok.eos_token_id} - {None}
    end_ids = eos_ids | {tok.pad_token_id}
    sampling = (
        # top_k=0: transformers otherwise falls back to top_k=50, which the protocol (and vLLM) do not apply
        {"do_sample": True, "temperature": ev.temperature, "top_p": ev.top_p, "top_k": 0}
        if ev.temperature > 0 else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    gens: list[dict] = []
    batches = range(0, len(prompts), ev.batch_size)
    with torch.inference_mode():
        for start in tqdm(batches, desc="eval generate", unit="batch"):
            rows = [p for p in prompts[start : start + ev.batch_size] for _ in range(ev.n)]
            enc = tok(rows, return_tensors="pt", padding=True).to(model.device)
            out = model.generate(**enc, max_new_tokens=ev.max_tokens, min_new_tokens=MIN_NEW_TOKENS,
                                 stop_strings=[STOP], tokenizer=tok, pad_token_id=tok.pad_token_id,
                                 repetition_penalty=1.0, **sampling)
            for ids in out[:, enc["input_ids"].shape[1] :].tolist():
                gens.append(_finish(ids, tok, eos_ids, end_ids, ev.max_tokens))
    del model
    return gens


def _finish(ids: list[int], tok, eos_ids: set, end_ids: set, max_tokens: int) -> dict:
    """Cut one generated row: rows that stopped early are padded (pad may equal EOS) up to the batch length."""
    end = next((i for i, t in enumerate(ids) if t in end_ids), len(ids))
    text = tok.decode(ids[:end], skip_special_tokens=True)
    cut = text.find(STOP)
    hit_stop = cut >= 0
    if hit_stop:
        text = text[: cut + len(STOP)]  # a token may run past the stop string; vLLM cuts there too
    hit_eos = not hit_stop and end < len(ids) and ids[end] in eos_ids
    num_tokens = end + int(hit_eos)  # vLLM's token_ids include the EOS
    return {"text": text, "num_tokens": num_tokens,
            "truncated": not hit_stop and not hit_eos and num_tokens >= max_tokens}


# ------------------------------------------------------------------------------------------------ scoring
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


# ---------------------------------------------------------------------------------------------- summary
def summarize(records: list[dict], *, n: int = 1) -> dict:
    """The statistics of the summary JSON from per-sample records (pure: no model, no files).

    Records need `prompt_id`, `source`, `category`, `format_reason`, `num_tokens`, `truncated`. With n > 1
    samples per problem the CI treats samples as independent (they are not: it is then too narrow), and
    pass@k (unbiased estimator, Chen et al. 2021) is reported for k = 1, 2, 4, ..., n.
    """
    total = len(records)
    if total == 0:
        raise ValueError("summarize() needs at least one record")
    counts = Counter(r["category"] for r in records)
    unknown = set(counts) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; expected {CATEGORIES}")
    correct, wrong, fmt = (counts[c] for c in CATEGORIES)
    lo, hi = wilson_interval(correct, total)
    truncated = sum(bool(r["truncated"]) for r in records)
    out = {
        "total_samples": total,
        "num_problems": len({r["prompt_id"] for r in records}),
        "samples_per_problem": n,
        "accuracy": correct / total,
        "format_accuracy": (correct + wrong) / total,  # format_reward == 1
        "category_1_correct": correct,
        "category_2_wrong_answer": wrong,
        "category_3_format_failure": fmt,
        "categories": {c: {"count": counts[c], "percent": 100.0 * counts[c] / total} for c in CATEGORIES},
        "accuracy_ci95": [lo, hi],
        "ci_method": "wilson, over samples" + (f" ({n} per problem: not independent, too narrow)" if n > 1 else ""),
        "format_failure_reasons": dict(Counter(r["format_reason"] or "unknown"
                                               for r in records if r["category"] == "format_failure")
                                       .most_common()),
        "mean_response_tokens": {
            "all": _mean(r["num_tokens"] for r in records),
            **{c: _mean(r["num_tokens"] for r in records if r["category"] == c) for c in CATEGORIES},
        },
        "truncated": truncated,
        "truncation_rate": truncated / total,
        "grader_timeouts": sum(bool(r.get("grader_timed_out")) for r in records),  # scored wrong, as in training
        **best_constant(records),
        "median_think_tokens": _median(r["think_tokens"] for r in records if r.get("think_tokens") is not None),
    }
    if n > 1:
        per_problem: dict = defaultdict(list)
        for r in records:
            per_problem[r["prompt_id"]].append(r["category"] == "correct")
        ks = sorted({2**i for i in range(int(math.log2(n)) + 1)} | {n})
        out["pass_at_k"] = {str(k): _mean(pass_at_k(len(v), sum(v), k) for v in per_problem.values()) for k in ks}
        out["mean_at_k"] = {str(n): out["accuracy"]}  # mean accuracy of the n samples of each problem
    by_source: dict = defaultdict(Counter)
    for r in records:
        by_source[r["source"]][r["category"]] += 1
    out["source_breakdown"] = {
        src: {"total": sum(c.values()), **{k: c[k] for k in CATEGORIES}, "accuracy": c["correct"] / sum(c.values()),
              "format_accuracy": (c["correct"] + c["wrong_answer"]) / sum(c.values())}
        for src, c in sorted(by_source.items(), key=lambda kv: -sum(kv[1].values()))
    }
    return out


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (sensible at 0% and 100%, unlike the normal approximation).

    >>> [round(x, 3) for x in wilson_interval(40, 100)]
    [0.309, 0.498]
    """
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # the exact endpoints at 0% and 100% (floating point leaves 0.9999999999999999)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == total else min(1.0, centre + half)
    return (lo, hi)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    >>> pass_at_k(4, 2, 1), round(pass_at_k(4, 2, 2), 4), pass_at_k(4, 0, 4)
    (0.5, 0.8333, 0.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def best_constant(records: list[dict], candidates: int = 5) -> dict:
    """The accuracy of answering every problem with one constant, graded like any answer: the best of the
    `candidates` most frequent gold answers. A model that learned to guess rather than to reason scores near
    this; a reasoning model far above it.

    >>> best_constant([{"prompt_id": i, "gold": g} for i, g in enumerate(["2", "2.0", "3", "\\frac{1}{2}"])])
    {'best_constant_accuracy': 0.5, 'best_constant_answer': '2'}
    """
    from train.rewards_math import THINK_ANSWER, classify_batch, normalize_answer

    golds = list({r["prompt_id"]: r["gold"] for r in records if r.get("gold") is not None}.values())
    if not golds:
        return {"best_constant_accuracy": None, "best_constant_answer": None}
    spelled = {}  # one spelling of each normalised gold, as the model would write it
    for g in golds:
        spelled.setdefault(normalize_answer(g), g)
    counts = Counter(normalize_answer(g) for g in golds)
    best = (-1, "")
    for norm, _ in counts.most_common(candidates):
        grades = classify_batch([f"{THINK_ANSWER} {spelled[norm]} {STOP}"] * len(golds), golds, [False] * len(golds))
        best = max(best, (sum(g.category == "correct" for g in grades), spelled[norm]), key=lambda b: b[0])
    return {"best_constant_accuracy": best[0] / len(golds), "best_constant_answer": best[1]}


def think_lengths(model_path: str, texts: list[str]) -> list[int | None]:
    """Tokens of reasoning in each response: the text before `</think>` (None where there is none)."""
    from train.models import load_tokenizer

    cut = [t.find(THINK_CLOSE) for t in texts]
    thoughts = [t[:c] for t, c in zip(texts, cut, strict=True) if c >= 0]
    if not thoughts:
        return [None] * len(texts)
    lengths = iter(len(i) for i in load_tokenizer(model_path)(thoughts, add_special_tokens=False)["input_ids"])
    return [next(lengths) if c >= 0 else None for c in cut]


def _median(values) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def versions() -> dict:
    out = {}
    for pkg in ("torch", "transformers", "trl", "vllm", "datasets", "math-verify", "wandb"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------------------------- console
def format_report(summary: dict) -> str:
    """The overall line, the 3-category table, the per-source table and the format-failure reasons."""
    s = summary
    lo, hi = s["accuracy_ci95"]
    lines = [f"accuracy {100 * s['accuracy']:.2f}% [95% CI {100 * lo:.1f}–{100 * hi:.1f}] | "
             f"format {100 * s['format_accuracy']:.2f}% | n={s['total_samples']}"
             + (f" ({s['num_problems']} problems x {s['samples_per_problem']})" if s["samples_per_problem"] > 1
                else "")]
    if "pass_at_k" in s:
        lines.append("pass@k: " + "  ".join(f"pass@{k} {100 * v:.2f}%" for k, v in s["pass_at_k"].items()))
    lines += ["", f"{'category':<20}{'count':>8}{'%':>9}"]
    for i, c in enumerate(CATEGORIES, 1):
        lines.append(f"{f'{i} {c}':<20}{s['categories'][c]['count']:>8}{s['categories'][c]['percent']:>8.2f}%")
    width = max([len("source")] + [len(src) for src in s["source_breakdown"]]) + 2
    lines += ["", f"{'source':<{width}}{'total':>7}{'correct':>9}{'wrong':>8}{'format':>8}{'accuracy':>10}"]
    for src, b in s["source_breakdown"].items():
        lines.append(f"{src:<{width}}{b['total']:>7}{b['correct']:>9}{b['wrong_answer']:>8}"
                     f"{b['format_failure']:>8}{100 * b['accuracy']:>9.2f}%")
    reasons = ", ".join(f"{k} {v}" for k, v in s["format_failure_reasons"].items()) or "none"
    lengths = s["mean_response_tokens"]
    if s.get("best_constant_accuracy") is not None:
        lines.append(f"best constant answer {s['best_constant_answer']!r}: {100 * s['best_constant_accuracy']:.2f}%"
                     f" | median think tokens {s['median_think_tokens']}")
    lines += ["", f"format failures: {reasons}",
              "mean response tokens: " + " | ".join(f"{k} {v:.1f}" for k, v in lengths.items() if v is not None)
              + f"; truncated {100 * s['truncation_rate']:.2f}%"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- plots
COLORS = {"correct": "#2e7d32", "wrong_answer": "#f9a825", "format_failure": "#c62828"}


def plot_by_source(summary: dict, path: Path) -> None:
    """Horizontal stacked bars: the share of each category per source, plus the overall row on top."""
    rows = [("all", _category_counts(summary)), *summary["source_breakdown"].items()]
    _category_bars(rows, f"held-out evaluation: accuracy {100 * summary['accuracy']:.1f}%, "
                         f"format {100 * summary['format_accuracy']:.1f}%", path)


def _category_counts(summary: dict) -> dict:
    """{total, correct, wrong_answer, format_failure}: the counts a bar of `_category_bars` is drawn from."""
    return {"total": summary["total_samples"], **{c: summary["categories"][c]["count"] for c in CATEGORIES}}


def _category_bars(rows: list[tuple[str, dict]], title: str, path: Path) -> None:
    """One stacked bar per row ({total, correct, wrong_answer, format_failure} counts), first row on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows[::-1]  # matplotlib draws the first bar at the bottom
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * len(rows)))
    left = [0.0] * len(rows)
    for c in CATEGORIES:
        widths = [100 * b[c] / b["total"] for _, b in rows]
        ax.barh([f"{name} (n={b['total']})" for name, b in rows], widths, left=left, color=COLORS[c],
                label=c.replace("_", " "))
        for i, w in enumerate(widths):
            if w >= 6:
                ax.text(left[i] + w / 2, i, f"{w:.0f}%", ha="center", va="center", fontsize=8, color="white")
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of samples")
    ax.set_title(title)
    height = fig.get_size_inches()[1]
    fig.legend(loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.4 / height, 1, 1))  # 0.4 inch at the bottom for the legend
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ compare
def compare(named: list[tuple[str, dict]], png: Path | None = None) -> str:
    """Evaluations side by side (e.g. the base model and the trained one): a markdown table with each accuracy's
    95% interval, a warning line when they were not run alike, and, given `png`, their category bars.

    >>> def s(correct, wrong, n=500, tokens=512):
    ...     cats = {"correct": correct, "wrong_answer": wrong, "format_failure": n - correct - wrong}
    ...     return {"total_samples": n, "accuracy": correct / n, "format_accuracy": (correct + wrong) / n,
    ...             "accuracy_ci95": list(wilson_interval(correct, n)),
    ...             "categories": {c: {"count": k} for c, k in cats.items()},
    ...             "dataset": {"path": "gsm8k.jsonl", "num_problems": n}, "sampling": {"max_tokens": tokens}}
    >>> print(compare([("base", s(0, 179)), ("after", s(18, 482, tokens=1024))]))
    | evaluation | n | accuracy (95% CI) | format accuracy | correct / wrong answer / format failure |
    |---|---|---|---|---|
    | base | 500 | 0.0% [0.0, 0.8] | 35.8% | 0 / 179 / 321 |
    | after | 500 | 3.6% [2.3, 5.6] | 100.0% | 18 / 482 / 0 |
    warning: not run alike: sampling.max_tokens 512 vs 1024
    """
    def ci(s: dict) -> str:
        lo, hi = s["accuracy_ci95"]
        return f"{100 * s['accuracy']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    lines = ["| evaluation | n | accuracy (95% CI) | format accuracy | correct / wrong answer / format failure |",
             "|---|---|---|---|---|"]
    for name, s in named:
        counts = _category_counts(s)
        counts = " / ".join(str(counts[c]) for c in CATEGORIES)
        lines.append(f"| {name} | {s['total_samples']} | {ci(s)} | {100 * s['format_accuracy']:.1f}% | {counts} |")
    differ = []  # the problems and the sampling must match, or the comparison says less than it seems
    for section, keys in (("dataset", ("path", "split", "num_problems", "seed")), ("sampling", None)):
        first = named[0][1].get(section, {})
        for key in keys or first:
            values = [s.get(section, {}).get(key) for _, s in named]
            if any(v != values[0] for v in values):
                differ.append(f"{section}.{key} " + " vs ".join(map(str, values)))
    if differ:
        lines.append("warning: not run alike: " + "; ".join(differ))
    if png is not None:
        title = "accuracy (95% CI): " + "  ->  ".join(f"{name} {ci(s)}" for name, s in named)
        _category_bars([(name, _category_counts(s)) for name, s in named], title, png)
    return "\n".join(lines)


# (title, exact keys, key prefixes): a panel is drawn when any of its keys is in the log history
CURVES = [
    # reward_weights [1, 0]: the reward is the answer reward (1 for a correct answer in the format), so its mean
    # is the share answered correctly; the format reward's mean is the format rate, logged but not trained on
    ("answered correctly (share; the reward)", ["reward"], []),
    ("in the </think> <answer> format (share)", [], ["rewards/format_reward"]),
    ("completion length (tokens; all, finished)", ["completions/mean_length", "completions/mean_terminated_length"],
     []),
    # a completion is finished at EOS or at the </answer> stop (R1GRPOTrainer); the rest were cut at the limit
    ("cut by the length limit (share)", ["completions/clipped_ratio"], []),
    ("KL divergence from the reference model", ["kl"], []),
    ("policy entropy (nats per token)", ["entropy"], []),
    ("loss", ["loss"], []),
    ("gradient norm before clipping", ["grad_norm"], []),
    ("learning rate", ["learning_rate"], []),
    ("held-out: answered correctly (share)", ["eval_reward"], []),
]


def curve_panels(log_history: list[dict]) -> list[tuple[str, list[str]]]:
    """The panels that the log has values for: (title, the logged keys drawn in it), in CURVES' order."""
    panels = []
    for title, keys, prefixes in CURVES:
        names = sorted({k for entry in log_history for k in entry
                        if (k in keys or any(k.startswith(p) and k.endswith("/mean") for p in prefixes))
                        and isinstance(entry[k], int | float)}, key=lambda k: (k not in keys, k))
        if names:
            panels.append((title, names))
    return panels


def plot_training_curves(log_history: list[dict], path: Path) -> bool:
    """The run's curves from the trainer's `log_history`; False (nothing written) when none are logged."""
    panels = curve_panels(log_history)
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.2 * nrows), squeeze=False)
    for ax, (title, names) in zip(axes.flat, panels, strict=False):
        for name in names:
            logged = [(i, e) for i, e in enumerate(log_history) if isinstance(e.get(name), int | float)]
            xs, ys = [e.get("step", i) for i, e in logged], [e[name] for _, e in logged]
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=name)
            std = name.replace("/mean", "/std") if name.endswith("/mean") else f"{name}_std"
            if name == "reward" and any(std in e for e in log_history):  # the spread over the step's rollouts
                sd = [e.get(std, 0.0) for _, e in logged]
                ax.fill_between(xs, [y - d for y, d in zip(ys, sd, strict=True)],
                                [y + d for y, d in zip(ys, sd, strict=True)], alpha=0.15)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------- wandb
def log_wandb(cfg: Config, summary: dict, records: list[dict], plots: dict, model_path: str) -> None:
    """`eval/*` scalars, the per-source and sample tables and the plots: into the active run (the trainer's)
    if there is one, else into a run of its own that is finished here."""
    from train.tracking import wandb_mode

    mode = wandb_mode(cfg.logging)
    if mode is None:
        return
    import wandb

    own = wandb.run is None
    run = wandb.run or wandb.init(
        project=cfg.logging.project, name=f"{cfg.logging.run_name or Path(model_path).name}-eval",
        dir=os.environ.get("WANDB_DIR") or str(plots["by_source"].parent), mode=mode, job_type="eval",
        config={"model_path": str(model_path), "evaluation": asdict(cfg.evaluation), "data": asdict(cfg.data)},
    )
    scalars = eval_scalars(summary)
    by_source = wandb.Table(columns=["source", "total", *CATEGORIES, "accuracy"],
                            data=[[src, b["total"], *(b[c] for c in CATEGORIES), b["accuracy"]]
                                  for src, b in summary["source_breakdown"].items()])
    cols = ["prompt_id", "sample", "source", "category", "format_reason", "answer", "gold", "num_tokens",
            "truncated", "response"]
    samples = wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in records[:WANDB_SAMPLE_ROWS]])
    run.log({**scalars, "eval/by_source": by_source, "eval/samples": samples,
             **{f"eval/{name}_plot": wandb.Image(str(p)) for name, p in plots.items()}})
    run.summary.update(scalars)
    if own:
        run.finish()


def eval_scalars(summary: dict) -> dict[str, float]:
    """The flat `eval/*` metrics logged to wandb."""
    s = summary
    out = {
        "eval/accuracy": s["accuracy"],
        "eval/format_accuracy": s["format_accuracy"],
        "eval/accuracy_ci95_low": s["accuracy_ci95"][0],
        "eval/accuracy_ci95_high": s["accuracy_ci95"][1],
        "eval/truncation_rate": s["truncation_rate"],
        "eval/total_samples": s["total_samples"],
    }
    for c in CATEGORIES:
        out[f"eval/{c}"] = s["categories"][c]["count"]
        out[f"eval/{c}_pct"] = s["categories"][c]["percent"]
    for name, v in s["mean_response_tokens"].items():
        if v is not None:
            out[f"eval/mean_response_tokens/{name}"] = v
    for k, v in s.get("pass_at_k", {}).items():
        out[f"eval/pass@{k}"] = v
    for src, b in s["source_breakdown"].items():
        out[f"eval/accuracy/{src}"] = b["accuracy"]
    return out
