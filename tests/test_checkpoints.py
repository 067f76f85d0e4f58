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
import yaml
from safetensors.torch import save_file

import train.checkpoints
from train.checkpoints import (
    check_disk,
    check_writable,
    complete_checkpoints,
    differences,
    incomplete,
    move_aside,
    plan_output_dir,
)
from train.config import ConfigError, dump_yaml, load_config


def checkpoint(folder: Path, step: int) -> Path:
    """A complete checkpoint as transformers writes one: weights, optimizer and scheduler state, trainer state last."""
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    save_file({"w": torch.zeros(64, 64)}, str(ckpt / "model.safetensors"))
    torch.save({"state": {}, "param_groups": []}, ckpt / "optimizer.pt")
    torch.save({"last_epoch": step}, ckpt / "scheduler.pt")
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
    # a trl: key set on one side only is a difference: TRL's default there, this value here
    ("this run", ["trl.adam_epsilon=0.001"], "holds another run (trl.adam_epsilon: not set there, 0.001 here)"),
    # another run that failed before its first checkpoint (a bad value, a crash): nothing of it to keep or mix
    ("another run, no checkpoint", [], (None, False, "(training.learning_rate: 2e-05 there, 1e-05 here) stopped "
                                                      "before its first checkpoint: starting over")),
    # checkpoints of the weights alone cannot continue a run: refused, with both ways on
    ("this run, weights only", [], "checkpoint-4 holds the weights only (trl.save_only_model), not the optimizer "
                                   "and learning-rate state that continuing to training.max_steps=200 needs"),
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
        if state.endswith("weights only"):
            for c in (2, 4):
                (out / f"checkpoint-{c}/optimizer.pt").unlink(), (out / f"checkpoint-{c}/scheduler.pt").unlink()
    if state.startswith("another run"):
        this_run(tmp_path, "training.learning_rate=2e-5")
        if state == "another run":
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


def test_a_run_at_its_max_steps_is_complete(tmp_path):
    """The newest checkpoint at (or past) training.max_steps: the run is complete and trains nothing, even when its
    checkpoints hold the weights alone; below it, the run continues."""
    out = this_run(tmp_path)
    checkpoint(out, 2), checkpoint(out, 4)
    for max_steps, complete in ((4, True), (3, True), (6, False)):
        plan = plan_output_dir(cfg_for(tmp_path, f"training.max_steps={max_steps}"))
        assert (Path(plan.resume_from).name, plan.complete) == ("checkpoint-4", complete), max_steps
    (out / "checkpoint-4/optimizer.pt").unlink(), (out / "checkpoint-4/scheduler.pt").unlink()
    assert plan_output_dir(cfg_for(tmp_path, "training.max_steps=4")).complete


def test_a_record_of_an_older_schema_is_the_same_run(tmp_path):
    """A key the recorded run's schema did not have counts with its default; one this schema no longer has is not
    compared; trl: keys on either side are."""
    out = this_run(tmp_path)
    record = yaml.safe_load((out / "resolved_config.yaml").read_text())
    del record["training"]["adam_beta2"]  # an older schema, without the key: it had the default
    record["training"]["retired_key"] = 1  # a key since removed from the schema
    (out / "resolved_config.yaml").write_text(yaml.safe_dump(record))
    assert differences(out, cfg_for(tmp_path)) == []
    assert differences(out, cfg_for(tmp_path, "training.adam_beta2=0.99")) == [
        "training.adam_beta2: 0.95 there, 0.99 here"]
    record["trl"] = {"adam_epsilon": 0.001}
    (out / "resolved_config.yaml").write_text(yaml.safe_dump(record))
    assert differences(out, cfg_for(tmp_path)) == ["trl.adam_epsilon: 0.001 there, not set here"]


