#!/usr/bin/env bash
# One GPU session's measurements, as jobs on the GPUs of one machine (4 GPUs: the runs sessions 3-6 left open,
# then 1-GPU lanes side by side; 2 GPUs: the 1-GPU baseline's noise, on each GPU in turn), so that 30 minutes
# of device time hold them all. Results go to $RES (default /tmp/session): one JSON and one log per job, `progress` with each
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
# the launcher's refusal of a DeepSpeed config without DeepSpeed (one line, exit 2, before any process starts),
# while the GPU machine still has none: the set-up below installs it
PYTHON=/opt/torch/.venv/bin/python3 step3_GRPO/launch_trl.sh 2 --accelerate-config config/accelerate/zero2.yaml \
  > "$RES/checks.log" 2>&1
echo "rc=$?" >> "$RES/checks.log"
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
  rm -rf "/tmp/bench-$name"  # its outputs: the disk is shared by every run of the session (session 4 filled it)
}
large() {  # large NAME MODEL VARIANT [GRPO_STEP_ARGS...]: the recipe's batch (B2) over 4 GPUs, 2 steps
  local name=$1 model=$2 variant=$3
  shift 3
  bench "$name" 0,1,2,3 --shape B2 --gpus 4 --model "$model" --batch global --variants "$variant" --steps 2 "$@" \
    "${B1_ARGS[@]}"
}
prep() { python3 bench/grpo_step.py --work /tmp/bench --prepare --model "$1" >> "$RES/prepare.log" 2>&1; }

prep 1.5B  # the random model and the problems, built once before the lanes read them
M=/tmp/bench/qwen2.5-1.5B-random
D=/tmp/bench/problems.jsonl

eval_random() {
  job eval_random "$1" python3 step3_GRPO/evaluate.py --model "$M" --output-dir "$RES/eval_random" \
    "model.name_or_path=$M" "data.path=$D" data.source_column=source data.eval_holdout=5000 \
    evaluation.max_tokens=1024 logging.wandb=off
}

if [[ $NG -ge 4 ]]; then
  # what sessions 3-6 (docs/benchmarks.md) left open, most needed first: the largest model in server mode,
  # ZeRO-3 and ZeRO-2 7B on 4 GPUs, DDP-3B on 4 GPUs; then 1-GPU lanes side by side.
  prep 3B
  prep 7B
  # 3 trainers (FSDP2) + 1 server: 24 prompts x 8 = 64 rollouts per trainer, as B2 gives each of 4 GPUs
  large server_7b 7B server --prompts 24 --accelerate-config config/accelerate/fsdp2.yaml
  large zero3_7b 7B ours --accelerate-config config/accelerate/zero3.yaml
  large zero2_7b 7B ours --accelerate-config config/accelerate/zero2.yaml
  large ddp_3b_4 3B ours
  eval_random 0 &  # alone on its GPU, warm compile cache from nothing else: the 3-minute target
  bench b2_mb16 1 --shape B2 --steps 3 --variants mb16 "${B1_ARGS[@]}" &
  bench b2_ckpt_off 2 --shape B2 --steps 3 --variants ckpt_off "${B1_ARGS[@]}" &  # with sleep on: fits 80 GB?
  wait
else  # the 2-GPU kind: sessions 4-6 ran what it can hold (docs/benchmarks.md); left is the 1-GPU baseline's noise:
  # GPU 0 was 17-23% slower than GPU 1 in sessions 5-6 at the same clock, but it also ran first both times,
  # so alternate the order to tell the GPU (its host side) from the run
  for gpus in 1 0 1 0; do
    bench "b1_gpu${gpus}_$SECONDS" "$gpus" --shape B1 --steps 4 --gpus 1 --variants "$FAST" "${B1_ARGS[@]}"
  done
fi
echo "$(date +%T) all done" >> "$RES/progress"
