"""The output folder before training (train/checkpoints.py): complete checkpoints, this run or another, the
folder's own state, the room on the disk. Pure file checks on small hand-made folders; the runs that go through
them end to end are in test_train.py."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import train.checkpoints
from train.checkpoints import (
    check_disk,
    check_writable,
    complete_checkpoints,
    differences,
    incomplete,
    plan_output_dir,
)
from train.config import ConfigError, dump_yaml, load_config


def checkpoint(folder: Path, step: int) -> Path:
    """A complete checkpoint as transformers writes one: weights, optimizer state, trainer state last."""
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    save_file({"w": torch.zeros(64, 64)}, str(ckpt / "model.safetensors"))
    torch.save({"state": {}, "param_groups": []}, ckpt / "optimizer.pt")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ckpt


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# (how a save was cut short, the reason given): one row per way a kill mid-save leaves a checkpoint
DAMAGE = [
    (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json"),  # killed before the last file
    (lambda c: cut(c / "trainer_state.json"), "trainer_state.json is cut short"),  # killed while writing it
    (lambda c: cut(c / "model.safetensors"), "model.safetensors is cut short"),  # a truncated weights file
    (lambda c: cut(c / "model.safetensors", 0.0001), "model.safetensors is cut short"),  # not even its header
    (lambda c: cut(c / "optimizer.pt"), "optimizer.pt is cut short"),  # a truncated optimizer state
    (lambda c: (c / "model.safetensors.index.json").write_text('{"weight_map": {"w": "shard-2.safetensors"}}'),
     "shard-2.safetensors is missing"),  # a sharded save with a shard never written
]


@pytest.mark.parametrize("damage,reason", DAMAGE, ids=[r for _, r in DAMAGE])
def test_an_interrupted_save_is_not_a_checkpoint(tmp_path, damage, reason):
    ckpt = checkpoint(tmp_path, 4)
    assert incomplete(ckpt) is None
    damage(ckpt)
    assert reason in incomplete(ckpt)


def test_the_newest_complete_checkpoint_is_chosen_and_the_skipped_one_named(tmp_path):
    for step in (2, 4, 6):
        checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-6" / "trainer_state.json").unlink()
    (tmp_path / "checkpoint-10").mkdir()  # a save killed at once
    good, notes = complete_checkpoints(tmp_path)
    assert [c.name for c in good] == ["checkpoint-4", "checkpoint-2"]
    assert notes == ["skipping checkpoint-10: no trainer_state.json, the save was cut short",
                     "skipping checkpoint-6: no trainer_state.json, the save was cut short"]


def cfg_for(tmp_path: Path, *overrides: str):
    return load_config(None, [f"checkpointing.output_dir={tmp_path / 'out'}", "data.path=x.jsonl", *overrides])


def this_run(tmp_path: Path, *overrides: str) -> Path:
    """The folder of a run of cfg_for(tmp_path, *overrides): its resolved config, as the trainer writes it first."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "resolved_config.yaml").write_text(dump_yaml(cfg_for(tmp_path, *overrides)))
    return out


# (the folder, overrides of this launch, expected: resume from / move aside / note or error): one row per state
FOLDERS = [
    ("missing", [], (None, False, None)),
    ("empty", [], (None, False, None)),
    ("only eval_base", [], (None, False, None)),  # README: evaluate the base model first, then train
    ("foreign files", [], "holds files that are not from a run"),
    ("foreign files", ["checkpointing.overwrite=true"], (None, False, None)),  # nothing of a run to mix with
    ("crashed before a checkpoint", [], (None, False, "starting over")),  # the same command runs again
    ("crashed before a checkpoint", ["checkpointing.resume=never"], (None, False, "starting over")),
    ("this run", [], ("checkpoint-4", False, None)),
    ("this run", ["training.max_steps=400", "evaluation.n=2"], ("checkpoint-4", False, None)),  # continue longer
    ("this run", ["checkpointing.resume=never"], "holds this run's checkpoints and checkpointing.resume is never"),
    ("this run", ["checkpointing.resume=never", "checkpointing.overwrite=true"], (None, True, None)),
    ("this run, newest cut short", [], ("checkpoint-2", False, "skipping checkpoint-4: no trainer_state.json")),
    ("another run", [], "holds another run (training.learning_rate: 2e-05 there, 1e-05 here)"),
    ("another run", ["checkpointing.overwrite=true"], (None, True, None)),  # moved aside, never resumed from
]


