"""The reward functions a run trains on: the config's `rewards:` names, resolved to functions and checked before
any model is loaded.

`answer` and `format` are the r1_zero rewards of `train.rewards_math`; any other name is `module:function`, imported
here. Each must take the keyword arguments TRL's GRPOTrainer calls a reward function with (`prompts`, `completions`,
`completion_ids`, the dataset's columns and TRL's `trainer_state`, `log_extra`, `log_metric`), which
`(completions, **kwargs)` does. A name that does not import, or a function of another shape, stops the run with one
line (exit code 2).

>>> from train.config import Config
>>> [f.__name__ for f in reward_functions(Config())]
['answer_reward', 'format_reward']
"""

from __future__ import annotations

import importlib
import inspect

from train.config import Config, ConfigError
from train.config import _first_line as first_line

BUILT_IN = {"answer": "answer_reward", "format": "format_reward"}  # name -> function of train.rewards_math
# what TRL 1.16 passes every reward function (GRPOTrainer._calculate_rewards), the dataset's columns included
TRL_KWARGS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")
DATASET_COLUMNS = ("solution", "source")  # train.data.TRL_COLUMNS less `prompt`, which TRL passes as `prompts`


def reward_functions(cfg: Config) -> list:
    """The functions of `cfg.rewards`, in its order (their weights are `list(cfg.rewards.values())`)."""
    return [resolve(name) for name in cfg.rewards]


def resolve(name: str):
    """One reward name -> its function; ConfigError naming the key and the fix."""
    key = f"rewards.{name}"
    if name in BUILT_IN:
        from train import rewards_math

        return getattr(rewards_math, BUILT_IN[name])  # looked up now: a test's stand-in is seen
    module, sep, attr = name.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"'{key}' is not a reward: use a built-in one ({', '.join(BUILT_IN)}) or "
                          "module:function (e.g. my_rewards:length_penalty)")
    try:
        found = importlib.import_module(module)
    except Exception as e:  # the user's module may fail in any way while it is imported
        raise ConfigError(f"'{key}': cannot import module '{module}' ({type(e).__name__}: {first_line(e)}); is it "
                          "installed, or on PYTHONPATH?") from None
    fn = getattr(found, attr, None)
    if fn is None:
        raise ConfigError(f"'{key}': module '{module}' ({found.__file__}) has no '{attr}'")
    check_signature(fn, key)
    return fn


def check_signature(fn, key: str) -> None:
    """`fn` must accept what TRL calls a reward function with."""
    if not callable(fn):
        raise ConfigError(f"'{key}' is a {type(fn).__name__}, not a function")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: TRL will tell
    try:
        sig.bind(**dict.fromkeys(TRL_KWARGS + DATASET_COLUMNS))
    except TypeError as e:
        raise ConfigError(f"'{key}' cannot take the arguments TRL passes a reward function ({e}); write it as "
                          "def f(completions, **kwargs) -> list[float | None], one reward per completion") from None

