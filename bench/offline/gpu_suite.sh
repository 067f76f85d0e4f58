#!/usr/bin/env bash
# A named suite of GPU measurements, the tables of docs/benchmarks.md, as jobs run one after another on this
# machine, each alone on it (jobs side by side share the host's CPUs and slow each other's generation).
# After `source bench/offline/gpu_setup.sh` (docs/offline-gpu.md):
#   bash bench/offline/gpu_suite.sh SUITE
# SUITE (GPUs it needs):
#   step-time (1)  B1: every step-time lever at once (one step profiled), TRL's defaults, the YAML defaults
#   levers    (1)  B1 with one lever at a time from the YAML defaults: no importance-sampling correction (and no vLLM
#                  log-probs), the engine's share sized from the batch, no sleep mode, no checkpointing, micro-batch 16
#   b2        (1)  B2 (the recipe's batch): every lever at once, TRL's defaults, the YAML defaults
#   lora      (1)  B2 on the 7B shape with LoRA (float32 and bfloat16 base weights), 2 steps
#   wall      (1)  launch to answer: 3 steps of B1's batch on the random 1.5B model, saved, evaluated on 500
#                  held-out problems on the trainer's engine and on an engine of its own
#   scaling   (2)  B1 per GPU: the 1-GPU baseline on GPU 0 and on GPU 1; DDP, FSDP2, ZeRO-2, ZeRO-3 and server
#                  mode on 2 GPUs, and on 4 where there are 4; two machines rehearsed on this one (--nodes 2)
#   largest   (2)  the recipe's batch (B2) with 3B and 7B on each engine that holds them; with 4 GPUs, FSDP2 7B
#                  and 7B in server mode too
#   eval      (1)  the final evaluation's speed: 5,000 problems x 1,024 tokens of a random 1.5B model
# Results go to $RES (default /tmp/gpu-suite): one JSON and one log per job, `progress` with each job's start,
# end, exit status and seconds, DONE when the suite ends. A job takes 3-5 minutes. To let a suite outlive the
# shell that starts it, start it detached and collect what has finished with gpu_collect.sh:
#   setsid nohup bash bench/offline/gpu_suite.sh scaling > /tmp/gpu-suite.log 2>&1 < /dev/null &
#   bash bench/offline/gpu_collect.sh 600
set -uo pipefail
cd "$(dirname "$0")/../.."
SUITES="step-time levers b2 lora wall scaling largest eval"
SUITE="${1:-}"
if [[ -z $SUITE || " $SUITES " != *" $SUITE "* ]]; then
  echo "usage: bash bench/offline/gpu_suite.sh SUITE, one of: $SUITES" >&2
  exit 2
fi
RES="${RES:-/tmp/gpu-suite}"
WORK="${WORK:-/tmp/gpu-bench}"  # the random models and problems, built once and shared by the jobs
mkdir -p "$RES"
trap 'touch "$RES/DONE"' EXIT  # also when the suite stops early: gpu_collect.sh stops waiting
NG=$(nvidia-smi -L | wc -l)
# scaling and largest: vLLM's 24 GiB of an H200, as 0.3 gives on an 80 GB H100
H100=(-- vllm.gpu_memory_utilization=0.17)
echo "$(date +%T) suite $SUITE on $NG GPU(s) at $(git rev-parse --short HEAD 2>/dev/null)" >> "$RES/progress"

