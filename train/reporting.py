"""What a person reads of an evaluation: the console report, the category bars, the before/after comparison,
the training curves and the metrics in the run's trackers (wandb, tensorboard, trackio)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path

from train.config import Config
from train.summary import CATEGORIES

WANDB_SAMPLE_ROWS = 500  # samples shown in the wandb table; every sample is in eval_samples.jsonl


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


def compare(named: list[tuple[str, dict]], png: Path | None = None) -> str:
    """Evaluations side by side (e.g. the base model and the trained one): a markdown table with each accuracy's
    95% interval, a warning line when they were not run alike, and, given `png`, their category bars.

    >>> from train.summary import wilson_interval
    >>> def s(correct, wrong, n=500, tokens=512):
    ...     cats = {"correct": correct, "wrong_answer": wrong, "format_failure": n - correct - wrong}
    ...     return {"total_samples": n, "accuracy": correct / n, "format_accuracy": (correct + wrong) / n,
    ...             "accuracy_ci95": list(wilson_interval(correct, n)),
    ...             "categories": {c: {"count": k} for c, k in cats.items()},
    ...             "dataset": {"path": "gsm8k.jsonl", "num_problems": n}, "sampling": {"max_tokens": tokens}}
    >>> after = {**s(18, 482, tokens=1024), "best_constant_accuracy": 0.032, "median_think_tokens": 3.0}
    >>> print(compare([("base", s(0, 179)), ("after", after)]))
    | evaluation | n | accuracy (95% CI) | format accuracy | correct / wrong / format | best constant | median think |
    |---|---|---|---|---|---|---|
    | base | 500 | 0.0% [0.0, 0.8] | 35.8% | 0 / 179 / 321 | - | - |
    | after | 500 | 3.6% [2.3, 5.6] | 100.0% | 18 / 482 / 0 | 3.2% | 3 |
    warning: not run alike: sampling.max_tokens 512 vs 1024
    """
    def ci(s: dict) -> str:
        lo, hi = s["accuracy_ci95"]
        return f"{100 * s['accuracy']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    lines = ["| evaluation | n | accuracy (95% CI) | format accuracy | correct / wrong / format | best constant "
             "| median think |", "|---|---|---|---|---|---|---|"]
    for name, s in named:
        counts = _category_counts(s)
        counts = " / ".join(str(counts[c]) for c in CATEGORIES)
        const, think = s.get("best_constant_accuracy"), s.get("median_think_tokens")
        lines.append(f"| {name} | {s['total_samples']} | {ci(s)} | {100 * s['format_accuracy']:.1f}% | {counts} | "
                     + ("-" if const is None else f"{100 * const:.1f}%") + " | "
                     + ("-" if think is None else f"{think:g}") + " |")
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


def share_band(means: list[float], stds: list[float]) -> tuple[list[float], list[float]]:
    """The band mean +- std around a share, clipped to [0, 1]: a share cannot leave it, whatever its spread.

    >>> share_band([0.25, 0.5, 0.75], [0.5, 0.25, 0.5])
    ([0.0, 0.25, 0.25], [0.75, 0.75, 1.0])
    """
    lower = [max(0.0, m - s) for m, s in zip(means, stds, strict=True)]
    upper = [min(1.0, m + s) for m, s in zip(means, stds, strict=True)]
    return lower, upper


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
                ax.fill_between(xs, *share_band(ys, [e.get(std, 0.0) for _, e in logged]), alpha=0.15)
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


def log_trackers(cfg: Config, summary: dict, records: list[dict], plots: dict, model_path: str, step: int) -> None:
    """The evaluation into the trackers of logging.report_to that take it: wandb (scalars, tables, plots),
    tensorboard and trackio (the `eval/*` scalars, at the training's last `step`)."""
    from train.tracking import TENSORBOARD_DIR, trackers

    names = trackers(cfg.logging)
    log_wandb(cfg, summary, records, plots, model_path)
    if "tensorboard" in names:  # the training's folder when the trainer set it, else beside the evaluation
        log_dir = os.environ.get("TENSORBOARD_LOGGING_DIR") or plots["by_source"].parent / TENSORBOARD_DIR
        log_tensorboard(summary, Path(log_dir), step)
    if "trackio" in names:
        log_trackio(cfg, summary, model_path)


def log_tensorboard(summary: dict, log_dir: Path, step: int) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's writer needs the tensorboard package; tensorboardX has one of its own
        from tensorboardX import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    for key, value in eval_scalars(summary).items():
        writer.add_scalar(key, value, step)
    writer.add_text("eval/report", "    " + format_report(summary).replace("\n", "\n    "), step)  # markdown code
    writer.close()


def log_trackio(cfg: Config, summary: dict, model_path: str) -> None:
    import trackio

    name = cfg.logging.run_name or Path(model_path).name
    trackio.init(project=cfg.logging.project, name=f"{name}-eval", group=cfg.logging.run_name,
                 config={"model_path": str(model_path), "evaluation": asdict(cfg.evaluation), "data": asdict(cfg.data)})
    trackio.log(eval_scalars(summary))
    trackio.finish()


def log_wandb(cfg: Config, summary: dict, records: list[dict], plots: dict, model_path: str) -> None:
    """`eval/*` scalars, the per-source and sample tables and the plots: into the active run (the trainer's)
    if there is one, else into a run of its own that is finished here."""
    from train.tracking import wandb_mode

    mode = wandb_mode(cfg.logging)
    if mode is None:
        return
    import wandb

    own = wandb.run is None
    train_run = os.environ.get("WANDB_RUN_GROUP")  # set by the trainer for the final evaluation of its run
    run = wandb.run or wandb.init(
        project=cfg.logging.project, group=train_run,
        name=f"{train_run or cfg.logging.run_name or Path(model_path).name}-eval",
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
    """The flat `eval/*` metrics logged to the trackers."""
    s = summary
    out = {
        "eval/accuracy": s["accuracy"],
        "eval/format_accuracy": s["format_accuracy"],
        "eval/accuracy_ci95_low": s["accuracy_ci95"][0],
        "eval/accuracy_ci95_high": s["accuracy_ci95"][1],
        "eval/truncation_rate": s["truncation_rate"],
        "eval/total_samples": s["total_samples"],
    }
    for key in ("best_constant_accuracy", "median_think_tokens"):  # the shortcut detectors
        if s.get(key) is not None:
            out[f"eval/{key}"] = s[key]
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
