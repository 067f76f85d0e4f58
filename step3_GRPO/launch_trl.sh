#!/usr/bin/env bash
# Launch GRPO training (then the final evaluation) on NUM_GPUS GPUs of this machine.
#
# usage: step3_GRPO/launch_trl.sh [NUM_GPUS] [--config FILE] [--accelerate-config FILE] [--dry-run]
#                                 [--num-machines N --machine-rank R --main-process-ip IP] [section.key=value ...]
#   ./launch_trl.sh 2 training.max_steps=50      two GPUs, DDP, one config key overridden
#   ./launch_trl.sh --help                       every option and env knob
# launch_plan.py checks the config against the launch, builds the command(s) as argument lists and runs them
# (the trainer replaces it; in server mode it also starts, waits for and stops the vLLM server). This file
# only picks the interpreter: PYTHON (default python3). The exit status is the trainer's.
set -euo pipefail
exec "${PYTHON:-python3}" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/launch_plan.py" "$@"
