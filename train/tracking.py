"""Experiment tracking: which wandb mode a run uses, decided in one place."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from train.config import LoggingConfig


def wandb_mode(cfg: LoggingConfig) -> str | None:
    """`online`, `offline` or None (off). `auto` is online only when an API key is configured, so a run on a
    machine without an account still records everything locally (`wandb sync` uploads it later).

    >>> wandb_mode(LoggingConfig(wandb="off")) is None
    True
    """
    if cfg.wandb == "off":
        return None
    if cfg.wandb == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return cfg.wandb


def setup_wandb_env(cfg: LoggingConfig, out_dir) -> str | None:
    """Set the environment the trainer's wandb callback and the evaluation read; return the mode."""
    mode = wandb_mode(cfg)
    if mode is not None:
        os.environ["WANDB_MODE"] = mode
        os.environ.setdefault("WANDB_PROJECT", cfg.project)
        os.environ.setdefault("WANDB_DIR", str(out_dir))
        os.environ.setdefault("WANDB_SILENT", "true")
    return mode


def sync_command(cfg: LoggingConfig, wandb_dir) -> str | None:
    """The command that uploads the wandb runs recorded offline under `wandb_dir` (the training's and the
    evaluation's), or None when wandb is online or off.

    >>> sync_command(LoggingConfig(wandb="offline"), "outputs/quickstart")
    'wandb sync outputs/quickstart/wandb/offline-run-*'
    >>> sync_command(LoggingConfig(wandb="off"), "outputs/quickstart") is None
    True
    """
    if wandb_mode(cfg) != "offline":
        return None
    return f"wandb sync {shlex.quote(str(Path(wandb_dir) / 'wandb'))}/offline-run-*"
