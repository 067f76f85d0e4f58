"""The output folder before training: is it a folder this run can write, does it hold this run or another, which
checkpoint does the run continue from, and does the disk hold what the run will write.

Decided on every process from what is on disk, before any model is loaded; only rank 0 then changes files
(`move_aside`), holding the folder's lock (`OutputLock`) so that a second run started into it stops at once. A
checkpoint counts only when it is complete: transformers writes `trainer_state.json` last, so a save cut short by
a kill has none, or has a weights file shorter than its own header says. A run whose newest checkpoint reached
training.max_steps is complete: it trains nothing more. An evaluation summary names the model it evaluated (its
step and the digest of its weights), so that one beside a newer model is known for what it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import tempfile
import time
import zipfile
from pathlib import Path

import yaml

from train.config import Config, ConfigError, resolve_path, to_dict

# Keys a continued run may change and still be the same run: how long it trains, how it runs on the hardware, what
# it evaluates and logs. Any other difference (model, data, hyper-parameters) makes a folder's run another run.
MAY_CHANGE = ("training.max_steps", "training.max_minutes", "training.micro_batch_size",
              "training.gradient_checkpointing", "checkpointing.output_dir", "model.cache_dir",
              "vllm.", "evaluation.", "checkpointing.", "logging.")
LOCK = ".lock"  # in output_dir while a run writes there: its pid, host and start time (OutputLock)
# What the project writes into output_dir without a training run: `evaluate.py --model base` (README's first step),
# and the lock a starting run takes before it looks
NOT_A_RUN = ("eval_base", LOCK)
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclasses.dataclass
class OutputPlan:
    resume_from: str | None = None
    previous: str | None = None  # the complete checkpoint before resume_from, named if resume_from fails to load
    move_aside: bool = False  # overwrite: rank 0 moves the folder's run to <output_dir>.replaced-<time>/ first
    notes: list[str] = dataclasses.field(default_factory=list)  # what was skipped and why, logged by rank 0
    complete: bool = False  # resume_from reached training.max_steps: nothing to train, only what is left to do


# ---------------------------------------------------------------------------------------------- checkpoints
def checkpoints(folder: Path) -> list[Path]:
    """The `checkpoint-N` folders in `folder`, newest (highest N) first."""
    found = [p for p in folder.iterdir() if CHECKPOINT.match(p.name) and p.is_dir()] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)), reverse=True)


def incomplete(ckpt: Path) -> str | None:
    """Why `ckpt` cannot be resumed from as it is on disk, or None when it is complete."""
    state = ckpt / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json, the save was cut short"
    try:
        json.loads(state.read_text())
    except ValueError:
        return "trainer_state.json is cut short"
    for f in sorted(ckpt.glob("*.safetensors")):
        if reason := safetensors_cut(f):
            return reason
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        if missing := sorted(s for s in shards if not (ckpt / s).is_file()):
            return f"{missing[0]} is missing"
    optimizer = ckpt / "optimizer.pt"
    if optimizer.is_file() and not zipfile.is_zipfile(optimizer):  # torch.save writes a zip: its index comes last
        return "optimizer.pt is cut short"
    return None


def safetensors_cut(path: Path) -> str | None:
    """A safetensors file states its length in its header (8-byte size, JSON, then the tensors' data)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path.name} is cut short ({size} bytes)"
        n = struct.unpack("<Q", head)[0]
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return f"{path.name} is cut short (its header)"
    end = 8 + n + max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return f"{path.name} is cut short ({size} of {end} bytes)" if size < end else None


def weights_only(ckpt: Path) -> bool:
    """A checkpoint of the weights alone (trl.save_only_model): transformers resumes the optimizer and the
    learning-rate schedule only where scheduler.pt is (DeepSpeed keeps its state in global_stepN/)."""
    return not (ckpt / "scheduler.pt").is_file() and not any(ckpt.glob("global_step*"))


def complete_checkpoints(folder: Path) -> tuple[list[Path], list[str]]:
    """The complete checkpoints, newest first, and a note for each newer one skipped."""
    good, notes = [], []
    for ckpt in checkpoints(folder):
        reason = incomplete(ckpt)
        if reason and not good:
            notes.append(f"skipping {ckpt.name}: {reason}")
        elif not reason:
            good.append(ckpt)
    return good, notes


# ----------------------------------------------------------------------------------------------- the folder
def plan_output_dir(cfg: Config) -> OutputPlan:
    """Fresh start, continue, finish a complete run, or move another run aside; a ConfigError names the folder and
    the fix otherwise. A checkpoint of the weights alone is never resumed: without the optimizer's moments and the
    schedule's step, the run would go on from another state than the one it stopped in (docs/troubleshooting.md)."""
    plan = _decide(cfg)
    if plan.resume_from:
        ckpt, max_steps = Path(plan.resume_from), cfg.training.max_steps
        plan.complete = checkpoint_step(ckpt) >= max_steps
        if not plan.complete and weights_only(ckpt):
            key = "checkpointing.resume" if cfg.checkpointing.resume not in ("auto", "never") else \
                "checkpointing.output_dir"
            raise ConfigError(f"{key}: {ckpt} holds the weights only (trl.save_only_model), not the optimizer and "
                              f"learning-rate state that continuing to training.max_steps={max_steps} needs; start "
                              "over with checkpointing.resume=never checkpointing.overwrite=true, or train on from "
                              f"these weights as a new run: model.name_or_path={ckpt} and another output_dir")
    return plan


def _decide(cfg: Config) -> OutputPlan:
    out = Path(cfg.checkpointing.output_dir).expanduser()
    check_writable(out)
    ck = cfg.checkpointing
    if ck.resume not in ("auto", "never"):
        path = resolve_path(ck.resume)
        if not path.is_dir():
            raise ConfigError(f"checkpointing.resume: {path} is not a checkpoint folder (give auto, never or a "
                              "checkpoint-N folder)")
        if reason := incomplete(path):
            raise ConfigError(f"checkpointing.resume: {path} is not a complete checkpoint ({reason})")
        older = [c for c in complete_checkpoints(path.parent)[0] if checkpoint_step(c) < checkpoint_step(path)]
        return OutputPlan(str(path), previous=str(older[0]) if older else None)
    entries = [p for p in out.iterdir() if p.name not in NOT_A_RUN] if out.is_dir() else []
    if not entries:
        return OutputPlan()
    found = checkpoints(out)
    if not (found or (out / "final_model").exists() or (out / "resolved_config.yaml").exists()):
        if ck.overwrite:
            return OutputPlan()  # no run to mix with: checkpoint rotation and resume only see checkpoint-N folders
        raise ConfigError(f"checkpointing.output_dir: {out} holds files that are not from a run; choose another "
                          "output_dir, or set checkpointing.overwrite=true to write into it")
    if diff := differences(out, cfg):
        if not (found or (out / "final_model").exists()):  # it stopped before its first checkpoint: nothing to keep
            return OutputPlan(notes=[f"the run recorded here ({diff[0]}) stopped before its first checkpoint: "
                                     "starting over with this configuration"])
        if ck.overwrite:
            return _aside(out)
        more = f" and {len(diff) - 1} more" if len(diff) > 1 else ""
        raise ConfigError(f"checkpointing.output_dir: {out} holds another run ({diff[0]}{more}); choose another "
                          "output_dir, set checkpointing.overwrite=true to move that run aside and start over, or "
                          "checkpointing.resume=<its checkpoint-N> to continue it with these values")
    good, notes = complete_checkpoints(out)
    if ck.resume == "auto":
        if good:
            return OutputPlan(str(good[0]), previous=str(good[1]) if len(good) > 1 else None, notes=notes)
        return OutputPlan(notes=[*notes, "no complete checkpoint of this run yet: starting over"])
    if not (found or (out / "final_model").exists()):  # this run stopped before its first checkpoint
        return OutputPlan(notes=["this run saved no checkpoint yet: starting over"])
    if ck.overwrite:
        return _aside(out)
    raise ConfigError(f"checkpointing.output_dir: {out} holds this run's checkpoints and checkpointing.resume is "
                      "never; continue it with checkpointing.resume=auto, or set checkpointing.overwrite=true to "
                      "move it aside and start over")


def differences(out: Path, cfg: Config) -> list[str]:
    """The keys in which the run recorded in `out` (its resolved_config.yaml) differs from `cfg`, except those a
    continued run may change. A `trl.` key set on one side only is a difference (TRL's default on the other); a
    schema key the record lacks (an older schema) has its default there, and one this schema lacks is not compared."""
    try:
        theirs = _flat(yaml.safe_load((out / "resolved_config.yaml").read_text()))
    except (FileNotFoundError, yaml.YAMLError):
        return []  # checkpoints without a readable record: nothing to tell the runs apart by
    ours, defaults = _flat(to_dict(cfg)), _flat(to_dict(Config()))
    unset = _Unset()
    keys = [k for k in dict.fromkeys([*ours, *theirs])
            if not k.startswith(MAY_CHANGE) and (k in defaults or k.startswith("trl."))]
    pairs = [(k, theirs.get(k, defaults.get(k, unset)), ours.get(k, defaults.get(k, unset))) for k in keys]
    return [f"{k}: {a!r} there, {b!r} here" for k, a, b in pairs if not _same(a, b)]


class _Unset:
    def __repr__(self) -> str:
        return "not set"


def _aside(out: Path) -> OutputPlan:
    """The plan that moves the folder's run aside; refused for the folder the command runs in (or one above it),
    which a rename would carry away from under the run, its relative paths included."""
    cwd = Path.cwd().resolve()
    if out.resolve() == cwd or out.resolve() in cwd.parents:
        raise ConfigError(f"checkpointing.output_dir: {out} holds the current folder ({cwd}), which cannot be moved "
                          "aside (checkpointing.overwrite); run from another folder, or choose another output_dir")
    return OutputPlan(move_aside=True)


def move_aside(out: Path, lock: OutputLock | None = None) -> Path:
    """Rename the folder holding another run to <output_dir>.replaced-<time> and start an empty one (rank 0); the
    lock held on the folder follows to the new one."""
    dest = out.with_name(f"{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        out.rename(dest)
    except OSError as e:
        raise ConfigError(f"checkpointing.output_dir: could not move {out} aside to {dest} ({e.strerror}); move or "
                          "delete it yourself, or choose another output_dir") from None
    out.mkdir()
    if lock is not None:
        lock.follow(out, dest)
    return dest


def check_writable(out: Path, key: str = "checkpointing.output_dir") -> None:
    """`out` must be a folder this process can create and write; checked before anything is written anywhere."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{key}: {out} is a file; choose a folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}: {out} cannot be created: {parent} is a file")
    try:  # a real write, since permission bits say nothing of read-only mounts (or of root)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        what = "is read-only" if parent == out else f"cannot be created in {parent}"
        raise ConfigError(f"{key}: {out} {what} ({e.strerror}); choose a folder you can write") from None


# ----------------------------------------------------------------------------------------------------- lock
class OutputLock:
    """The output folder's lock, taken by rank 0 before it looks at the folder and held until the run ends (the
    other ranks of a launch never take it, so they cannot block each other): a second run started into the folder
    stops with one line naming the first's pid and host. It is an flock, which the kernel drops when its process
    dies, so the file a killed run leaves behind blocks nothing. Released, it leaves no folder that it created
    for itself (a run refused before it wrote anything)."""

    def __init__(self, out: Path):
        self.created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.note = out, None
        self.fd = self._take(out)

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _take(self, out: Path) -> int | None:
        path = out / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _holder(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    self.note = f"cannot lock {out} ({e.strerror}): a second run started into it would not be stopped"
                    return None
                raise ConfigError(f"checkpointing.output_dir: {out} is in use by another run ({holder}); wait for "
                                  "it to end, or choose another output_dir") from None
            try:
                ours = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                ours = False
            if ours:
                break
            os.close(fd)  # the run that held it removed the file as it ended: lock the one there now
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        return fd

    def follow(self, out: Path, moved: Path) -> None:
        """After move_aside: the lock file went with the moved folder; lock the new one and leave none there."""
        old, self.out, self.created = self.fd, moved, False  # what this holds until the new folder is locked
        self.fd = self._take(out)  # another run that took the new folder first: refused, and release frees `moved`
        self.out = out
        (moved / LOCK).unlink(missing_ok=True)
        if old is not None:
            os.close(old)

    def release(self) -> None:
        if self.fd is None:
            return
        (self.out / LOCK).unlink(missing_ok=True)  # ours: no other process holds it while we do
        os.close(self.fd)
        self.fd = None
        if self.created:
            with contextlib.suppress(OSError):  # kept when the run wrote anything into it
                self.out.rmdir()


def _holder(fd: int) -> str:
    """Who holds a lock, from what it wrote into the file: 'pid 4242 on node7, started 2026-01-05 10:00:00'."""
    try:
        who = json.loads(os.pread(fd, 4096, 0))
        return f"pid {who['pid']} on {who['host']}, started {who['started']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "a run that is starting"


# ----------------------------------------------------------------------------------------------------- disk
def checkpoint_bytes(params: int, dtype: str, weights_only: bool) -> int:
    """Bytes of one checkpoint: the weights, plus AdamW's two moments (kept in the weights' dtype).

    >>> checkpoint_bytes(1_500_000_000, "float32", weights_only=False) / 1e9  # the 1.5B recipe
    18.0
    """
    return params * {"float32": 4, "bfloat16": 2}[dtype] * (1 if weights_only else 3)


def saves_left(save_steps: int, max_steps: int, done: int) -> int:
    """Checkpoints still to write: every save_steps, and at the last step. Counted, not listed: a run of 10**10
    steps under a time limit is a valid request.

    >>> saves_left(50, 200, 0), saves_left(50, 120, 100), saves_left(2, 4, 4), saves_left(3, 2, 4)
    (4, 1, 0, 0)
    >>> saves_left(1, 10**10, 0)
    10000000000
    """
    if done >= max_steps:
        return 0
    return max_steps // save_steps - done // save_steps + (1 if max_steps % save_steps else 0)


def check_disk(cfg: Config, model_path: str, plan: OutputPlan, adapter_params: int | None = None) -> None:
    """The disk under output_dir must hold the checkpoints the run will keep at once plus the final model. With LoRA
    (`adapter_params`), a checkpoint holds the float32 adapter and its AdamW state, the final model the merged weights
    and the adapter."""
    out = Path(cfg.checkpointing.output_dir).expanduser()
    params = parameter_count(model_path)
    weights_only = bool(cfg.trl.get("save_only_model", False))
    ck = cfg.checkpointing
    done = checkpoint_step(Path(plan.resume_from)) if plan.resume_from else 0
    kept = 0 if plan.move_aside else len(complete_checkpoints(out)[0]) if out.is_dir() else 0
    # transformers writes a new checkpoint before it deletes the oldest: save_total_limit + 1 exist for a moment
    at_once = min(saves_left(ck.save_steps, cfg.training.max_steps, done), max(ck.save_total_limit + 1 - kept, 1))
    one = checkpoint_bytes(params, cfg.model.dtype, weights_only)
    final = checkpoint_bytes(params, cfg.model.dtype, weights_only=True)
    if adapter_params is not None:
        one = checkpoint_bytes(adapter_params, "float32", weights_only)
        final += checkpoint_bytes(adapter_params, "float32", weights_only=True)
    need = at_once * one + final
    parent = out
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if free < need:
        state = "weights" if weights_only else "weights + AdamW state"
        state = f"LoRA adapter {state}" if adapter_params is not None else state
        raise ConfigError(
            f"checkpointing.output_dir: {out} has {size(free)} free, but this run writes up to {at_once} checkpoint(s) "
            f"of {size(one)} ({params / 1e9:.2f}B parameters, {cfg.model.dtype} {state}) and a final model of "
            f"{size(final)}, {size(need)} in all; free some space, lower checkpointing.save_total_limit, or set "
            "trl.save_only_model=true (weights only: a run cannot resume from such checkpoints)")


def size(n: int) -> str:
    """
    >>> size(18_000_000_000), size(720_000)
    ('18.0 GB', '0.7 MB')
    """
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def parameter_count(model_path: str) -> int:
    """The model's parameter count from its config alone (built on the meta device: no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------ evaluations
