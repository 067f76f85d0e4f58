"""Model and tokenizer loading: Hub id or local folder, GGUF converted once to a regular folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from train.config import ConfigError, ModelConfig, resolve_path


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def inference_dtype(name: str) -> str:
    """Generation needs no float32 master weights: bf16 on GPU, float32 on CPU where bf16 matmuls are slow."""
    return "bfloat16" if has_gpu() else "float32"


def check_model_source(cfg: ModelConfig) -> None:
    """Fail before anything is loaded when the model cannot be found (a typo, or offline with no cache)."""
    path = resolve_path(cfg.name_or_path)
    if path.is_dir():
        if cfg.gguf_file and not (path / cfg.gguf_file).is_file():
            raise ConfigError(f"model.gguf_file: {path / cfg.gguf_file} not found (list the folder for the .gguf)")
        if cfg.gguf_file and not (converted(cfg) / "config.json").is_file():  # written there after minutes of work
            from train.checkpoints import check_writable

            check_writable(converted(cfg), "model.cache_dir")
        if not cfg.gguf_file and not (path / "config.json").is_file():
            raise ConfigError(f"model.name_or_path: {path} has no config.json (is it a model folder? "
                              "for a GGUF file set model.gguf_file)")
        return
    looks_local = cfg.name_or_path.startswith((".", "/", "~")) or cfg.name_or_path.count("/") != 1
    if looks_local:
        raise ConfigError(f"model.name_or_path: folder {path} not found (give a local model folder or a Hub id)")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(cfg.name_or_path, "config.json"), str):
            raise ConfigError(f"model.name_or_path: {cfg.name_or_path} is not in the Hub cache and HF_HUB_OFFLINE=1"
                              " (download it first or point to a local folder)")


def check_tokenizer(path: Path, key: str) -> None:
    """A model folder must hold the tokenizer it was trained with: a checkpoint copied without it would fail
    only after the data is prepared, deep inside transformers."""
    try:
        load_tokenizer(str(path))
    except Exception as e:  # transformers fails in many types (ValueError, OSError, TypeError) for one reason
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(": ")
        raise ConfigError(f"{key}: {path} holds no tokenizer that loads ({why}); copy the tokenizer files "
                          "(tokenizer.json, tokenizer_config.json, ...) of the model it came from into it") from None


def materialize(cfg: ModelConfig) -> str:
    """A local or Hub path that vLLM and transformers both load: a GGUF is converted once into the cache."""
    path = resolve_path(cfg.name_or_path)
    if not cfg.gguf_file:
        return str(path) if path.is_dir() else cfg.name_or_path
    out = converted(cfg)
    if (out / "config.json").is_file():
        return str(out)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[model] converting {path / cfg.gguf_file} -> {out} (once)", flush=True)
    tok = AutoTokenizer.from_pretrained(path, gguf_file=cfg.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=cfg.gguf_file, dtype=torch.bfloat16)
    # GGUF metadata can disagree with the model's generation config (SmolLM2: eos read as <|im_start|>);
    # the generation config is what the model was trained to emit, so the tokenizer follows it.
    eos = next(iter(eos_token_ids(model)), None)
    if eos is not None and eos != tok.eos_token_id:
        tok.eos_token = tok.convert_ids_to_tokens(eos)
    if model.generation_config.pad_token_id is not None:
        tok.pad_token = tok.convert_ids_to_tokens(model.generation_config.pad_token_id)
    tok.clean_up_tokenization_spaces = False  # destructive for BPE tokenizers
    # The weights are already dequantized; drop the GGUF marker so that transformers saves a plain folder.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Written under a name of this process's own, then renamed: a crash never leaves a half folder that looks
    # complete, and two processes converting at once (ranks, or an evaluation beside a training) never mix files.
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    publish(tmp, out)
    return str(out)


def converted(cfg: ModelConfig) -> Path:
    """Where a GGUF model's regular folder is kept: model.cache_dir/models/<the file's name>."""
    return Path(cfg.cache_dir).expanduser() / "models" / Path(cfg.gguf_file).stem


def publish(tmp: Path, out: Path) -> None:
    """Rename a finished model folder into place; if another process got there first, keep theirs."""
    try:
        tmp.rename(out)
    except OSError:
        if not (out / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def eos_token_ids(model) -> list[int]:
    """The model's generation-config EOS ids as a list (configs hold None, an int or a list)."""
    eos = model.generation_config.eos_token_id
    return [] if eos is None else list(eos) if isinstance(eos, list | tuple) else [eos]


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # decoder-only batched generation
    return tok


def load_policy(path: str, dtype_name: str):
    """The policy in the configured dtype (TRL would load float32 unless told otherwise)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype_name))