job() {  # job NAME GPUS COMMAND...: one measurement on the given GPUs, with a vLLM compile cache per GPU set
  local name=$1 gpus=$2 t=$SECONDS rc
  shift 2
  echo "$(date +%T) start $name on GPU $gpus" >> "$RES/progress"
  CUDA_VISIBLE_DEVICES=$gpus VLLM_CACHE_ROOT=/tmp/vllm-cache-${gpus//,/_} "$@" > "$RES/$name.log" 2>&1
  rc=$?  # the job's status, read before the next command replaces it
  echo "$(date +%T) end $name rc=$rc $((SECONDS - t)) s" >> "$RES/progress"
}
bench() {  # bench NAME GPUS GRPO_STEP_ARGS...: bench/grpo_step.py, its training outputs deleted when it ends
  local name=$1 gpus=$2
  shift 2
  job "$name" "$gpus" python3 bench/grpo_step.py --work "$WORK" --scratch "/tmp/bench-$name" \
    --out "$RES/$name.json" "$@"
  cp "/tmp/bench-$name"/*.profile.txt "$RES/" 2>/dev/null  # --profile-step's tables
  rm -rf "/tmp/bench-$name"  # checkpoints of random weights, GBs each, on a disk every job shares
}
large() {  # large NAME GPUS N MODEL VARIANT [GRPO_STEP_ARGS...]: the recipe's batch (B2) over N GPUs, 2 steps
  local name=$1 gpus=$2 n=$3 model=$4 variant=$5
  shift 5
  bench "$name" "$gpus" --shape B2 --gpus "$n" --model "$model" --batch global --variants "$variant" --steps 2 \
    "$@" "${H100[@]}"
}
prepare() { job "prepare_$1" 0 python3 bench/grpo_step.py --work "$WORK" --prepare --model "$1"; }
need() {
  if ((NG < $1)); then
    echo "$(date +%T) suite $SUITE needs $1 GPUs, this machine has $NG" | tee -a "$RES/progress" >&2
    exit 2
  fi
}

step_time() {  # the defaults size vLLM's share from the batch: on an H200 as on an H100
  need 1
  prepare 1.5B
  bench b1_defaults_vs_trl 0 --shape B1 --steps 6 --profile-step 3 --variants all_levers,trl_default,ours
}

levers() {
  need 1
  prepare 1.5B
  bench b1_levers 0 --shape B1 --steps 5 --variants correction_off,share_sized,sleep_off,ckpt_off,mb16
}

b2() {
  need 1
  prepare 1.5B
  bench b2_defaults_vs_trl 0 --shape B2 --steps 3 --variants all_levers,trl_default,ours
}

lora() {
  need 1
  prepare 7B
  bench b2_lora_7b 0 --shape B2 --model 7B --steps 2 --variants lora,lora_bf16
}

wall() {
  need 1
  prepare 1.5B
  job wall 0 python3 bench/wall_time.py --work "$WORK" --variants ours,own_engine --out "$RES/wall.json" -- \
    training.max_steps=3 training.prompts_per_step=8 grpo.max_completion_length=512 evaluation.max_tokens=512
  rm -rf "$WORK"/wall-*/
}

scaling() {
  need 2
  prepare 1.5B
  local b1=(--shape B1 --steps 4) n gpus engine
  for gpus in 0 1; do  # the baseline on two GPUs: their difference is part of the noise
    bench "one_gpu_$gpus" "$gpus" "${b1[@]}" --gpus 1 --variants sleep_ckpt_off "${H100[@]}"
  done
  for n in 2 4; do
    ((NG >= n)) || continue
    gpus=$(seq -s, 0 $((n - 1)))
    bench "ddp_$n" "$gpus" "${b1[@]}" --gpus "$n" --variants sleep_ckpt_off "${H100[@]}"
    for engine in fsdp2 zero2 zero3; do
      bench "${engine}_$n" "$gpus" "${b1[@]}" --gpus "$n" --variants sleep_ckpt_off \
        --accelerate-config "config/accelerate/$engine.yaml" "${H100[@]}"
    done
    bench "server_$n" "$gpus" "${b1[@]}" --gpus "$n" --variants server "${H100[@]}" \
      vllm.enable_sleep_mode=false training.gradient_checkpointing=false
  done
  bench nodes_2 0,1 --shape B1 --steps 3 --gpus 2 --nodes 2 --variants sleep_ckpt_off "${H100[@]}"
}

largest() {
  need 2
  prepare 3B
  prepare 7B
  large colocate_3b_1 0 1 3B ours
  large ddp_3b_2 0,1 2 3B ours
  large zero2_3b_2 0,1 2 3B ours --accelerate-config config/accelerate/zero2.yaml
  large server_3b_2 0,1 2 3B server
  large zero2_7b_2 0,1 2 7B ours --accelerate-config config/accelerate/zero2.yaml
  large zero3_7b_2 0,1 2 7B ours --accelerate-config config/accelerate/zero3.yaml
  if ((NG >= 4)); then
    large fsdp2_7b_4 0,1,2,3 4 7B ours --accelerate-config config/accelerate/fsdp2.yaml
    # 3 FSDP2 trainers + 1 server: 24 prompts x 8 = 64 rollouts per trainer, as B2 gives each of 4 GPUs
    large server_7b_4 0,1,2,3 4 7B server --prompts 24 --accelerate-config config/accelerate/fsdp2.yaml
  fi
}

eval_speed() {
  need 1
  prepare 1.5B
  local model="$WORK/qwen2.5-1.5B-random"
  job eval_random 0 python3 step3_GRPO/evaluate.py --model "$model" --output-dir "$RES/eval_random" \
    "model.name_or_path=$model" "data.path=$WORK/problems.jsonl" data.source_column=source \
    data.eval_holdout=5000 evaluation.max_tokens=1024 logging.wandb=off
}

case $SUITE in
  step-time) step_time ;;
  levers) levers ;;
  b2) b2 ;;
  lora) lora ;;
  wall) wall ;;
  scaling) scaling ;;
  largest) largest ;;
  eval) eval_speed ;;
esac
echo "$(date +%T) suite $SUITE done" >> "$RES/progress"