EVAL_FILES = ("eval_summary.json", "eval_samples.jsonl", "eval_by_source.png", "training_curves.png")
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")


def trained_step(model: Path) -> int | None:
    """The step a model folder was trained to, from the trainer_state.json saved with it (None if there is none)."""
    try:
        return json.loads((model / "trainer_state.json").read_text()).get("global_step")
    except (OSError, ValueError, AttributeError):
        return None


def model_identity(model: Path) -> dict:
    """Which model a folder holds: its step and a digest of its weight files (None for each where there is none,
    as for a Hub id). An evaluation summary records it, so that a summary found beside a model can be checked."""
    files = sorted({f for pattern in WEIGHT_FILES for f in model.glob(pattern)}) if model.is_dir() else []
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            digest.update(f.name.encode() + hashlib.file_digest(fh, "sha256").digest())
    return {"step": trained_step(model), "digest": digest.hexdigest() if files else None}


def stale_evaluation(summary: Path, model: Path) -> str | None:
    """Why `summary` is not the evaluation of the model now in `model`, or None when it is."""
    try:
        recorded = json.loads(summary.read_text()).get("model")
    except FileNotFoundError:
        return "it has none yet"
    except (OSError, ValueError, AttributeError):
        return f"{summary} cannot be read"
    if not isinstance(recorded, dict) or not recorded.get("digest"):
        return f"{summary} does not name the model it evaluated"
    now = model_identity(model)
    if (recorded.get("step"), recorded["digest"]) != (now["step"], now["digest"]):
        return f"{summary} evaluated another model (step {recorded.get('step')}; this one: step {now['step']})"
    return None


