#!/usr/bin/env bash
# Launch GRPO training (then the final evaluation) on NUM_GPUS GPUs of this machine.
#
# usage: step3_GRPO/launch_trl.sh [NUM_GPUS] [options] [section.key=value ...]
#   NUM_GPUS                 GPUs on this machine; 1 (default) runs python directly, N > 1 `accelerate launch`
#   --config FILE            training YAML (default: config/grpo_config.yaml)
#   --accelerate-config FILE an accelerate config passed through (config/accelerate/{ddp,fsdp2,zero2,zero3}.yaml);
#                            without one, N GPUs run DDP
#   --num-machines N --machine-rank R --main-process-ip IP [--main-process-port P]   multi-node (run on every node)
#   --dry-run                print the command(s) instead of running them
# With `vllm.mode: server` in the config, the last vllm.server_gpus of the NUM_GPUS run `trl vllm-serve`, the
# others train; the launcher waits for the server's /health, and stops it when training ends or fails.
#   section.key=value        config overrides, e.g. training.max_steps=50 vllm.gpu_memory_utilization=0.4
# env knobs: PYTHON (default python3), MAIN_PROCESS_PORT (default 29500), ACCELERATE_CONFIG (same as the flag),
#   SERVER_TIMEOUT (seconds to wait for the vLLM server, default 900), GRPO_ENTRY (the Python file run in place
#   of train_trl.py with the same arguments: bench/grpo_step.py times the trainer through this launcher)
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

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
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
if [[ "$DRY" -eq 0 && -n "$ACCEL_CONFIG" ]] && grep -q '^distributed_type: *DEEPSPEED' "$ACCEL_CONFIG" \
   && ! "$PYTHON" -c "import importlib.util as u, sys; sys.exit(u.find_spec('deepspeed') is None)"; then
  die "$ACCEL_CONFIG runs DeepSpeed, which is not installed: pip install -e '.[deepspeed]'"
fi
if [[ "$DRY" -eq 0 ]] && command -v nvidia-smi >/dev/null 2>&1; then
  PRESENT=$(nvidia-smi -L | wc -l)
  [[ "$NUM_GPUS" -le "$PRESENT" ]] || die "$NUM_GPUS GPUs requested but $PRESENT present; run with $PRESENT"
fi

export PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1
# the config decides between vLLM inside each training process and a vLLM server on GPUs of its own
PLAN=$("$PYTHON" "$HERE/launch_plan.py" --gpus "$NUM_GPUS" --machines "$MACHINES" "${ARGS[@]+"${ARGS[@]}"}") || exit $?
read -r MODE SERVER_GPUS SERVER_PORT TRAIN_GPUS MODEL <<< "$PLAN"
SERVE=()
if [[ "$MODE" == server ]]; then
  [[ "$MACHINES" -eq 1 ]] || die "vllm.mode server serves from this node only; use vllm.mode=colocate on several nodes"
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then IFS=, read -r -a DEVICES <<< "$CUDA_VISIBLE_DEVICES"
  else mapfile -t DEVICES < <(seq 0 $((NUM_GPUS - 1))); fi
  TRAIN_DEV=$(IFS=,; echo "${DEVICES[*]:0:TRAIN_GPUS}")
  SERVE_DEV=$(IFS=,; echo "${DEVICES[*]:TRAIN_GPUS:SERVER_GPUS}")
  SERVE=(env "CUDA_VISIBLE_DEVICES=$SERVE_DEV" "$PYTHON" -m trl.cli.main vllm-serve --model "$MODEL"
         --tensor_parallel_size "$SERVER_GPUS" --port "$SERVER_PORT")
fi
TRAIN="${GRPO_ENTRY:-$HERE/train_trl.py}"
if [[ "$TRAIN_GPUS" -eq 1 && "$MACHINES" -eq 1 && -z "$ACCEL_CONFIG" ]]; then
  CMD=("$PYTHON" "$TRAIN")
else
  # accelerate counts processes over all machines
  CMD=("$PYTHON" -m accelerate.commands.launch --num_processes "$((TRAIN_GPUS * MACHINES))"
       --num_machines "$MACHINES" --main_process_port "$PORT")
  [[ "$MACHINES" -gt 1 ]] && CMD+=(--machine_rank "$RANK" --main_process_ip "$IP")
  # DDP without a config: say so, since accelerate infers it only from >1 GPU on this node, and on nodes of one
  # GPU each would start every node as a lone single-process run
  if [[ -n "$ACCEL_CONFIG" ]]; then CMD+=(--config_file "$ACCEL_CONFIG"); else CMD+=(--multi_gpu); fi
  CMD+=("$TRAIN")
fi
CMD+=("${ARGS[@]+"${ARGS[@]}"}")
[[ "$MODE" == server ]] && CMD=(env "CUDA_VISIBLE_DEVICES=$TRAIN_DEV" "${CMD[@]}")
if [[ "$DRY" -eq 1 ]]; then
  [[ ${#SERVE[@]} -gt 0 ]] && { printf '%q ' "${SERVE[@]}"; echo "&"; }
  printf '%q ' "${CMD[@]}"; echo; exit 0
fi
[[ ${#SERVE[@]} -eq 0 ]] && exec "${CMD[@]}"

# server mode: start the server in its own process group, so that stopping it stops its workers too
setsid "${SERVE[@]}" &
SERVER_PID=$!
trap 'kill -TERM -- "-$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null' EXIT
echo "[launch] vLLM server (pid $SERVER_PID) on GPU(s) $SERVE_DEV, port $SERVER_PORT; waiting for /health" >&2
for ((waited = 0; ; waited += 2)); do
  kill -0 "$SERVER_PID" 2>/dev/null || die "the vLLM server exited before it was ready (see its log above)"
  "$PYTHON" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$SERVER_PORT/health', timeout=2)" \
    2>/dev/null && break
  [[ "$waited" -lt "${SERVER_TIMEOUT:-900}" ]] || die "the vLLM server was not ready after ${SERVER_TIMEOUT:-900} s"
  sleep 2
done
set +e
"${CMD[@]}"
STATUS=$?
exit "$STATUS"
