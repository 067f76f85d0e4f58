"""The output folder before training: is it a folder this run can write, does it hold this run or another, which
checkpoint does the run continue from, and does the disk hold what the run will write.

Decided on every process from what is on disk, before any model is loaded; only rank 0 then changes files
(`move_aside`). A checkpoint counts only when it is complete: transformers writes `trainer_state.json` last, so
a save cut short by a kill has none, or has a weights file shorter than its own header says.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
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
# What the project writes into output_dir without a training run: `evaluate.py --model base` (README's first step)
NOT_A_RUN = ("eval_base",)
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclasses.dataclass
class OutputPlan:
    resume_from: str | None = None
    previous: str | None = None  # the complete checkpoint before resume_from, named if resume_from fails to load
    move_aside: bool = False  # overwrite: rank 0 moves the folder's run to <output_dir>.replaced-<time>/ first
    notes: list[str] = dataclasses.field(default_factory=list)  # what was skipped and why, logged by rank 0


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
    """Fresh start, continue, or move another run aside; a ConfigError names the folder and the fix otherwise."""
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
        older = [c for c in complete_checkpoints(path.parent)[0] if _step(c) < _step(path)]
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
        if ck.overwrite:
            return OutputPlan(move_aside=True)
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
        return OutputPlan(move_aside=True)
    raise ConfigError(f"checkpointing.output_dir: {out} holds this run's checkpoints and checkpointing.resume is "
                      "never; continue it with checkpointing.resume=auto, or set checkpointing.overwrite=true to "
                      "move it aside and start over")


def differences(out: Path, cfg: Config) -> list[str]:
    """The keys in which the run recorded in `out` (its resolved_config.yaml) differs from `cfg`, except those a
    continued run may change. A key only one side knows (another version of the schema) is not a difference."""
    try:
        theirs = _flat(yaml.safe_load((out / "resolved_config.yaml").read_text()))
    except (FileNotFoundError, yaml.YAMLError):
        return []  # checkpoints without a readable record: nothing to tell the runs apart by
    ours = _flat(to_dict(cfg))
    return [f"{k}: {theirs[k]!r} there, {ours[k]!r} here" for k in ours
            if k in theirs and not k.startswith(MAY_CHANGE) and not _same(theirs[k], ours[k])]


def move_aside(out: Path) -> Path:
    """Rename the folder holding another run to <output_dir>.replaced-<time> and start an empty one (rank 0)."""
    dest = out.with_name(f"{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        out.rename(dest)
    except OSError as e:
        raise ConfigError(f"checkpointing.output_dir: could not move {out} aside to {dest} ({e.strerror}); move or "
                          "delete it yourself, or choose another output_dir") from None
    out.mkdir()
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


# ----------------------------------------------------------------------------------------------------- disk
def checkpoint_bytes(params: int, dtype: str, weights_only: bool) -> int:
    """Bytes of one checkpoint: the weights, plus AdamW's two moments (kept in the weights' dtype).

    >>> checkpoint_bytes(1_500_000_000, "float32", weights_only=False) / 1e9  # the 1.5B recipe
    18.0
    """
    return params * {"float32": 4, "bfloat16": 2}[dtype] * (1 if weights_only else 3)


def saves_left(save_steps: int, max_steps: int, done: int) -> int:
    """Checkpoints still to write: every save_steps, and at the last step.

    >>> saves_left(50, 200, 0), saves_left(50, 120, 100), saves_left(2, 4, 4)
    (4, 1, 0)
    """
    return len({*range(save_steps, max_steps + 1, save_steps), max_steps} - set(range(done + 1)))


def check_disk(cfg: Config, model_path: str, plan: OutputPlan, adapter_params: int | None = None) -> None:
    """The disk under output_dir must hold the checkpoints the run will keep at once plus the final model. With LoRA
    (`adapter_params`), a checkpoint holds the float32 adapter and its AdamW state, the final model the merged weights
    and the adapter."""
    out = Path(cfg.checkpointing.output_dir).expanduser()
    params = parameter_count(model_path)
    weights_only = bool(cfg.trl.get("save_only_model", False))
    ck = cfg.checkpointing
    done = _step(Path(plan.resume_from)) if plan.resume_from else 0
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


def _step(ckpt: Path) -> int:
    m = CHECKPOINT.match(ckpt.name)
    return int(m.group(1)) if m else 0
