#!/usr/bin/env bash
# One GPU session's measurements, as lanes running side by side on the GPUs of one machine (4 GPUs: every
# lane; 2 GPUs: the learning run and the 1- and 2-GPU benchmarks), so that 30 minutes of device time hold
# them all. Results go to $RES (default /tmp/session): one JSON and one log per job, `progress` with each
# job's start, end and exit status, DONE at the end. Start it detached so that it outlives the `run` call:
#   setsid nohup bash bench/gpu_session.sh > /tmp/session.log 2>&1 < /dev/null &
# and collect with `bash bench/gpu_collect.sh SECONDS` (waits, then packs what is done into $OUT).
# Lanes run concurrently on different GPUs of one host and share its CPUs: in session 2 steps varied by
# about +-15% (docs/benchmarks.md); a figure meant to be exact runs alone.
set -uo pipefail
cd "$(dirname "$0")/.."
RES="${RES:-/tmp/session}"
mkdir -p "$RES"
trap 'touch "$RES/DONE"' EXIT  # also when the set-up fails: gpu_collect.sh stops waiting
source bench/gpu_setup.sh
NG=$(nvidia-smi -L | wc -l)
B1_ARGS=(-- vllm.gpu_memory_utilization=0.17)  # vLLM's 24 GB of an 80 GB H100 at 0.3, so peaks read as on an H100
FAST=sleep_ckpt_off                             # the multi-GPU runs' settings: fastest on B1 in the last session
echo "$(date +%T) start, $NG GPU(s)" >> "$RES/progress"

job() {  # job NAME GPUS COMMAND...: one measurement on the given GPUs, its own vLLM compile cache
  local name=$1 gpus=$2 t=$SECONDS
  shift 2
  echo "$(date +%T) start $name on GPU $gpus" >> "$RES/progress"
  CUDA_VISIBLE_DEVICES=$gpus VLLM_CACHE_ROOT=/tmp/vllm-cache-${gpus//,/_} "$@" > "$RES/$name.log" 2>&1
  echo "$(date +%T) end $name rc=$? $((SECONDS - t)) s" >> "$RES/progress"
}
bench() {  # bench NAME GPUS GRPO_STEP_ARGS...
  local name=$1 gpus=$2
  shift 2
  job "$name" "$gpus" python3 bench/grpo_step.py --work /tmp/bench --scratch "/tmp/bench-$name" \
    --out "$RES/$name.json" "$@"
}
prep() { python3 bench/grpo_step.py --work /tmp/bench --prepare --model "$1" >> "$RES/prepare.log" 2>&1; }

prep 1.5B  # the random model and the problems, built once before the lanes read them
M=/tmp/bench/qwen2.5-1.5B-random
D=/tmp/bench/problems.jsonl
CODER=config/qwen_coder_gsm8k.yaml

learning() {  # learning GPU [SKIP_BASE]: the before/after run (SKIP_BASE=1: base_eval runs elsewhere)
  job learn "$1" env OUT="$RES/learn" SKIP_BASE="${2:-0}" TRAIN_MINUTES="$TRAIN_MINUTES" bash bench/learning_run.sh "$CODER"
}
base_eval() {  # the same evaluation command learning_run.sh runs first, into the folder it reads it from
  local dir
  dir="$(python3 -c "import sys; from train.config import load_config; print(load_config(sys.argv[1]).training.output_dir)" "$CODER")-base"
  job learn_base "$1" python3 step3_GRPO/evaluate.py --config "$CODER" --model base --output-dir "$dir"
}
eval_random() {
  job eval_random "$1" python3 step3_GRPO/evaluate.py --model "$M" --output-dir "$RES/eval_random" \
    "model.name_or_path=$M" "data.path=$D" data.source_column=source data.eval_holdout=5000 \
    evaluation.max_tokens=1024 logging.wandb=off
}
TRAIN_MINUTES="${TRAIN_MINUTES:-8}"
LEARN_END=$((SECONDS + TRAIN_MINUTES * 60 + 270))  # + engine start, save and the final evaluation
fits() { (( SECONDS + $1 < LEARN_END )); }         # fits SECONDS: a lane's optional job ends before the learning run

if [[ $NG -ge 4 ]]; then
  # what sessions 2 and 3 (docs/benchmarks.md) left open. Phase 1: the learning run on GPU 0 (its base evaluation
  # on GPU 1); beside it what needs 1-2 GPUs. Phase 2: the 4-GPU runs.
  learning 0 1 &
  L0=$!
  (
    base_eval 1
    bench b2_ours 1 --shape B2 --steps 3 --variants ours "${B1_ARGS[@]}"  # do the defaults fit 80 GB at 1024 tokens?
    ! fits 200 || bench b1_mb16 1 --shape B1 --steps 4 --variants mb16 "${B1_ARGS[@]}" training.gradient_checkpointing=false
  ) &
  L1=$!
  (
    CUDA_VISIBLE_DEVICES=2 prep 3B
    CUDA_VISIBLE_DEVICES=2 prep 7B  # for phase 2
    bench zero2_2 2,3 --shape B1 --steps 4 --gpus 2 --variants $FAST \
      --accelerate-config config/accelerate/zero2.yaml "${B1_ARGS[@]}"
    # DDP's memory per GPU does not depend on the number of GPUs: the 3B test runs here, on 2
    bench ddp_3b 2,3 --shape B2 --gpus 2 --model 3B --batch global --variants ours --steps 2 "${B1_ARGS[@]}"
    ! fits 420 || eval_random 2
  ) &
  L23=$!
  wait $L0 $L1 $L23
  bench fsdp2_4 0,1,2,3 --shape B1 --steps 4 --gpus 4 --variants $FAST \
    --accelerate-config config/accelerate/fsdp2.yaml "${B1_ARGS[@]}"
  bench server4 0,1,2,3 --shape B1 --steps 4 --gpus 4 --variants server "${B1_ARGS[@]}" \
    vllm.enable_sleep_mode=false training.gradient_checkpointing=false
  bench fsdp2_7b 0,1,2,3 --shape B2 --gpus 4 --model 7B --batch global --variants ours --steps 2 \
    --accelerate-config config/accelerate/fsdp2.yaml "${B1_ARGS[@]}"
else  # two GPUs (or one): the learning run beside the 1-GPU table, then the 2-GPU runs
  learning 0 &  # its base evaluation first, on the same GPU
  L0=$!
  if [[ $NG -ge 2 ]]; then
    ( bench b1_1gpu 1 --shape B1 --steps 6 --variants ours,sleep_off,ckpt_off,trl_default "${B1_ARGS[@]}"
      eval_random 1 ) &
    wait
    bench ddp2 0,1 --shape B1 --steps 6 --gpus 2 --variants $FAST "${B1_ARGS[@]}"
    bench fsdp2_2 0,1 --shape B1 --steps 6 --gpus 2 --variants $FAST --accelerate-config config/accelerate/fsdp2.yaml \
      "${B1_ARGS[@]}"
    bench b2 0 --shape B2 --variants $FAST --steps 4 "${B1_ARGS[@]}"
  fi
  wait
fi
echo "$(date +%T) all done" >> "$RES/progress"