def retire_evaluations(final_dir: Path) -> list[Path]:
    """Remove the evaluation of the model in `final_dir` (beside it, where the trainer writes it, and in its eval/,
    evaluate.py's default) before another model takes its place. Returns the files removed."""
    gone = [f for folder in (final_dir.parent, final_dir / "eval") for f in (folder / n for n in EVAL_FILES)
            if f.is_file()]
    for f in gone:
        f.unlink()
    return gone


def final_model_from(ckpt: Path, final_dir: Path) -> None:
    """Make `final_dir` the model of `ckpt`, as the trainer saves it (the checkpoint less its optimizer, scheduler and
    RNG state): copied under another name, then renamed into place, so that a kill leaves the old one or the new."""
    tmp = final_dir.with_name(f"{final_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ckpt, tmp, ignore=shutil.ignore_patterns("optimizer*", "scheduler.pt", "scaler.pt", "rng_state*",
                                                              "global_step*"))
    if final_dir.exists():
        shutil.rmtree(final_dir)
    tmp.rename(final_dir)


def write_atomic(path: Path, text: str) -> None:
    """Write a file whole or not at all: under a name of this process's own, then renamed over the old one."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------------------- helpers
def _flat(d, prefix: str = "") -> dict:
    """{"training": {"seed": 1}} -> {"training.seed": 1}: the sections' keys, one level down."""
    if not isinstance(d, dict):
        return {}
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict) and prefix == "":
            flat.update(_flat(v, f"{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _same(a, b) -> bool:
    """Equal values; two spellings of one existing path (~/x and /home/me/x) count as equal."""
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str):
        pa, pb = resolve_path(a), resolve_path(b)
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    return False


def checkpoint_step(ckpt: Path) -> int:
    m = CHECKPOINT.match(ckpt.name)
    return int(m.group(1)) if m else 0