@pytest.mark.parametrize("state,overrides,expected", FOLDERS, ids=[f"{s}-{o}" for s, o, _ in FOLDERS])
def test_output_dir_decision(tmp_path, state, overrides, expected):
    out = tmp_path / "out"
    if state != "missing":
        out.mkdir()
    if state == "only eval_base":
        (out / "eval_base").mkdir()
    if state == "foreign files":
        (out / "notes.txt").write_text("mine")
    if state == "crashed before a checkpoint":
        this_run(tmp_path, *overrides)
        (out / "heldout_ids.json").write_text("{}")
    if state.startswith("this run"):
        this_run(tmp_path)
        checkpoint(out, 2), checkpoint(out, 4)
        if state.endswith("cut short"):
            (out / "checkpoint-4" / "trainer_state.json").unlink()
    if state == "another run":
        this_run(tmp_path, "training.learning_rate=2e-5")
        checkpoint(out, 2)
    cfg = cfg_for(tmp_path, *overrides)
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=None) as e:
            plan_output_dir(cfg)
        assert expected in str(e.value) and "\n" not in str(e.value)
        return
    plan = plan_output_dir(cfg)
    resume, aside, note = expected
    assert (Path(plan.resume_from).name if plan.resume_from else None, plan.move_aside) == (resume, aside)
    assert (note is None and not plan.notes) or any(note in n for n in plan.notes), plan.notes


def test_the_previous_checkpoint_is_known_for_a_failed_load(tmp_path):
    out = this_run(tmp_path)
    for step in (2, 4, 6):
        checkpoint(out, step)
    plan = plan_output_dir(cfg_for(tmp_path))
    assert (Path(plan.resume_from).name, Path(plan.previous).name) == ("checkpoint-6", "checkpoint-4")
    plan = plan_output_dir(cfg_for(tmp_path, f"checkpointing.resume={out / 'checkpoint-4'}"))
    assert (Path(plan.resume_from).name, Path(plan.previous).name) == ("checkpoint-4", "checkpoint-2")
    with pytest.raises(ConfigError, match="checkpoint-6 is not a complete checkpoint .no trainer_state.json"):
        (out / "checkpoint-6" / "trainer_state.json").unlink()
        plan_output_dir(cfg_for(tmp_path, f"checkpointing.resume={out / 'checkpoint-6'}"))


@pytest.mark.parametrize("damage,reason", DAMAGE, ids=[r for _, r in DAMAGE])
@pytest.mark.parametrize("resume", ["auto", "checkpoint-6"])
def test_a_checkpoint_cut_short_is_never_named_as_the_previous_one(tmp_path, damage, reason, resume):
    """checkpoint-4 was cut short between two complete ones: when checkpoint-6 fails to load, the message points to
    checkpoint-2 (resuming from checkpoint-4 would fail again)."""
    out = this_run(tmp_path)
    for step in (2, 4, 6):
        checkpoint(out, step)
    damage(out / "checkpoint-4")
    plan = plan_output_dir(cfg_for(tmp_path, f"checkpointing.resume={out / resume if resume != 'auto' else resume}"))
    assert (Path(plan.resume_from).name, Path(plan.previous).name) == ("checkpoint-6", "checkpoint-2")


# (a change between two launches into one output_dir, still the same run?): one row per kind of key. README: the
# same command with more training.max_steps, or other evaluation, logging, vLLM or micro-batch settings, continues
# the run; another model, data or hyper-parameter is another run.
CHANGES = [
    ("training.max_steps=400", True), ("training.max_minutes=5", True), ("training.micro_batch_size=4", True),
    ("training.gradient_checkpointing=false", True), ("vllm.gpu_memory_utilization=0.5", True),
    ("evaluation.max_tokens=64", True), ("logging.logging_steps=5", True), ("checkpointing.save_steps=10", True),
    ("model.cache_dir=/tmp/elsewhere", True),
    ("model.name_or_path=other/model", False), ("model.dtype=bfloat16", False), ("data.path=other.jsonl", False),
    ("data.eval_holdout=10", False), ("data.max_prompt_tokens=256", False), ("training.seed=1", False),
    ("training.prompts_per_step=16", False), ("training.learning_rate=2e-5", False), ("grpo.beta=0.1", False),
    ("grpo.group_size=4", False), ("grpo.loss_type=dr_grpo", False),
]


