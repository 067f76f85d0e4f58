"""The trainer end to end on a tiny random model (CPU, offline): train -> checkpoint -> save -> evaluate,
resume from a checkpoint, and every bad-input case stopping with exit code 2 before a model is loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import train.evaluation
import train.rewards_math
from step3_GRPO.train_trl import main
from train.checkpoints import incomplete
from train.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path: Path, tiny_model: Path, tiny_data: Path, **sections) -> Path:
    cfg = {
        "model": {"name_or_path": str(tiny_model)},
        "data": {"path": str(tiny_data), "eval_holdout": 6, "max_prompt_tokens": 400},
        "training": {"max_steps": 2, "prompts_per_step": 2, "micro_batch_size": 4, "optim": "adamw_torch",
                     "gradient_checkpointing": False, "learning_rate": 1e-2},
        "grpo": {"group_size": 4, "max_completion_length": 12},
        "vllm": {"use_vllm": False},
        "evaluation": {"max_tokens": 12, "batch_size": 6, "use_vllm": False},
        "checkpointing": {"output_dir": str(tmp_path / "out"), "save_steps": 2},
        "logging": {"wandb": "off"},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def varied_reward(monkeypatch):
    """A random model never answers correctly, so every advantage would be 0 and nothing would move.
    Reward the completion's length instead: the groups then have spread and the policy must change."""

    def answer_reward(completions, solution, **kwargs):
        return [float(len(c)) for c in completions]

    monkeypatch.setattr(train.rewards_math, "answer_reward", answer_reward)


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_train_end_to_end(tmp_path, formatted_model, guess_data, capsys):
    """The real reward and the real stop at </answer>: a model that writes the format and guesses 1 or 2 gets
    groups with spread rewards, so the update moves it; its stopped answers count as finished, not cut."""
    cfg = config(tmp_path, formatted_model, guess_data, grpo={"max_completion_length": 24},
                 training={"learning_rate": 1e-4},  # the shared 1e-2 moves this model off its format in one step
                 evaluation={"every_steps": 2, "periodic_samples": 4, "max_tokens": 24})
    assert main(["--config", str(cfg)]) == 0
    # the run's last words: where its wall time went, stage by stage
    assert re.search(r"\[grpo\] wall time: start-up [\d.]+ s, first step [\d.]+ s, training [\d.]+ s, save [\d.]+ s, "
                     r"evaluation [\d.]+ s, total [\d.]+ s", capsys.readouterr().out)
    out = tmp_path / "out"
    before, after = weights(formatted_model), weights(out / "final_model")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "no parameter changed during training"
    assert (out / "checkpoint-2" / "optimizer.pt").is_file()
    assert yaml.safe_load((out / "resolved_config.yaml").read_text())["training"]["max_steps"] == 2
    heldout = json.loads((out / "heldout_ids.json").read_text())["ids"]
    assert len(heldout) == 6
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["total_samples"] == 6
    history = json.loads((out / "final_model" / "trainer_state.json").read_text())["log_history"]
    steps = [h for h in history if "rewards/format_reward/mean" in h]
    assert steps and all(h["rewards/format_reward/mean"] > 0 for h in steps)  # the real format reward
    assert any(h["rewards/answer_reward/mean"] > 0 for h in steps)  # the real answer reward
    assert all(h["completions/clipped_ratio"] < 1 for h in steps)  # stops at </answer> are no cuts
    assert any("eval_rewards/answer_reward/mean" in h for h in history)  # the periodic held-out evaluation
    assert summary["format_accuracy"] > 0.5  # the held-out answers are graded by the same real reward
    # README's outputs: the model with its tokenizer, the samples, the plots
    assert (out / "final_model" / "tokenizer.json").is_file() and (out / "final_model" / "config.json").is_file()
    assert len((out / "eval_samples.jsonl").read_text().splitlines()) == 6
    assert (out / "eval_by_source.png").is_file() and (out / "training_curves.png").is_file()


def test_grader_timeouts_are_logged(tmp_path, tiny_model, tiny_data, monkeypatch):
    """The real reward, fed answers that send sympy past its time limit: the trainer logs how many timed out."""
    real = train.rewards_math.answer_reward

    def hanging(completions, solution, **kwargs):
        hang = "</think> <answer>9^{9^{9^{9}}}</answer>"
        return real([hang] * len(completions), ["\\boxed{\\frac13}"] * len(completions), **kwargs)

    monkeypatch.setattr(train.rewards_math, "answer_reward", hanging)
    cfg = config(tmp_path, tiny_model, tiny_data, training={"max_steps": 1}, evaluation={"enabled": False})
    assert main(["--config", str(cfg)]) == 0
    history = json.loads((tmp_path / "out/final_model/trainer_state.json").read_text())["log_history"]
    logged = [h["rewards/grader_timeouts"] for h in history if "rewards/grader_timeouts" in h]
    assert logged and all(v > 0 for v in logged)


