#!/usr/bin/env bash
# Launch GRPO training (then the final evaluation) on NUM_GPUS GPUs of this machine.
#
# usage: step3_GRPO/launch_trl.sh [NUM_GPUS] [options] [section.key=value ...]
#   NUM_GPUS                 GPUs on this machine; 1 (default) runs python directly, N > 1 `accelerate launch`
#   --config FILE            training YAML (default: config/grpo_config.yaml)
#   --accelerate-config FILE an accelerate config passed through (config/accelerate/{ddp,fsdp2,zero2,zero3}.yaml)
#   --num-machines N --machine-rank R --main-process-ip IP [--main-process-port P]   multi-node (run on every node)
#   --dry-run                print the command instead of running it
#   section.key=value        config overrides, e.g. training.max_steps=50 vllm.gpu_memory_utilization=0.4
# env knobs: PYTHON (default python3), MAIN_PROCESS_PORT (default 29500), ACCELERATE_CONFIG (same as the flag)
# The exit status is the trainer's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
NUM_GPUS=1
ACCEL_CONFIG="${ACCELERATE_CONFIG:-}"
PORT="${MAIN_PROCESS_PORT:-29500}"
MACHINES=1
RANK=""
IP=""
DRY=0
ARGS=()

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }
need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }

if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then NUM_GPUS="$1"; shift; fi
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --accelerate-config) need "$@"; ACCEL_CONFIG="$2"; shift 2 ;;
    --num-machines) need "$@"; MACHINES="$2"; shift 2 ;;
    --machine-rank) need "$@"; RANK="$2"; shift 2 ;;
    --main-process-ip) need "$@"; IP="$2"; shift 2 ;;
    --main-process-port) need "$@"; PORT="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ "$NUM_GPUS" -ge 1 ]] || die "NUM_GPUS must be at least 1, got $NUM_GPUS"
[[ -z "$ACCEL_CONFIG" || -f "$ACCEL_CONFIG" ]] || die "accelerate config $ACCEL_CONFIG not found"
if [[ "$MACHINES" -gt 1 && ( -z "$RANK" || -z "$IP" ) ]]; then
  die "--num-machines $MACHINES needs --machine-rank and --main-process-ip (the rank-0 node's address)"
fi
if [[ "$DRY" -eq 0 ]] && command -v nvidia-smi >/dev/null 2>&1; then
  PRESENT=$(nvidia-smi -L | wc -l)
  [[ "$NUM_GPUS" -le "$PRESENT" ]] || die "$NUM_GPUS GPUs requested but $PRESENT present; run with $PRESENT"
fi

export PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1
TRAIN="$HERE/train_trl.py"
if [[ "$NUM_GPUS" -eq 1 && "$MACHINES" -eq 1 && -z "$ACCEL_CONFIG" ]]; then
  CMD=("$PYTHON" "$TRAIN")
else
  # accelerate counts processes over all machines
  CMD=("$PYTHON" -m accelerate.commands.launch --num_processes "$((NUM_GPUS * MACHINES))"
       --num_machines "$MACHINES" --main_process_port "$PORT")
  [[ "$MACHINES" -gt 1 ]] && CMD+=(--machine_rank "$RANK" --main_process_ip "$IP")
  [[ -n "$ACCEL_CONFIG" ]] && CMD+=(--config_file "$ACCEL_CONFIG")
  CMD+=("$TRAIN")
fi
CMD+=("${ARGS[@]+"${ARGS[@]}"}")
if [[ "$DRY" -eq 1 ]]; then printf '%q ' "${CMD[@]}"; echo; exit 0; fi
exec "${CMD[@]}"
