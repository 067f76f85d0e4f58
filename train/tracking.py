"""Experiment tracking: which trackers a run reports to and in which wandb mode, decided in one place."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from train.config import ConfigError, LoggingConfig

TENSORBOARD_DIR = "tensorboard"  # in checkpointing.output_dir: the training's and the final evaluation's event files


def trackers(cfg: LoggingConfig) -> list[str]:
    """The transformers integrations the run reports to: `report_to`, less wandb when `logging.wandb` is off.

    >>> trackers(LoggingConfig(report_to=["wandb", "tensorboard"], wandb="off"))
    ['tensorboard']
    >>> trackers(LoggingConfig(report_to=["none"]))
    []
    """
    return [t for t in cfg.report_to if t != "none" and not (t == "wandb" and cfg.wandb == "off")]


def check_trackers(cfg: LoggingConfig) -> None:
    """Every name in report_to is an integration transformers has, installed here; `none` stands alone."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    if "none" in cfg.report_to and len(cfg.report_to) > 1:
        raise ConfigError(f"'logging.report_to' is {cfg.report_to}: 'none' means no tracker; list trackers or none")
    installed = get_available_reporting_integrations()
    for name in trackers(cfg):
        if name not in INTEGRATION_TO_CALLBACK:
            raise ConfigError(f"'logging.report_to' names {name!r}, which transformers does not know (known: "
                              f"{', '.join(INTEGRATION_TO_CALLBACK)}, or none)")
        if name not in installed:
            package = {"comet_ml": "comet-ml", "azure_ml": "azureml-core"}.get(name, name)
            raise ConfigError(f"'logging.report_to' names {name}, which is not installed: pip install {package}, or "
                              "leave it out of logging.report_to")


def tracking_kwargs(cfg: LoggingConfig) -> dict:
    """TRL's tracking arguments: the trackers, the run's name and (trackio's) project."""
    return {"report_to": trackers(cfg) or "none", "run_name": cfg.run_name, "project": cfg.project}


def wandb_mode(cfg: LoggingConfig) -> str | None:
    """`online`, `offline` or None (wandb not used). `auto` is online only when an API key is configured, so a run on
    a machine without an account still records everything locally (`wandb sync` uploads it later).

    >>> wandb_mode(LoggingConfig(wandb="off")) is None, wandb_mode(LoggingConfig(report_to=["tensorboard"])) is None
    (True, True)
    """
    if "wandb" not in trackers(cfg):
        return None
    if cfg.wandb == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return cfg.wandb


def setup_tracking_env(cfg: LoggingConfig, out_dir) -> list[str]:
    """Set the environment the trainer's tracker callbacks and the evaluation read; return the trackers."""
    setup_wandb_env(cfg, out_dir)
    if "tensorboard" in trackers(cfg):  # one folder for the run, so the evaluation's scalars join its curves
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(Path(out_dir) / TENSORBOARD_DIR))
    return trackers(cfg)


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