@pytest.fixture
def steps_trained(monkeypatch) -> list[int]:
    """The step numbers this process trains (one entry per micro-batch; resumed steps are not trained)."""
    from train.trainer import R1GRPOTrainer

    trained: list[int] = []
    step = R1GRPOTrainer.training_step

    def counted(self, *args, **kwargs):
        trained.append(self.state.global_step + 1)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(R1GRPOTrainer, "training_step", counted)
    return trained


def test_resume_continues_from_the_checkpoint(tmp_path, tiny_model, tiny_data, varied_reward, steps_trained):
    cfg = config(tmp_path, tiny_model, tiny_data, evaluation={"enabled": False})
    assert main(["--config", str(cfg)]) == 0
    # the same command with more steps continues from checkpoint-2 instead of starting over: it trains 3-4 only
    steps_trained.clear()
    assert main(["--config", str(cfg), "training.max_steps=4"]) == 0
    assert sorted(set(steps_trained)) == [3, 4]
    state = json.loads((tmp_path / "out" / "final_model" / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert state["global_step"] == 4 and steps == [1, 2, 3, 4]  # 1-2 restored from the checkpoint's history
    # and it ends where a run that was never stopped ends: weights, optimizer, scheduler, RNG and data restored
    (tmp_path / "straight").mkdir()
    straight = config(tmp_path / "straight", tiny_model, tiny_data, evaluation={"enabled": False},
                      training={"max_steps": 4})
    assert main(["--config", str(straight)]) == 0
    resumed, uninterrupted = weights(tmp_path / "out" / "final_model"), weights(tmp_path / "straight/out/final_model")
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_a_checkpoint_cut_short_or_unloadable(tmp_path, tiny_model, tiny_data, varied_reward, steps_trained, capsys):
    """A kill while checkpoint-4 was written: the same command continues from checkpoint-2 and says why. A
    checkpoint complete on disk that does not load: one line naming it and the previous good one."""
    cfg = config(tmp_path, tiny_model, tiny_data, evaluation={"enabled": False}, training={"max_steps": 4})
    assert main(["--config", str(cfg)]) == 0
    out = tmp_path / "out"
    ck2, ck4 = out / "checkpoint-2", out / "checkpoint-4"
    (ck4 / "trainer_state.json").unlink()
    data = (ck4 / "model.safetensors").read_bytes()
    (ck4 / "model.safetensors").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    steps_trained.clear()
    assert main(["--config", str(cfg)]) == 0
    log = capsys.readouterr().out
    assert f"{out}: skipping checkpoint-4: no trainer_state.json, the save was cut short" in log
    assert f"resuming from {ck2}" in log and sorted(set(steps_trained)) == [3, 4]
    assert incomplete(ck4) is None  # written again, whole

    torch.save({"not": "this optimizer's state"}, ck4 / "optimizer.pt")  # complete on disk, wrong inside
    assert main(["--config", str(cfg), "training.max_steps=6"]) == 2  # continued further: checkpoint-4 is loaded
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the model's loading bars: it failed in train()
    assert err.startswith(f"error: checkpoint {ck4} cannot be loaded (")
    assert err.endswith(f"continue from the previous complete one with checkpointing.resume={ck2}")


def test_a_run_that_crashed_before_its_first_checkpoint_runs_again(tmp_path, tiny_model, tiny_data, varied_reward,
                                                                  monkeypatch, capsys):
    from train.trainer import R1GRPOTrainer

    cfg = config(tmp_path, tiny_model, tiny_data, evaluation={"enabled": False})
    with monkeypatch.context() as m:
        m.setattr(R1GRPOTrainer, "train", lambda *a, **k: sys.exit("killed"))  # dies in its first step
        with pytest.raises(SystemExit):
            main(["--config", str(cfg)])
    out = tmp_path / "out"
    assert (out / "resolved_config.yaml").is_file() and not list(out.glob("checkpoint-*"))
    capsys.readouterr()
    assert main(["--config", str(cfg)]) == 0  # the same command: the same run, started over in its own folder
    assert "no complete checkpoint of this run yet: starting over" in capsys.readouterr().out
    assert (out / "checkpoint-2").is_dir()


def test_a_finished_run_trains_nothing_more_and_its_summary_describes_its_model(tmp_path, tiny_model, tiny_data,
                                                                                varied_reward, steps_trained, capsys):
    """The same command again trains nothing (also with max_steps lowered). Ctrl-C leaves one line naming what was
    saved and the command that goes on. A summary never sits beside another model than the one it evaluated: a
    continued run removes the old one before it saves its model (evaluation on or off); a run interrupted in its
    final evaluation finishes it alone when the command is given again."""
    from train.trainer import R1GRPOTrainer

    cfg = config(tmp_path, tiny_model, tiny_data, evaluation={"max_samples": 2})
    out = tmp_path / "out"
    assert main(["--config", str(cfg)]) == 0
    first = (out / "eval_summary.json").read_text()
    for again in ([], ["training.max_steps=1"]):  # once trained past the end, one step per rerun
        steps_trained.clear()
        capsys.readouterr()
        assert main(["--config", str(cfg), *again]) == 0
        assert steps_trained == [] and "holds a complete run: checkpoint-2 is at step 2" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (out / "eval_summary.json").read_text() == first  # up to date: not evaluated again

    from train.checkpoints import model_identity

    assert json.loads(first)["model"] == model_identity(out / "final_model") and "'step': 2" in str(json.loads(first))

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    def interrupted(*args) -> int:
        try:
            return main(["--config", str(cfg), *args])
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C came out as a traceback")

    with pytest.MonkeyPatch.context() as m:  # Ctrl-C as training resumes for steps 3-4
        m.setattr(R1GRPOTrainer, "train", interrupt)
        assert interrupted("training.max_steps=4") == 130
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    err = err.splitlines()[-1]  # after the model's loading bars
    go_on = f"python {os.path.relpath(ROOT / 'step3_GRPO/train_trl.py')} --config {cfg} training.max_steps=4"
    assert err == f"interrupted: saved {out / 'checkpoint-2'} (step 2 of 4); continue with: {go_on}"
    with pytest.MonkeyPatch.context() as m:  # Ctrl-C in the final evaluation, after steps 3-4
        m.setattr(train.evaluation, "generate", interrupt)
        assert interrupted("training.max_steps=4") == 130
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1] == (
        f"interrupted: training is done ({out / 'checkpoint-4'}); save and evaluate its final model with: {go_on}")
    assert not (out / "eval_summary.json").exists()  # the step-2 summary is gone with the step-2 model
    steps_trained.clear()
    assert main(["--config", str(cfg), "training.max_steps=4"]) == 0  # the command it gave: the evaluation alone
    assert steps_trained == [] and "running its final evaluation alone (it has none yet)" in capsys.readouterr().out
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["model"] == model_identity(out / "final_model") and summary["model"]["step"] == 4
    assert summary["model"]["digest"] != json.loads(first)["model"]["digest"]  # the trained model, not step 2's
    assert main(["--config", str(cfg), "training.max_steps=6", "evaluation.enabled=false"]) == 0
    assert not (out / "eval_summary.json").exists() and not (out / "eval_samples.jsonl").exists()


def test_a_second_run_into_the_same_folder_stops_at_once(tmp_path, tiny_model, tiny_data, capsys, monkeypatch):
    """A run is writing into the folder (here a process holding its lock): a second one stops with one line naming it
    before any model is loaded; once that process is gone (killed: its lock file stays), the folder is free."""
    import socket

    import train.models

    cfg = config(tmp_path, tiny_model, tiny_data)
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from train.checkpoints import OutputLock; lock = OutputLock(Path(sys.argv[1])); "
                               "print('locked', flush=True); time.sleep(600)", str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(train.models, "load_policy", lambda *a, **k: pytest.fail("a model was loaded"))
        assert main(["--config", str(cfg)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: checkpointing.output_dir: {out} is in use by another run (pid {holder.pid} on "
                              f"{socket.gethostname()}, started ") and "\n" not in err
    finally:
        holder.kill()
        holder.wait()
    assert (out / ".lock").is_file()  # what the killed run left
    from train.checkpoints import OutputLock

    with OutputLock(out):
        pass


def test_weights_only_checkpoints_are_not_resumed(tmp_path, tiny_model, tiny_data, capsys, monkeypatch):
    """trl.save_only_model: a checkpoint without the optimizer's and the schedule's state. Continuing from it would
    start AdamW and the schedule over (the learning rate at 0 again with warmup); refused in one line instead."""
    import train.models

    cfg = config(tmp_path, tiny_model, tiny_data, training={"max_steps": 1}, checkpointing={"save_steps": 1},
                 evaluation={"enabled": False}, trl={"save_only_model": True})
    assert main(["--config", str(cfg)]) == 0
    ckpt = tmp_path / "out" / "checkpoint-1"
    assert not (ckpt / "optimizer.pt").exists()
    monkeypatch.setattr(train.models, "load_policy", lambda *a, **k: pytest.fail("a model was loaded"))
    capsys.readouterr()
    assert main(["--config", str(cfg), "training.max_steps=2"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: checkpointing.output_dir: {ckpt} holds the weights only (trl.save_only_model), not the optimizer and "
        "learning-rate state that continuing to training.max_steps=2 needs; start over with "
        "checkpointing.resume=never checkpointing.overwrite=true, or train on from these weights as a new run: "
        f"model.name_or_path={ckpt} and another output_dir")


def test_overwrite_moves_another_run_aside(tmp_path, tiny_model, tiny_data, varied_reward, capsys):
    """checkpointing.overwrite=true: the other run is moved aside whole (checkpoint rotation cannot delete it),
    and the new run never resumes from its checkpoints."""
    cfg = config(tmp_path, tiny_model, tiny_data, evaluation={"enabled": False}, checkpointing={"save_total_limit": 1})
    assert main(["--config", str(cfg)]) == 0
    out = tmp_path / "out"
    first = weights(out / "checkpoint-2")
    capsys.readouterr()
    assert main(["--config", str(cfg), "training.learning_rate=0.02"]) == 2
    err = capsys.readouterr().err
    assert "holds another run (training.learning_rate: 0.01 there, 0.02 here)" in err
    assert main(["--config", str(cfg), "training.learning_rate=0.02", "checkpointing.overwrite=true"]) == 0
    log = capsys.readouterr().out
    (aside,) = tmp_path.glob("out.replaced-*")
    assert f"moved the run that was in {out} to {aside}" in log and "resuming" not in log
    kept = weights(aside / "checkpoint-2")
    assert all(torch.equal(first[k], kept[k]) for k in first)  # the other run's checkpoint, untouched
    assert yaml.safe_load((aside / "resolved_config.yaml").read_text())["training"]["learning_rate"] == 0.01
    assert yaml.safe_load((out / "resolved_config.yaml").read_text())["training"]["learning_rate"] == 0.02
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]


# One row per bad input: (overrides or a file edit, text the one-line error must contain).
BAD_INPUTS = [
    (["training.learnig_rate=1e-5"], "unknown key 'training.learnig_rate'"),  # mistyped key
    (["training.max_steps=ten"], "'training.max_steps' must be an integer"),  # wrong type
    (["model.name_or_path=/no/such/model"], "model.name_or_path: folder /no/such/model not found"),  # model
    (["data.path=/no/such/data.jsonl"], "data.path: /no/such/data.jsonl not found"),  # data file
    (["data.problem_column=question"], "column 'question' not in"),  # missing column
    (["training.prompts_per_step=3", "grpo.group_size=3", "training.micro_batch_size=2"],
     "not a multiple of training.micro_batch_size=2"),  # batch not divisible
    (["checkpointing.resume=/no/ckpt"], "checkpointing.resume: /no/ckpt is not a checkpoint folder"),
    (["data.prompt_template=/no/template.txt"], "data.prompt_template: /no/template.txt not found"),
    (["training.optim=adamw"], "override training.optim=adamw: 'training.optim' is 'adamw', which transformers"),
    (["evaluation.max_samples=0"], "'evaluation.max_samples' must be at least 1"),  # once crashed after training
    (["data.max_train_samples=0"], "'data.max_train_samples' must be at least 1, or null"),
    (["checkpointing.output_dir=/proc/version/out"], "checkpointing.output_dir: /proc/version/out cannot be created: "
                                                "/proc/version is a file"),
    (["checkpointing.output_dir=/proc/version"], "checkpointing.output_dir: /proc/version is a file; choose a folder"),
    # a trl: value of the wrong type once failed in torch after the model loaded, and left a run behind
    (["trl.adam_epsilon=abc"], "override trl.adam_epsilon=abc: 'trl.adam_epsilon' must be a number, got 'abc'"),
]


@pytest.mark.parametrize("overrides,message", BAD_INPUTS, ids=[m[:40] for _, m in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(tmp_path, tiny_model, tiny_data, capsys, monkeypatch, overrides, message):
    import train.models

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(train.models, "load_policy", no_model)
    cfg = config(tmp_path, tiny_model, tiny_data)
    assert main(["--config", str(cfg), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing left behind to block the corrected command


def test_the_output_dir_holding_this_runs_checkpoints_with_resume_never(tmp_path, tiny_model, tiny_data, capsys):
    cfg = config(tmp_path, tiny_model, tiny_data)
    ckpt = tmp_path / "out" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    assert main(["--config", str(cfg), "checkpointing.resume=never"]) == 2
    err = capsys.readouterr().err
    assert "holds this run's checkpoints and checkpointing.resume is never" in err
    assert "checkpointing.overwrite=true to move it aside" in err and ckpt.is_dir()  # nothing was moved


def test_a_read_only_output_dir_exits_2_with_nothing_written(tmp_path, tiny_model, tiny_data, capsys, monkeypatch):
    import errno

    import train.checkpoints

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(train.checkpoints.tempfile, "TemporaryFile", read_only)
    cfg = config(tmp_path, tiny_model, tiny_data)
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: checkpointing.output_dir: {tmp_path / 'out'} cannot be created in {tmp_path} "
                   "(Read-only file system); choose a folder you can write")
    assert not (tmp_path / "out").exists()


def test_no_room_on_the_disk_exits_2_before_the_model_loads(tmp_path, tiny_model, tiny_data, capsys, monkeypatch):
    import shutil

    import train.checkpoints
    import train.models

    monkeypatch.setattr(train.models, "load_policy", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.setattr(train.checkpoints.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 0, 10**5))
    cfg = config(tmp_path, tiny_model, tiny_data)
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: checkpointing.output_dir: {tmp_path / 'out'} has 0.1 MB free, but this run "
                          "writes up to 1 checkpoint(s) of ") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_unknown_key_from_the_command_line_exits_2(tmp_path):
    """The CLI itself, as a user runs it: an unknown key in the YAML names the key, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  max_step: 10\n")
    r = subprocess.run([sys.executable, str(ROOT / "step3_GRPO/train_trl.py"), "--config", str(bad)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert "unknown key 'training.max_step'" in r.stderr and "Traceback" not in r.stderr


def test_launcher_help():
    r = subprocess.run([str(ROOT / "launch_trl.sh"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "usage:" in r.stdout and "NUM_GPUS" in r.stdout and "--accelerate-config" in r.stdout


def test_launcher_passes_arguments_and_exit_status(tmp_path):
    """One GPU runs the trainer directly with the arguments as given and returns its exit status."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo:\n  group_size: 1\n")
    r = subprocess.run([str(ROOT / "launch_trl.sh"), "1", "--config", str(bad)], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "PYTHONPATH": os.environ["PYTHONPATH"]})
    assert r.returncode == 2 and "group_size' must be at least 2" in r.stderr


@pytest.fixture
def launcher(capsys, monkeypatch):
    """launch_trl.sh's Python side in this process (launch_trl.sh only execs it): (exit status, stdout, stderr).
    Only for launches that stop before they exec the trainer: a dry run or a refusal."""
    from step3_GRPO.launch_plan import main as launch

    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.chdir(ROOT)

    def run(*args: str):
        capsys.readouterr()
        rc = launch(list(args))
        out, err = capsys.readouterr()
        return rc, out, err.strip()

    return run


# (launcher arguments, the command it must build): one row per way users launch.
LAUNCHES = [
    (["1", "training.seed=1"], ["train_trl.py", "training.seed=1"]),  # one GPU: plain python, no accelerate
    (["2", "--config", "config/quickstart.yaml"],
     ["accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1", "--multi_gpu", "train_trl.py",
      "--config",
      "config/quickstart.yaml"]),  # N GPUs: accelerate
    (["1", "--accelerate-config", "config/accelerate/zero3.yaml"],
     ["--num_processes", "1", "--config_file", "config/accelerate/zero3.yaml"]),  # engine config on 1 GPU
    (["8", "--num-machines", "2", "--machine-rank", "1", "--main-process-ip", "10.1.2.3", "--main-process-port",
      "29600", "--accelerate-config", "config/accelerate/fsdp2.yaml"],
     ["--num_processes", "16", "--num_machines", "2", "--main_process_port", "29600", "--machine_rank", "1",
      "--main_process_ip", "10.1.2.3", "--config_file", "config/accelerate/fsdp2.yaml"]),  # two nodes
    (["1", "--num-machines", "2", "--machine-rank", "0", "--main-process-ip", "10.1.2.3"],
     ["--num_processes", "2", "--num_machines", "2", "--machine_rank", "0", "--main_process_ip", "10.1.2.3",
      "--multi_gpu", "train_trl.py"]),  # nodes of one GPU: DDP said outright, or accelerate runs each alone
]


@pytest.mark.parametrize("args,expected", LAUNCHES, ids=["1gpu", "2gpu", "engine-config", "multi-node",
                                                         "multi-node-1gpu"])
def test_launcher_builds_the_command(args, expected, launcher):
    rc, out, err = launcher(*args, "--dry-run")
    assert rc == 0, err
    words = [w.rsplit("/", 1)[-1] if w.endswith(".py") else w for w in out.split()]
    it = iter(words)
    assert all(any(w == e for w in it) for e in expected), words  # in this order


@pytest.mark.parametrize("args,message", [
    (["2", "--num-machines", "2"], "needs --machine-rank and --main-process-ip"),  # half a multi-node command
    (["1", "training.max_stesp=1"], "override training.max_stesp=1: unknown key 'training.max_stesp'"),
    (["two"], "NUM_GPUS (the first argument) must be a number of GPUs, got 'two'"),  # not an override
    (["2", "--num-gpus", "2"], "unrecognized arguments: --num-gpus (see ./launch_trl.sh --help)"),
    (["1", "training.optim=adamw_bnb_8bit"], "'training.optim' adamw_bnb_8bit cannot be used here: You need to "
                                             "install `bitsandbytes`"),  # checked before any process starts
    (["1", "trl.learning_rate=1"], "'trl.learning_rate' is set by the project's own keys"),
    (["2", "--accelerate-config", "nope.yaml"], "accelerate config nope.yaml not found"),
    (["0"], "NUM_GPUS must be at least 1"),
    (["-1"], "NUM_GPUS must be at least 1, got -1"),  # a number, not an override nor an option
    (["3"], "do not split over 3 GPUs"),  # the recipe's 256 rollouts, before any process starts
    (["4", "--num-machines", "2", "--machine-rank", "0", "--main-process-ip", "10.0.0.1",
      "vllm.tensor_parallel_size=3"], "does not divide the 8 training processes"),  # counted over all machines
    (["4", "vllm.mode=server", "vllm.enable_sleep_mode=false", "vllm.server_gpus=1"],
     "do not split over 3 GPUs"),  # 1 of 4 serves
    (["4", "vllm.mode=server", "vllm.enable_sleep_mode=true"],
     "'vllm.enable_sleep_mode' applies to colocate mode"),  # cannot reach the server
])
def test_launcher_rejects_bad_launches(args, message, launcher):
    if "bitsandbytes" in message and __import__("importlib").util.find_spec("bitsandbytes"):
        pytest.skip("bitsandbytes is installed here")
    rc, _, err = launcher(*args, "--dry-run")
    assert rc == 2 and message in err, err
    assert err.startswith("error: ") and "\n" not in err


def test_launcher_counts_the_gpus_present(tmp_path, launcher, monkeypatch):
    """Not a dry run: nvidia-smi (here a stand-in listing two GPUs) says how many the machine has."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: a)'\necho 'GPU 1: NVIDIA H200 (UUID: b)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    rc, _, err = launcher("4")
    assert rc == 2 and err == "error: 4 GPUs requested but 2 present; run with 2"


def test_a_server_that_dies_before_it_is_ready():
    from step3_GRPO.launch_plan import Launch, serve_and_train

    launch = Launch(train=[sys.executable, "-c", "raise SystemExit('never started')"],
                    serve=[sys.executable, "-c", "raise SystemExit(1)"], port=free_port())
    with pytest.raises(ConfigError, match=r"^the vLLM server exited before it was ready \(see its log above\)$"):
        serve_and_train(launch, timeout=60)


def test_a_server_that_never_answers_is_stopped_after_the_timeout(tmp_path):
    """SERVER_TIMEOUT seconds without an answer on /health: the launcher says so, stops the server and never
    starts training."""
    from step3_GRPO.launch_plan import Launch, serve_and_train

    pid = tmp_path / "pid"
    serve = [sys.executable, "-c", f"import os, time; open({str(pid)!r}, 'w').write(str(os.getpid())); time.sleep(600)"]
    launch = Launch(train=[sys.executable, "-c", f"open({str(tmp_path / 'trained')!r}, 'w')"], serve=serve,
                    port=free_port())
    with pytest.raises(ConfigError, match=r"^the vLLM server was not ready after 1 s \(SERVER_TIMEOUT\)$"):
        serve_and_train(launch, timeout=1)
    assert not (tmp_path / "trained").exists()
    with pytest.raises(ProcessLookupError):  # stopped, and reaped
        os.kill(int(pid.read_text()), 0)


def test_the_shell_launcher_refuses_a_gpu_count_that_is_not_one():
    """Through the shell script as users run it: the mistake is named as the GPU count, not as an override."""
    r = subprocess.run([str(ROOT / "launch_trl.sh"), "two"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 2 and r.stderr.strip() == ("error: NUM_GPUS (the first argument) must be a number of "
                                                      "GPUs, got 'two'; e.g. ./launch_trl.sh 2")


def test_server_mode_hands_the_vllm_settings_to_the_server(tmp_path, tiny_model):
    """`trl vllm-serve` gets the config's memory share and the run's context length; a model folder and an output
    folder with spaces stay one argument each (the commands are lists, never a line split by a shell)."""
    from step3_GRPO.launch_plan import build, parse_args

    model = tmp_path / "my models" / "tiny"
    shutil.copytree(tiny_model, model)
    out = tmp_path / "my runs" / "out"
    args = parse_args(["3", "--dry-run", "vllm.mode=server", "vllm.enable_sleep_mode=false", "vllm.server_gpus=1",
                       "vllm.gpu_memory_utilization=0.45", "vllm.server_port=8123", "training.prompts_per_step=4",
                       f"model.name_or_path={model}", f"checkpointing.output_dir={out}", "data.max_prompt_tokens=300",
                       "grpo.max_completion_length=700"])
    launch = build(args, {"PYTHON": "py", "CUDA_VISIBLE_DEVICES": "4,5,6"})
    assert launch.serve == ["env", "CUDA_VISIBLE_DEVICES=6", "py", "-m", "trl.cli.main", "vllm-serve", "--model",
                            str(model), "--tensor_parallel_size", "1", "--port", "8123",
                            "--gpu_memory_utilization", "0.45", "--max_model_len", "1000"]
    assert launch.train[:2] == ["env", "CUDA_VISIBLE_DEVICES=4,5"] and f"checkpointing.output_dir={out}" in launch.train
    assert launch.port == 8123
    # null (a share sized for a colocated engine) means, for a server, that its own GPU serves and nothing else
    args.overrides[args.overrides.index("vllm.gpu_memory_utilization=0.45")] = "vllm.gpu_memory_utilization=null"
    serve = build(args, {"PYTHON": "py"}).serve
    assert serve[serve.index("--gpu_memory_utilization") + 1] == "0.9"


def test_deepspeed_config_without_deepspeed_says_how_to_get_it(launcher):
    """Not a dry run, so the environment is checked too; this machine has no DeepSpeed (nor GPUs)."""
    import importlib.util

    if importlib.util.find_spec("deepspeed"):
        pytest.skip("DeepSpeed is installed here")
    rc, _, err = launcher("2", "--accelerate-config", "config/accelerate/zero3.yaml")
    assert rc == 2
    assert err == "error: config/accelerate/zero3.yaml runs DeepSpeed, which is not installed: pip install -e " \
                  "'.[deepspeed]'"


def test_server_mode_needs_a_gpu_left_to_train(tiny_model, launcher, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    args = ["2", "vllm.mode=server", "vllm.server_gpus=2", f"model.name_or_path={tiny_model}", "--dry-run",
            "vllm.enable_sleep_mode=false"]
    rc, _, err = launcher(*args)
    assert rc == 2 and "leaves none of the 2 GPUs to train on" in err
    rc, out, _ = launcher(*args[:2], "vllm.server_gpus=1", *args[3:])
    serve, train = out.splitlines()  # the server on the last GPU, the trainer on the first
    assert serve.startswith("env CUDA_VISIBLE_DEVICES=1 ") and "vllm-serve --model" in serve and serve.endswith("&")
    assert train.startswith("env CUDA_VISIBLE_DEVICES=0 ") and "train_trl.py" in train
    rc, _, err = launcher(*args[:2], "vllm.server_gpus=1", *args[3:], "--num-machines", "2", "--machine-rank", "0",
                          "--main-process-ip", "10.0.0.1")
    assert rc == 2 and "serves from this node only; use vllm.mode=colocate on several nodes" in err


@pytest.mark.parametrize("name", ["ddp", "fsdp2", "zero2", "zero3"])
def test_accelerate_configs_parse(name):
    cfg = yaml.safe_load((ROOT / "config/accelerate" / f"{name}.yaml").read_text())
    assert cfg["mixed_precision"] == "bf16" and cfg["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED")


def test_two_processes_train_the_same_global_batch(tmp_path, tiny_model, tiny_data):
    """`./launch_trl.sh 2` on a machine without GPUs: two CPU processes form one group (gloo) and split each step's
    rollouts (the count of processes comes from the trainer's own group, and a launch whose processes each train
    alone stops with exit 2); rank 0 alone writes and evaluates; a time limit stops both ranks at the same step
    (rank 0's clock decides), then the run saves and evaluates."""
    cfg = config(tmp_path, tiny_model, tiny_data, training={"max_minutes": 1e-6})
    r = subprocess.run([str(ROOT / "launch_trl.sh"), "2", "--config", str(cfg)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600, env={**os.environ, "PYTHON": sys.executable,
                                                       "MAIN_PROCESS_PORT": str(free_port())})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[launch] no GPU found (no nvidia-smi): 2 CPU processes train as one group (gloo)" in r.stderr
    assert "rollouts_per_step=8, per_device_rollouts=4" in r.stdout and "on 2 process(es) in one group" in r.stdout
    assert r.stdout.count("[grpo] saved") == 1 and r.stdout.count("[eval] wrote") == 1  # rank 0 only
    out = tmp_path / "out"
    assert json.loads((out / "final_model" / "trainer_state.json").read_text())["global_step"] == 1
    assert "training.max_minutes=1e-06 reached at step 1" in r.stdout and (out / "checkpoint-1").is_dir()
    assert json.loads((out / "eval_summary.json").read_text())["total_samples"] == 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_machines(tmp_path: Path, cfg: Path, overrides: tuple[list[str], list[str]] = ([], [])) -> list:
    """Two machines rehearsed on this host: torchrun --nnodes 2, one CPU process each, meeting at 127.0.0.1."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
                               str(node), "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port",
                               str(port), str(ROOT / "step3_GRPO/train_trl.py"), "--config", str(cfg),
                               *overrides[node]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path) for node in (0, 1)]
    return [(p.wait(timeout=600), *p.communicate()) for p in procs]


def test_two_machines_train_as_one_group(tmp_path, tiny_model, tiny_data):
    """Across machines the ranks form one group: the batch splits over both, machine 0's rank 0 alone saves
    and evaluates."""
    cfg = config(tmp_path, tiny_model, tiny_data, training={"max_steps": 1})
    (rc0, out0, err0), (rc1, out1, err1) = two_machines(tmp_path, cfg)
    assert rc0 == rc1 == 0, (err0[-2000:], err1[-2000:])
    assert "per_device_rollouts=4" in out0 and "on 2 process(es)" in out0
    assert "[grpo] saved" in out0 and "[grpo]" not in out1  # rank 1 stays quiet
    assert json.loads((tmp_path / "out" / "eval_summary.json").read_text())["total_samples"] == 6


def test_machines_that_see_different_checkpoints_are_refused(tmp_path, tiny_model, tiny_data):
    """An output_dir that is not shared: machine 0 finds a checkpoint, machine 1 (its own folder) finds none.
    Resuming only on rank 0 would train from two states; both stop with the fix instead."""
    cfg = config(tmp_path, tiny_model, tiny_data)
    ckpt = tmp_path / "out" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    results = two_machines(tmp_path, cfg, ([], [f"checkpointing.output_dir={tmp_path / 'elsewhere'}"]))
    for rc, _, err in results:
        assert rc != 0
        assert f"different checkpoints to resume from (rank 0: {ckpt}, rank 1: none)" in err, err[-2000:]
        assert "on a filesystem they all share" in err


def test_final_eval_subprocess_leaves_the_training_group(tmp_path):
    """On GPU the final evaluation runs evaluate.py in a fresh process: no distributed variables (vLLM would
    join the finished training group), one physical GPU, the run's overrides, the measured vLLM share last."""
    from step3_GRPO.train_trl import eval_command, this_gpu

    environ = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "LOCAL_RANK": "0", "WANDB_RUN_ID": "r",
               "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "4,5"}
    cmd, env = eval_command("c.yaml", ["training.seed=3"], tmp_path / "out" / "final_model", 0.4123,
                            this_gpu(1, environ["CUDA_VISIBLE_DEVICES"]), environ, train_run="grpo-7")
    # the evaluation's wandb run is grouped with (and named after) the training run
    assert env == {"HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "5", "WANDB_RUN_GROUP": "grpo-7"}
    assert cmd[1].endswith("step3_GRPO/evaluate.py")
    assert cmd[2:] == ["--config", "c.yaml", "--model", str(tmp_path / "out" / "final_model"), "--output-dir",
                       str(tmp_path / "out"), "training.seed=3", "evaluation.gpu_memory_utilization=0.412"]


FAKE_SERVER = """import http.server, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        open(sys.argv[2], "a").write(self.path + "\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def test_server_mode_starts_waits_for_and_stops_the_server(tmp_path, tiny_model, tiny_data):
    """vllm.mode=server: the launcher starts the server on the last GPU, trains on the rest once /health
    answers, returns the trainer's status and leaves no server behind. `trl vllm-serve` is replaced by a
    stand-in that only answers /health (no GPU here; the trainer then generates with transformers)."""
    port = free_port()
    (tmp_path / "server.py").write_text(FAKE_SERVER)
    fake = tmp_path / "python"
    fake.write_text(f"""#!/usr/bin/env bash
if [[ "$*" == *trl.cli.main* ]]; then echo "$CUDA_VISIBLE_DEVICES $*" > {tmp_path}/server_args
  exec {sys.executable} {tmp_path}/server.py {port} {tmp_path}/requests; fi
exec {sys.executable} "$@"
""")
    fake.chmod(0o755)
    cfg = config(tmp_path, tiny_model, tiny_data, vllm={"use_vllm": True, "mode": "server", "server_port": port,
                                                        "enable_sleep_mode": False, "gpu_memory_utilization": 0.6},
                 evaluation={"enabled": False})
    r = subprocess.run([str(ROOT / "launch_trl.sh"), "2", "--config", str(cfg)], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": str(fake), "CUDA_VISIBLE_DEVICES": "6,7"}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    device, *args = (tmp_path / "server_args").read_text().split()
    assert device == "7" and args[args.index("--model") + 1] == str(tiny_model)  # the last GPU serves
    assert args[args.index("--gpu_memory_utilization") + 1] == "0.6" and args[args.index("--max_model_len") + 1] == \
        str(400 + 12)  # data.max_prompt_tokens + grpo.max_completion_length, as in colocate mode
    assert "/health" in (tmp_path / "requests").read_text()
    assert (tmp_path / "out" / "final_model" / "trainer_state.json").is_file()
    with socket.socket() as s:  # the server was stopped with the launcher
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_converted_model_folder_is_published_once(tmp_path):
    """Two processes converting the same GGUF at once: the second's rename finds the first's folder and keeps it."""
    from train.models import publish

    out = tmp_path / "model"
    for pid in (1, 2):
        tmp = tmp_path / f"model.partial-{pid}"
        tmp.mkdir()
        (tmp / "config.json").write_text(json.dumps({"writer": pid}))
        (tmp / "weights").write_text("x")  # a non-empty folder: rename onto it fails as it would for real
        publish(tmp, out)
    assert json.loads((out / "config.json").read_text()) == {"writer": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
