"""What the launcher needs from the config before it starts anything: `MODE SERVER_GPUS PORT TRAIN_GPUS MODEL`.

Run by launch_trl.sh; a configuration mistake ends here with one line and exit code 2, before any GPU
process starts, the batch's fit to the launch included (rollouts over the training processes, vLLM's
tensor-parallel size): otherwise every rank would fail on its own, under accelerate's traceback.
TRAIN_GPUS is how many of this machine's GPUs train (the rest serve); MODEL is the folder vLLM serves (a GGUF
is converted once, as the trainer would).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.config import ConfigError, load_config, plan_batch, resolve_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/grpo_config.yaml")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs per machine, the vLLM server's included")
    ap.add_argument("--machines", type=int, default=1)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(resolve_path(args.config), args.overrides)
        model = "-"
        server = cfg.vllm.use_vllm and cfg.vllm.mode == "server"
        train_gpus = args.gpus - (cfg.vllm.server_gpus if server else 0)
        if train_gpus < 1:
            raise ConfigError(f"vllm.server_gpus={cfg.vllm.server_gpus} leaves none of the {args.gpus} GPUs to train "
                              "on; launch with more GPUs or lower vllm.server_gpus")
        plan_batch(cfg, train_gpus * args.machines)
        if server:
            from train.models import check_model_source, materialize

            check_model_source(cfg.model)
            model = materialize(cfg.model)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mode = cfg.vllm.mode if cfg.vllm.use_vllm else "none"
    print(mode, cfg.vllm.server_gpus, cfg.vllm.server_port, train_gpus, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