def test_the_current_folder_is_not_moved_aside(tmp_path, monkeypatch):
    """checkpointing.output_dir=. with overwrite and another run there: renaming the folder the command runs in
    would carry the run's relative paths away with it; refused in one line (it once failed on '.' having no name)."""
    out = this_run(tmp_path, "training.learning_rate=2e-5")
    checkpoint(out, 2)
    monkeypatch.chdir(out)
    with pytest.raises(ConfigError) as e:
        plan_output_dir(load_config(None, ["checkpointing.output_dir=.", "data.path=x.jsonl",
                                           "checkpointing.overwrite=true"]))
    assert str(e.value) == (f"checkpointing.output_dir: . holds the current folder ({out}), which cannot be moved "
                            "aside (checkpointing.overwrite); run from another folder, or choose another output_dir")
    monkeypatch.chdir(out / "checkpoint-2")  # a folder inside it moves with it just the same
    with pytest.raises(ConfigError, match="holds the current folder"):
        plan_output_dir(cfg_for(tmp_path, "checkpointing.overwrite=true"))


def test_a_huge_max_steps_under_a_time_limit_passes_the_disk_check(tmp_path, tiny_model):
    """training.max_steps=10**10 with a time limit: the checkpoints still to write are counted, not listed (a list
    of 10**10 steps once exhausted the memory)."""
    cfg = cfg_for(tmp_path, "training.max_steps=10000000000", "training.max_minutes=1")
    check_disk(cfg, str(tiny_model), plan_output_dir(cfg))


# --------------------------------------------------------------------------------------------------- the lock
def test_a_second_run_into_a_locked_folder_is_refused(tmp_path):
    """One line naming the run that holds the folder (its pid and host); released, the folder is free again."""
    import os
    import socket

    from train.checkpoints import LOCK, OutputLock

    out = tmp_path / "out"
    with OutputLock(out):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(ConfigError) as e:
            OutputLock(out)
        assert str(e.value).startswith(f"checkpointing.output_dir: {out} is in use by another run (pid {os.getpid()} "
                                       f"on {socket.gethostname()}, started ")
        assert str(e.value).endswith("); wait for it to end, or choose another output_dir")
    assert not out.exists()  # created for the lock and left empty: removed with it
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": 999999999, "host": "gone", "started": "yesterday"}))  # a killed run's
    with OutputLock(out):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()  # a stale lock does not block
    assert out.is_dir() and not (out / LOCK).exists()


def test_the_lock_follows_a_run_moved_aside(tmp_path):
    from train.checkpoints import LOCK, OutputLock

    out = this_run(tmp_path)
    with OutputLock(out) as lock:
        moved = move_aside(out, lock)
        assert not (moved / LOCK).exists() and (out / LOCK).is_file()
        with pytest.raises(ConfigError, match="is in use by another run"):
            OutputLock(out)
        with OutputLock(moved):  # the moved folder is nobody's
            pass


# -------------------------------------------------------------------------------------------- the evaluation
def test_a_summary_names_the_model_it_evaluated(tmp_path):
    from train.checkpoints import model_identity, stale_evaluation

    model = tmp_path / "final_model"
    model.mkdir()
    save_file({"w": torch.zeros(4)}, str(model / "model.safetensors"))
    (model / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    summary = tmp_path / "eval_summary.json"
    assert stale_evaluation(summary, model) == "it has none yet"
    summary.write_text(json.dumps({"accuracy": 0.5}))  # written before summaries named their model
    assert "does not name the model it evaluated" in stale_evaluation(summary, model)
    summary.write_text(json.dumps({"model": model_identity(model)}))
    assert stale_evaluation(summary, model) is None
    save_file({"w": torch.ones(4)}, str(model / "model.safetensors"))  # another model, the same step
    assert stale_evaluation(summary, model).endswith("evaluated another model (step 2; this one: step 2)")


def test_a_file_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import os

    from train.checkpoints import write_atomic

    path = tmp_path / "eval_summary.json"
    write_atomic(path, "old")

    def killed(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new")
    assert path.read_text() == "old"
