"""rewards: the built-in r1_zero rewards and any module:function with TRL's signature, with weights; a reward that
does not import or cannot take TRL's arguments stops the run with one line before any model is loaded."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from step3_GRPO.train_trl import grpo_args, main
from tests.test_train import config
from train.config import load_config, plan_batch
from train.reward_funcs import reward_functions
from train.rewards_math import answer_reward, format_reward

MODULE = '''
def length(completions, **kwargs):
    """A reward that varies on a random model: the completion's length."""
    return [float(len(c)) for c in completions]

def two_args(a, b):
    return [0.0]

not_a_function = 3
'''


@pytest.fixture
def my_rewards(tmp_path, monkeypatch) -> Path:
    """A user's reward module, importable as `my_rewards` (as if installed, or on PYTHONPATH)."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "my_rewards.py").write_text(textwrap.dedent(MODULE))
    (folder / "broken_rewards.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_the_default_is_the_reference_recipe():
    cfg = load_config("config/quickstart.yaml")
    assert reward_functions(cfg) == [answer_reward, format_reward]
    assert grpo_args(cfg, plan_batch(cfg, 1), on_gpu=False, eval_rows=0).reward_weights == [1.0, 0.0]


def test_a_command_line_weight_changes_one_reward_and_keeps_the_others(my_rewards):
    cfg = load_config(None, ["rewards.format=0.1", "rewards.my_rewards:length=0.5"])
    assert cfg.rewards == {"answer": 1.0, "format": 0.1, "my_rewards:length": 0.5}
    assert [f.__name__ for f in reward_functions(cfg)] == ["answer_reward", "format_reward", "length"]
    assert grpo_args(cfg, plan_batch(cfg, 1), on_gpu=False, eval_rows=0).reward_weights == [1.0, 0.1, 0.5]


def test_a_users_reward_trains_the_policy(tmp_path, tiny_model, tiny_data, my_rewards):
    """The rewards: section replaces the default list: the user's reward alone trains, and TRL logs it."""
    from tests.test_train import weights

    cfg = config(tmp_path, tiny_model, tiny_data, training={"max_steps": 1}, evaluation={"enabled": False},
                 checkpointing={"save_steps": 1})
    text = cfg.read_text() + "rewards:\n  my_rewards:length: 1.0\n"
    cfg.write_text(text)
    assert main(["--config", str(cfg)]) == 0
    history = json.loads((tmp_path / "out/final_model/trainer_state.json").read_text())["log_history"]
    assert any(h.get("rewards/length/mean", 0) > 0 for h in history)
    assert not any("rewards/answer_reward/mean" in h for h in history)
    before, after = weights(tiny_model), weights(tmp_path / "out/final_model")
    assert any(not (before[k] == after[k]).all() for k in before)


# (override, what the one-line error says)
BAD_REWARDS = [
    ("rewards.answr=1", "'rewards.answr' is not a reward: use a built-in one (answer, format) or module:function"),
    ("rewards.no_such_module:f=1", "'rewards.no_such_module:f': cannot import module 'no_such_module' "
                                   "(ModuleNotFoundError: No module named 'no_such_module')"),
    ("rewards.broken_rewards:f=1", "cannot import module 'broken_rewards' (RuntimeError: boom at import)"),
    ("rewards.my_rewards:missing=1", "'rewards.my_rewards:missing': module 'my_rewards' ("),
    ("rewards.my_rewards:two_args=1", "'rewards.my_rewards:two_args' cannot take the arguments TRL passes a reward "
                                      "function"),
    ("rewards.my_rewards:not_a_function=1", "'rewards.my_rewards:not_a_function' is a int, not a function"),
    ("rewards.answer=0", "every reward has weight 0, so nothing would train"),
    ("rewards.format=high", "'rewards.format' must be a weight (a finite number), got 'high'"),
]


@pytest.mark.parametrize("override,message", BAD_REWARDS, ids=[o for o, _ in BAD_REWARDS])
def test_a_bad_reward_stops_before_the_model_loads(tmp_path, tiny_model, tiny_data, my_rewards, capsys, monkeypatch,
                                                  override, message):
    import train.models

    monkeypatch.setattr(train.models, "load_policy", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["--config", str(config(tmp_path, tiny_model, tiny_data)), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err


def test_a_rewards_section_with_no_reward_is_refused(tmp_path):
    from train.config import ConfigError

    (tmp_path / "c.yaml").write_text("rewards: {}\n")
    with pytest.raises(ConfigError, match="'rewards' lists no reward function; e.g. rewards: {answer: 1.0}"):
        load_config(tmp_path / "c.yaml")


def test_the_launcher_checks_the_rewards_before_it_starts_a_process(my_rewards, capsys):
    from step3_GRPO.launch_plan import main as launch

    run = ["2", "--config", "config/quickstart.yaml", "--dry-run"]
    assert launch([*run, "rewards.my_rewards:two_args=1"]) == 2
    assert "cannot take the arguments TRL passes" in capsys.readouterr().err
    assert launch([*run, "rewards.my_rewards:length=1"]) == 0