@pytest.mark.parametrize("change,same", CHANGES, ids=[c for c, _ in CHANGES])
def test_what_a_continued_run_may_change(tmp_path, change, same):
    out = this_run(tmp_path)
    assert (differences(out, cfg_for(tmp_path, change)) == []) is same


def test_one_data_file_spelled_two_ways_is_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "d.jsonl").write_text("{}\n")
    out = this_run(tmp_path, "data.path=~/d.jsonl")
    assert differences(out, cfg_for(tmp_path, f"data.path={tmp_path / 'd.jsonl'}")) == []
    assert differences(out, cfg_for(tmp_path, "data.path=other.jsonl")) == [
        "data.path: '~/d.jsonl' there, 'other.jsonl' here"]


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_text("x"), "out is a file; choose a folder"),
    (lambda p: p.parent.joinpath("f").write_text("x"), "cannot be created:"),  # out = f/out, f a file
])
def test_an_output_dir_that_cannot_be_a_folder(tmp_path, make, message):
    out = tmp_path / "out"
    make(out)
    target = out if message.startswith("out is") else tmp_path / "f" / "out"
    with pytest.raises(ConfigError, match=message):
        check_writable(target)
    assert sorted(p.name for p in tmp_path.iterdir()) in (["out"], ["f"])  # nothing written


def test_a_read_only_output_dir(tmp_path, monkeypatch):
    """The check writes for real (permission bits say nothing of a read-only mount, or of root); here the
    filesystem's answer is played by the test."""
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(train.checkpoints.tempfile, "TemporaryFile", read_only)
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match=r"out is read-only \(Read-only file system\)"):
        check_writable(tmp_path / "out")
    with pytest.raises(ConfigError, match=r"new cannot be created in .* \(Read-only file system\)"):
        check_writable(tmp_path / "out" / "new")


# (save_steps, max_steps, steps already done, checkpoints still to write): transformers saves every save_steps
# and at the last step (README), which the disk check counts
SAVES = [(50, 200, 0, 4), (50, 120, 0, 3), (50, 120, 100, 1), (2, 4, 4, 0), (4, 4, 0, 1), (3, 10, 0, 4)]


@pytest.mark.parametrize("save_steps,max_steps,done,left", SAVES, ids=[str(s) for s in SAVES])
def test_checkpoints_still_to_write(save_steps, max_steps, done, left):
    from train.checkpoints import saves_left

    assert saves_left(save_steps, max_steps, done) == left


def test_a_checkpoint_is_12_bytes_a_parameter_in_float32():
    """README: fp32 weights and AdamW's two moments, 18 GB for 1.5B parameters; the weights alone a third."""
    from train.checkpoints import checkpoint_bytes

    assert checkpoint_bytes(1_500_000_000, "float32", weights_only=False) == 18_000_000_000
    assert checkpoint_bytes(1_500_000_000, "float32", weights_only=True) == 6_000_000_000
    assert checkpoint_bytes(1_500_000_000, "bfloat16", weights_only=False) == 9_000_000_000


@pytest.mark.parametrize("overrides,free_gb,ok", [
    ([], 1.0, True),  # a 60k-parameter model: a few MB
    ([], 0.002, False),  # 2 MB cannot hold 4 checkpoints of 0.7 MB and the final model
    (["trl.save_only_model=true"], 0.002, True),  # weights only: a third of the size
])
def test_disk_room_for_the_checkpoints(tmp_path, tiny_model, monkeypatch, overrides, free_gb, ok):
    monkeypatch.setattr(train.checkpoints.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10**12, 0, int(free_gb * 1e9)))
    cfg = cfg_for(tmp_path, "checkpointing.save_steps=1", "training.max_steps=10", *overrides)
    plan = plan_output_dir(cfg)
    if ok:
        check_disk(cfg, str(tiny_model), plan)
        return
    with pytest.raises(ConfigError) as e:
        check_disk(cfg, str(tiny_model), plan)
    params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(
        tiny_model).parameters())
    assert f"up to 4 checkpoint(s) of {params * 12 / 1e6:.1f} MB ({params / 1e9:.2f}B parameters, float32 " \
           "weights + AdamW state)" in str(e.value)
    assert "lower checkpointing.save_total_limit, or set trl.save_only_model=true" in str(e.value)
