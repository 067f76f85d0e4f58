"""logging.report_to: the trackers TRL reports to, checked before the run starts, and the final evaluation logged
to the same ones. tensorboard and trackio are not installed in the test environment: their writers are stand-ins
here that record what they are given (the real packages' APIs are the ones the stand-ins copy)."""

from __future__ import annotations

import json
import sys
import types

import pytest

from step3_GRPO.train_trl import grpo_args, main
from tests.test_train import config, varied_reward  # noqa: F401 (varied_reward is a fixture)
from train.config import load_config, plan_batch
from train.summary import summarize


@pytest.mark.parametrize("overrides,expected", [
    ([], ["wandb"]),  # the default, as before: wandb (offline without an API key)
    (["logging.report_to=tensorboard"], ["tensorboard"]),  # one name
    (["logging.report_to=[wandb,tensorboard,trackio]"], ["wandb", "tensorboard", "trackio"]),  # several
    (["logging.report_to=none"], []),  # nowhere
    (["logging.report_to=[wandb,tensorboard]", "logging.wandb=off"], ["tensorboard"]),  # wandb: off wins
])
def test_report_to_reaches_trl(overrides, expected):
    cfg = load_config(None, ["logging.project=math", "logging.run_name=r1", *overrides])
    args = grpo_args(cfg, plan_batch(cfg, 1), on_gpu=False, eval_rows=0)
    assert (args.report_to, args.run_name, args.project) == (expected, "r1", "math")


@pytest.mark.parametrize("override,message", [
    ("logging.report_to=wandbb", "'logging.report_to' names 'wandbb', which transformers does not know"),
    ("logging.report_to=[none,wandb]", "'logging.report_to' is ['none', 'wandb']: 'none' means no tracker"),
    ("logging.report_to=tensorboard", "'logging.report_to' names tensorboard, which is not installed: pip install "
                                      "tensorboard, or leave it out of logging.report_to"),
    ("trl.report_to=tensorboard", "'trl.report_to' is set by the project's own keys"),
])
def test_a_tracker_that_cannot_be_used_stops_before_the_model_loads(tmp_path, tiny_model, tiny_data, capsys,
                                                                   monkeypatch, override, message):
    from transformers.integrations import integration_utils

    import train.models

    monkeypatch.setattr(integration_utils, "is_tensorboard_available", lambda: False)  # as on a bare install
    monkeypatch.setattr(train.models, "load_policy", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["--config", str(config(tmp_path, tiny_model, tiny_data)), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err


class FakeWriter:
    """torch.utils.tensorboard.SummaryWriter's calls, recorded per log folder."""

    logs: dict[str, list] = {}

    def __init__(self, log_dir=None, **kw):
        self.log_dir = str(log_dir)
        FakeWriter.logs.setdefault(self.log_dir, [])

    def add_scalar(self, key, value, step=None):
        FakeWriter.logs[self.log_dir].append((key, value, step))

    def add_text(self, key, text, step=None):
        FakeWriter.logs[self.log_dir].append((key, text, step))

    def flush(self):
        pass

    def close(self):
        pass


@pytest.fixture
def tensorboard(monkeypatch) -> dict[str, list]:
    """transformers' TensorBoardCallback and the evaluation both write through FakeWriter."""
    from transformers.integrations import integration_utils

    FakeWriter.logs = {}
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    monkeypatch.setattr(integration_utils, "is_tensorboard_available", lambda: True)
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", "")  # unset, and unset again afterwards (the run sets it)
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR")
    return FakeWriter.logs


def test_training_and_final_evaluation_log_to_tensorboard_in_one_folder(tmp_path, tiny_model, tiny_data, tensorboard,
                                                                       varied_reward):  # noqa: F811
    cfg = config(tmp_path, tiny_model, tiny_data, logging={"report_to": "tensorboard"})
    assert main(["--config", str(cfg)]) == 0
    folder = str(tmp_path / "out" / "tensorboard")
    assert list(tensorboard) == [folder]
    logged = {(key, step) for key, _, step in tensorboard[folder]}
    assert {("train/loss", 1), ("train/loss", 2), ("train/reward", 2)} <= logged  # the trainer's callback
    summary = json.loads((tmp_path / "out" / "eval_summary.json").read_text())
    assert ("eval/accuracy", summary["accuracy"], 2) in tensorboard[folder]  # the final evaluation, at the last step
    assert ("eval/report", 2) in logged


def test_the_evaluation_logs_its_scalars_to_trackio(monkeypatch, tmp_path):
    from train.reporting import eval_scalars, log_trackers

    calls = []
    fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw)),
                                 log=lambda metrics, **kw: calls.append(("log", metrics)),
                                 finish=lambda: calls.append(("finish",)))
    monkeypatch.setitem(sys.modules, "trackio", fake)
    cfg = load_config(None, ["logging.report_to=trackio", "logging.run_name=r1", "logging.project=math"])
    records = [{"prompt_id": i, "source": "s", "category": c, "format_reason": None, "num_tokens": 5,
                "truncated": False} for i, c in enumerate(["correct", "wrong_answer", "correct"])]
    summary = summarize(records)
    log_trackers(cfg, summary, records, {"by_source": tmp_path / "eval_by_source.png"}, "out/final_model", step=7)
    assert [c[0] for c in calls] == ["init", "log", "finish"]
    assert calls[0][1]["project"] == "math" and calls[0][1]["name"] == "r1-eval" and calls[0][1]["group"] == "r1"
    assert calls[1][1] == eval_scalars(summary) and calls[1][1]["eval/accuracy"] == pytest.approx(2 / 3)
