#!/usr/bin/env bash
# Thin wrapper: ./launch_trl.sh [NUM_GPUS] [--config FILE] [overrides...]  (see step3_GRPO/launch_trl.sh)
set -euo pipefail
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/step3_GRPO/launch_trl.sh" "$@"
