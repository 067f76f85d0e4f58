"""Evaluate any model or checkpoint on the held-out split, with the code the trainer runs after training.

    python step3_GRPO/evaluate.py --config config/grpo_config.yaml                  # <output_dir>/final_model
    python step3_GRPO/evaluate.py --config config/grpo_config.yaml --model base     # the base model, untrained
    python step3_GRPO/evaluate.py --config config/grpo_config.yaml \\
        --model outputs/grpo-qwen2.5-math-1.5b/checkpoint-100 evaluation.n=4 evaluation.max_samples=500
    grpo-math-eval --config ... --model ...    # the same, from any folder (pip install -e . installs it)

A LoRA run's checkpoint (an adapter) is evaluated as its base model with the adapter merged in (written to
<output-dir>/merged_model/).

The held-out problems are recomputed from the config's data and seed (the same ones the run never trained
on; checked against the run's heldout_ids.json when there is one), so "base" and "final_model" results
compare. `--data FILE` evaluates every row of another file instead (a transfer set the run never trained on,
e.g. MATH-500; its columns are the config's data.* keys). `--compare` puts finished evaluations side by side:

    python step3_GRPO/evaluate.py --compare base=outputs/run-base after=outputs/run --output-dir docs/

Writes eval_summary.json, eval_samples.jsonl, eval_by_source.png and, when the run left a
trainer_state.json, training_curves.png into --output-dir (default: <model>/eval, or
<output_dir>/eval_base for the base model). Exit code 2 on a configuration mistake, with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from train.checkpoints import check_writable
from train.config import ConfigError, load_config, resolve_path

DEFAULT_CONFIG = "config/grpo_config.yaml"


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description="Held-out evaluation of a model or checkpoint (3 categories).")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file (default: %(default)s)")
    ap.add_argument("--model", default=None,
                    help="model folder or checkpoint; 'base' = the config's model.name_or_path "
                         "(default: <checkpointing.output_dir>/final_model)")
    ap.add_argument("--output-dir", default=None, help="where results go (default: <model>/eval)")
    ap.add_argument("--data", default=None, metavar="FILE",
                    help="evaluate every row of this .jsonl/.json/.parquet file (a transfer set) instead of the "
                         "held-out split; columns as in data.problem_column / solution_column / source_column")
    ap.add_argument("--compare", nargs="+", metavar="[NAME=]PATH", default=None,
                    help="instead of evaluating: compare finished evaluations (folders holding eval_summary.json, "
                         "or the files): print a table, write eval_compare.png into --output-dir (default: .)")
    ap.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. evaluation.n=4")
    return ap.parse_args(argv)


def compare(items: list[str], out_dir: str | None) -> None:
    from train.reporting import compare as compare_summaries

    named = []
    for item in items:
        name, _, path = item.rpartition("=")
        p = Path(path).expanduser()
        p = p / "eval_summary.json" if p.is_dir() else p
        if not p.is_file():
            raise ConfigError(f"--compare: {p} not found (give an evaluation's folder or its eval_summary.json)")
        named.append((name or p.parent.name, read_summary(p)))
    png = Path(out_dir or ".").expanduser() / "eval_compare.png"
    check_writable(png.parent, "--output-dir")
    png.parent.mkdir(parents=True, exist_ok=True)
    print(compare_summaries(named, png))
    print(f"[eval] wrote {png}")


SUMMARY_KEYS = ("total_samples", "accuracy", "accuracy_ci95", "format_accuracy", "categories")


def read_summary(path: Path) -> dict:
    """An eval_summary.json as evaluate() writes it; anything else is refused with what it lacks or what is wrong."""
    try:
        summary = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"--compare: {path} is not an evaluation summary (not JSON); give the eval_summary.json "
                          "that evaluate.py wrote, or its folder") from None
    missing = [k for k in SUMMARY_KEYS if k not in summary] if isinstance(summary, dict) else list(SUMMARY_KEYS)
    why = f"no {', '.join(missing)}" if missing else wrong_type(summary)
    if why:
        raise ConfigError(f"--compare: {path} is not an evaluation summary ({why}); give the eval_summary.json that "
                          "evaluate.py wrote, or its folder")
    return summary


def wrong_type(summary: dict) -> str | None:
    """The first value the comparison reads that is not of the kind evaluate() writes, or None.

    >>> wrong_type({"total_samples": 6, "accuracy": "high", "accuracy_ci95": [0, 1], "format_accuracy": 1.0,
    ...             "categories": {}})
    "accuracy is 'high', not a number"
    """
    from train.summary import CATEGORIES

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    def count(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    s, ci = summary, summary["accuracy_ci95"]
    cats = s["categories"] if isinstance(s["categories"], dict) else {}
    read = [  # (key, its value, is it what evaluate() writes, what that is)
        ("total_samples", s["total_samples"], count(s["total_samples"]) and s["total_samples"] > 0, "a positive count"),
        ("accuracy", s["accuracy"], number(s["accuracy"]), "a number"),
        ("format_accuracy", s["format_accuracy"], number(s["format_accuracy"]), "a number"),
        ("accuracy_ci95", ci, isinstance(ci, list) and len(ci) == 2 and all(map(number, ci)), "two numbers"),
        ("categories", s["categories"], isinstance(s["categories"], dict), "a mapping"),
        *((f"categories.{c}", cats.get(c), isinstance(cats.get(c), dict) and count(cats[c].get("count")),
           "a mapping with a count") for c in CATEGORIES),
        *((k, s.get(k), s.get(k) is None or number(s[k]), "a number or null")
          for k in ("best_constant_accuracy", "median_think_tokens")),
        *((k, s.get(k), isinstance(s.get(k, {}), dict), "a mapping") for k in ("dataset", "sampling")),
    ]
    return next((f"{key} is {value!r}, not {what}" for key, value, ok, what in read if not ok), None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        compare(args.compare, args.output_dir) if args.compare else run(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the summary is written last: an interrupted evaluation has none
        print("interrupted: no evaluation summary was written; run the same command again", file=sys.stderr)
        return 130
    return 0


def run(args) -> dict:
    # 1. config and model path: user mistakes end here, before data or weights are read
    cfg = load_config(resolve_path(args.config), args.overrides)
    run_dir = Path(cfg.checkpointing.output_dir).expanduser()
    base = args.model == "base"
    if base:
        from train.models import check_model_source, materialize

        check_model_source(cfg.model)
        out_dir = Path(args.output_dir).expanduser() if args.output_dir else run_dir / "eval_base"
        check_writable(out_dir, "--output-dir")
        model_path = materialize(cfg.model)
    else:
        from train.lora import is_adapter
        from train.models import check_tokenizer

        model = resolve_path(args.model) if args.model else run_dir / "final_model"
        if not (model / "config.json").is_file() and not is_adapter(model):
            what = "has no config.json" if model.is_dir() else "is a file" if model.exists() else "not found"
            raise ConfigError(f"--model: {model} {what} (give a model folder, a checkpoint-N folder, or 'base')")
        check_tokenizer(model, "--model")
        model_path = str(model)
        out_dir = Path(args.output_dir).expanduser() if args.output_dir else model / "eval"
        check_writable(out_dir, "--output-dir")
        run_dir = model.parent
        if is_adapter(model):  # a LoRA run's checkpoint: evaluated as its base with the adapter merged in
            from train.lora import merge_adapter
            from train.models import inference_dtype

            print(f"[eval] merging the LoRA adapter {model} into {out_dir / 'merged_model'}", flush=True)
            model_path = str(merge_adapter(model, out_dir / "merged_model", inference_dtype(cfg.model.dtype)))

    # 2. problems: the held-out split, recomputed from data + seed and checked against the run's record of it;
    #    or, with --data, every row of a transfer set
    from train.data import build_examples, heldout_examples, load_rows
    from train.models import load_tokenizer

    tokenizer = load_tokenizer(model_path) if cfg.data.use_chat_template else None  # the prompt is the model's chat
    if args.data:
        cfg.data.path = args.data
        heldout, ids_file = build_examples(cfg, load_rows(cfg.data), tokenizer), None
        if not heldout:
            raise ConfigError(f"--data: no row of {args.data} has a gold answer in column "
                              f"'{cfg.data.solution_column}' (set data.solution_column)")
    else:
        heldout = heldout_examples(cfg, load_rows(cfg.data), tokenizer)
        ids_file = next((p for p in (Path(model_path) / "heldout_ids.json", run_dir / "heldout_ids.json")
                         if p.is_file()), None)
        if ids_file is not None:
            check_heldout(ids_file, cfg.data.path, [e.id for e in heldout])

    # 3. evaluate (plus the run's training curves when it left a trainer state)
    from train.evaluation import evaluate

    state = None if base else find_trainer_state(model)
    history = json.loads(state.read_text()).get("log_history", []) if state else None
    return evaluate(cfg, model_path, heldout, out_dir, log_history=history, heldout_ids_file=ids_file,
                    split="all" if args.data else "heldout")


def check_heldout(ids_file: Path, data_path: str, ids: list[int]) -> None:
    """The run's held-out ids must be the ones evaluated here, or trained-on problems would be scored."""
    saved = json.loads(ids_file.read_text())
    if not same_data(saved.get("data"), data_path):
        print(f"[eval] note: the run trained on {saved.get('data')}; evaluating on {data_path}", flush=True)
        return
    if saved.get("ids") != ids:
        raise ConfigError(f"the held-out split differs from the run's ({ids_file}): evaluate with the run's "
                          "data.path, data.eval_holdout and training.seed (its resolved_config.yaml)")


def same_data(a: str | None, b: str) -> bool:
    """One data source, however it is spelled: `~/x.jsonl`, `./x.jsonl` and its absolute path are one file; a Hub id
    is compared as written."""
    if a == b:
        return True
    if a is None:
        return False
    pa, pb = resolve_path(a), resolve_path(b)
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def find_trainer_state(model: Path) -> Path | None:
    """trainer_state.json in the model folder, its run folder, or the run's newest checkpoint that has one."""
    from train.checkpoints import checkpoints

    for p in (model / "trainer_state.json", model.parent / "trainer_state.json"):
        if p.is_file():
            return p
    return next((c / "trainer_state.json" for c in checkpoints(model.parent) if (c / "trainer_state.json").is_file()),
                None)


if __name__ == "__main__":
    sys.exit(main())
