#!/usr/bin/env bash
# Before/after on one GPU: evaluate the base model, train through launch_trl.sh, evaluate the result with the
# same command, then print both summaries side by side. Copies summaries, curves and logs to $OUT if set.
# usage: bash bench/learning_run.sh CONFIG [section.key=value ...]      (after `source bench/gpu_setup.sh`)
# env: TRAIN_TIMEOUT (seconds for the training run, default 1200)
set -uo pipefail
CFG="$1"; shift
OUTDIR=$(python3 -c "import sys; from train.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).training.output_dir)" "$CFG" "$@")
DEST="${OUT:-$OUTDIR}"
mkdir -p "$DEST"
python3 step3_GRPO/evaluate.py --config "$CFG" --model base --output-dir "$OUTDIR-base" "$@" > "$DEST/base_eval.log" 2>&1
echo "base eval rc=$?"
timeout "${TRAIN_TIMEOUT:-1200}" ./launch_trl.sh 1 --config "$CFG" "$@" > "$DEST/train.log" 2>&1
echo "train rc=$?"
cp "$OUTDIR-base/eval_summary.json" "$DEST/base_summary.json" 2>/dev/null
cp "$OUTDIR/eval_summary.json" "$DEST/after_summary.json" 2>/dev/null
cp "$OUTDIR/training_curves.png" "$OUTDIR/eval_by_source.png" "$DEST/" 2>/dev/null
python3 - "$DEST" <<'PY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
for name in ("base_summary.json", "after_summary.json"):
    p = d / name
    if not p.exists():
        print(f"{name}: missing"); continue
    s = json.loads(p.read_text())
    ci = s["accuracy_ci95"]
    print(f"{name}: accuracy {s['accuracy']:.4f} {ci} format {s['format_accuracy']:.4f} n={s['total_samples']} "
          f"wall {s.get('wall_time_s')} s")
PY
