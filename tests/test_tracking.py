"""`train.tracking`: which wandb mode a run uses, and the environment the trainer's wandb callback then reads."""

from __future__ import annotations

import os

import pytest

from train.config import LoggingConfig
from train.tracking import setup_wandb_env, wandb_mode

WANDB_VARS = ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR", "WANDB_SILENT")


@pytest.fixture
def env(monkeypatch):
    """A clean wandb environment, restored afterwards even for the variables the code sets (a bare delenv of an
    unset variable records nothing to restore); `env(NAME=value)` sets what the user had set before the run."""
    for name in WANDB_VARS:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return lambda **values: [monkeypatch.setenv(k, v) for k, v in values.items()]


@pytest.mark.parametrize(("wandb", "api_key", "mode"), [
    ("auto", "k3y", "online"),  # an account: uploads as it goes
    ("auto", None, "offline"),  # none: records locally, `wandb sync` later
    ("auto", "", "offline"),  # an empty key is no key
    ("online", None, "online"),  # as given (wandb itself then asks for a login)
    ("offline", "k3y", "offline"),  # as given, even with an account
    ("off", "k3y", None),
])
def test_wandb_mode(env, wandb, api_key, mode):
    if api_key is not None:
        env(WANDB_API_KEY=api_key)
    assert wandb_mode(LoggingConfig(wandb=wandb)) == mode


@pytest.mark.parametrize(("wandb", "user", "expected"), [
    ("offline", {}, {"WANDB_MODE": "offline", "WANDB_PROJECT": "math", "WANDB_DIR": "OUT", "WANDB_SILENT": "true"}),
    # the user's project and folder win; the mode is the config's, whatever the environment said
    ("online", {"WANDB_PROJECT": "mine", "WANDB_DIR": "/runs", "WANDB_MODE": "offline"},
     {"WANDB_MODE": "online", "WANDB_PROJECT": "mine", "WANDB_DIR": "/runs", "WANDB_SILENT": "true"}),
    ("off", {}, {}),  # off sets nothing
    ("off", {"WANDB_PROJECT": "mine"}, {"WANDB_PROJECT": "mine"}),
], ids=["offline", "user-set", "off", "off-user-set"])
def test_setup_wandb_env(env, tmp_path, wandb, user, expected):
    env(**user)
    mode = setup_wandb_env(LoggingConfig(wandb=wandb, project="math"), tmp_path)
    assert mode == wandb_mode(LoggingConfig(wandb=wandb))
    got = {k: os.environ[k] for k in WANDB_VARS if k in os.environ}
    assert got == {k: str(tmp_path) if v == "OUT" else v for k, v in expected.items()}
