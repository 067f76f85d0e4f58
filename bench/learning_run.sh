#!/usr/bin/env bash
# Before/after on one GPU: evaluate the base model, train through launch_trl.sh, evaluate the result with the
# same command, then print both summaries side by side. Copies summaries, curves and logs to $OUT if set.
# usage: bash bench/learning_run.sh CONFIG [section.key=value ...]      (after `source bench/gpu_setup.sh`)
# env: SKIP_BASE=1 skips the base evaluation (run the same command elsewhere, into $OUTDIR-base).
#   TRAIN_MINUTES (default 10): passed as training.max_minutes, so the run stops itself, saves and evaluates.
#   A safety timeout of TRAIN_MINUTES + 15 minutes stops a run that hangs; then its newest complete checkpoint is
#   evaluated instead of the final model.
set -uo pipefail
CFG="$1"; shift
OUTDIR=$(python3 -c "import sys; from train.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).training.output_dir)" "$CFG" "$@")
DEST="${OUT:-$OUTDIR}"
mkdir -p "$DEST"
if [[ "${SKIP_BASE:-0}" != 1 ]]; then  # SKIP_BASE=1: the same command runs elsewhere (another GPU, at the same time)
  python3 step3_GRPO/evaluate.py --config "$CFG" --model base --output-dir "$OUTDIR-base" "$@" > "$DEST/base_eval.log" 2>&1
  echo "base eval rc=$?"
fi
MINUTES="${TRAIN_MINUTES:-10}"
timeout -k 30 "$(( (MINUTES + 15) * 60 ))" ./launch_trl.sh 1 --config "$CFG" "training.max_minutes=$MINUTES" "$@" \
  > "$DEST/train.log" 2>&1
echo "train rc=$?"
if [[ ! -f "$OUTDIR/eval_summary.json" ]]; then  # killed: evaluate the final model, else the newest checkpoint
  last=$(for d in "$OUTDIR"/checkpoint-*; do compgen -G "$d/model*.safetensors" >/dev/null && echo "${d##*-} $d"; done \
         | sort -n | tail -n 1 | cut -d' ' -f2-)
  compgen -G "$OUTDIR/final_model/model*.safetensors" >/dev/null && last="$OUTDIR/final_model"
  if [[ -n "$last" ]]; then
    python3 step3_GRPO/evaluate.py --config "$CFG" --model "$last" --output-dir "$OUTDIR" "$@" > "$DEST/after_eval.log" 2>&1
    echo "after eval of $last rc=$?"
  fi
fi
cp "$OUTDIR-base/eval_summary.json" "$DEST/base_summary.json" 2>/dev/null
cp "$OUTDIR/eval_summary.json" "$DEST/after_summary.json" 2>/dev/null
cp "$OUTDIR/training_curves.png" "$OUTDIR/eval_by_source.png" "$DEST/" 2>/dev/null
cp "$OUTDIR/eval_samples.jsonl" "$DEST/after_samples.jsonl" 2>/dev/null
cp "$OUTDIR-base/eval_samples.jsonl" "$DEST/base_samples.jsonl" 2>/dev/null
cp "$OUTDIR/final_model/trainer_state.json" "$DEST/" 2>/dev/null
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
