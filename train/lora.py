"""LoRA through PEFT: the `LoraConfig` that TRL's GRPOTrainer wraps the policy with (`peft_config`), checked on the
model's shape before any weight is loaded, and the merged model that the evaluation and vLLM load.

TRL merges the adapters into the weights it sends colocated vLLM at each sync, and saves the adapter alone in
checkpoints and `save_model`. The run then writes `final_model/` (the base with the adapter merged in, a plain model
folder) beside `final_model_adapter/`.

>>> from train.config import PeftSection
>>> lora_config(PeftSection(enabled=True, r=8)).target_modules
'all-linear'
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from train.config import Config, ConfigError, PeftSection, resolve_path
from train.config import _first_line as first_line

ADAPTER_DIR = "final_model_adapter"  # beside final_model/ in checkpointing.output_dir


def lora_config(section: PeftSection):
    """peft.LoraConfig for the section, or None when LoRA is off."""
    if not section.enabled:
        return None
    from peft import LoraConfig

    targets = section.target_modules
    return LoraConfig(r=section.r, lora_alpha=section.alpha, lora_dropout=section.dropout, task_type="CAUSAL_LM",
                      target_modules="all-linear" if targets == ["all-linear"] else list(targets))


def check_lora(cfg: Config, model_path: str) -> int | None:
    """The adapters' parameter count, found by wrapping the model built on the meta device (no weights read), or None
    without LoRA. peft missing, or a target module the model does not have: ConfigError."""
    if not cfg.peft.enabled:
        return None
    if importlib.util.find_spec("peft") is None:
        raise ConfigError("peft.enabled is true but peft is not installed: pip install -e '.[peft]'")
    import torch
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    try:
        wrapped = get_peft_model(model, lora_config(cfg.peft))
    except ValueError as e:
        raise ConfigError(f"peft.target_modules {cfg.peft.target_modules}: {first_line(e)} (modules of this model: "
                          f"{', '.join(linear_names(model)) or 'none'})") from None
    return sum(p.numel() for p in wrapped.parameters() if p.requires_grad)


def linear_names(model) -> list[str]:
    """The distinct names of the model's linear layers (what target_modules can name)."""
    import torch

    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


def is_adapter(path: Path) -> bool:
    """A folder holding a PEFT adapter and no model of its own (a LoRA run's checkpoint-N, final_model_adapter/)."""
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def merge_adapter(adapter_dir: Path, out_dir: Path, dtype: str, base: str | None = None,
                  generation_config=None) -> Path:
    """Load the base model (`base`, else the one the adapter names) in `dtype`, merge the adapter into its weights and
    save the result with the adapter's tokenizer as a plain model folder in `out_dir`. Runs on the CPU, after the
    trainer's GPU memory is freed; `generation_config` is the one training used (its EOS ids)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from train.models import load_policy

    base = base or json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(load_policy(str(resolve_path(base)), dtype), str(adapter_dir)).merge_and_unload()
    if generation_config is not None:
        model.generation_config = generation_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(out_dir)
    return out_dir
