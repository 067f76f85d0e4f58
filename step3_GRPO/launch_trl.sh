#!/usr/bin/env bash
# Launch GRPO training (then the final evaluation) on NUM_GPUS GPUs of this machine.
#
# usage: step3_GRPO/launch_trl.sh [NUM_GPUS] [--config FILE] [--accelerate-config FILE] [section.key=value ...]
#   NUM_GPUS               1 (default) runs python directly; N > 1 runs `accelerate launch --num_processes N`
#   --config FILE          training YAML (default: config/grpo_config.yaml)
#   --accelerate-config F  an accelerate config (DeepSpeed / FSDP / multi-node) passed through to accelerate
#   section.key=value      config overrides, e.g. training.max_steps=50 vllm.gpu_memory_utilization=0.4
# env knobs: PYTHON (default python3), MAIN_PROCESS_PORT (default 29500), ACCELERATE_CONFIG (same as the flag)
# The exit status is the trainer's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
NUM_GPUS=1
ACCEL_CONFIG="${ACCELERATE_CONFIG:-}"
ARGS=()

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then NUM_GPUS="$1"; shift; fi
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --accelerate-config) ACCEL_CONFIG="${2:?--accelerate-config needs a file}"; shift 2 ;;
    --accelerate-config=*) ACCEL_CONFIG="${1#*=}"; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
if [[ "$NUM_GPUS" -lt 1 ]]; then echo "error: NUM_GPUS must be at least 1, got $NUM_GPUS" >&2; exit 2; fi
if [[ -n "$ACCEL_CONFIG" && ! -f "$ACCEL_CONFIG" ]]; then
  echo "error: accelerate config $ACCEL_CONFIG not found" >&2; exit 2
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  PRESENT=$(nvidia-smi -L | wc -l)
  if [[ "$NUM_GPUS" -gt "$PRESENT" ]]; then
    echo "error: $NUM_GPUS GPUs requested but $PRESENT present; run ./launch_trl.sh $PRESENT" >&2; exit 2
  fi
fi

export PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1
TRAIN="$HERE/train_trl.py"
if [[ "$NUM_GPUS" -eq 1 && -z "$ACCEL_CONFIG" ]]; then
  exec "$PYTHON" "$TRAIN" "${ARGS[@]+"${ARGS[@]}"}"
fi
LAUNCH=(-m accelerate.commands.launch --num_processes "$NUM_GPUS" --main_process_port "${MAIN_PROCESS_PORT:-29500}")
[[ -n "$ACCEL_CONFIG" ]] && LAUNCH+=(--config_file "$ACCEL_CONFIG")
exec "$PYTHON" "${LAUNCH[@]}" "$TRAIN" "${ARGS[@]+"${ARGS[@]}"}"
