"""Typed configuration: one schema, filled from YAML, checked before any model is loaded.

Every key of `config/grpo_config.yaml` is a field below; an unknown or mistyped key, a wrong type or an
impossible batch stops the run with a `ConfigError` naming the key, the file and the fix. The trainer
turns that into a one-line message and exit code 2.

>>> cfg = load_config("config/grpo_config.yaml", ["grpo.group_size=4"])
>>> cfg.grpo.group_size
4
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """A mistake in the user's configuration: reported as one line, exit code 2."""


@dataclass
class ModelConfig:
    """The policy model: where its weights come from and in what precision they are trained."""

    name_or_path: str = "Qwen/Qwen2.5-Math-1.5B"  # Hub id or local model folder
    # a .gguf file inside name_or_path: converted once into cache_dir/models/, so that vLLM and the trainer load
    # the same regular folder
    gguf_file: str | None = None
    # Weights and optimizer state in float32, compute in bf16 autocast on GPU (TRL's mixed precision; generation
    # serves bf16 either way): with pure bfloat16 weights an AdamW step of lr 1e-5 is below half a bf16 ulp of most
    # weights and is rounded away. float16 is refused: fp16 weights fail at the first optimizer step.
    dtype: str = "float32"
    cache_dir: str = "~/.cache/grpo-math"  # where converted models and downloaded assets are kept


@dataclass
class DataConfig:
    """The problems: where they come from, which columns hold what, the prompt, the held-out split."""

    path: str = "AI-MO/NuminaMath-CoT"  # Hub dataset id, or a local .jsonl/.json/.parquet file
    split: str = "train"  # Hub split to read (ignored for local files)
    problem_column: str = "problem"  # column with the question
    # column with the solution: the gold answer is its last \boxed{} (or the text after '####', GSM8K style); rows
    # without one are dropped and counted
    solution_column: str = "solution"
    source_column: str | None = "source"  # column for the evaluation's per-source breakdown; null = none
    prompt_template: str = "config/prompts/r1_zero.prompt"  # text file with a {question} placeholder
    # render the template as a conversation through the tokenizer's own chat template: the text before its `User:`
    # line is the system message, `{question}` the user's, and the assistant turn opens with the text after
    # `Assistant:` (`<think>`); false = the template's text as it is (base models)
    use_chat_template: bool = False
    max_prompt_tokens: int = 512  # longer training prompts are dropped (and counted), never truncated
    max_train_samples: int | None = None  # cap on training rows after the held-out split (>= 1); null = all
    # rows set aside, seeded, for the final evaluation and never trained on (NuminaMath-CoT's own test split has
    # only 100); drawn after repeated problems are dropped, so no held-out problem is trained on in another row
    eval_holdout: int = 5000


@dataclass
class TrainingConfig:
    """The optimisation: how long, how large a batch, the optimizer."""

    max_steps: int = 200  # optimizer steps; one step = one fresh batch of rollouts (on-policy)
    max_minutes: float | None = None  # stop after this much training time, then save and evaluate; null = no limit
    prompts_per_step: int = 32  # x grpo.group_size = rollouts per step (32 x 8 = 256, the reference recipe)
    micro_batch_size: int = 8  # rollouts per GPU per forward/backward; gradient accumulation covers the rest
    learning_rate: float = 1.0e-5  # AdamW's learning rate
    lr_scheduler_type: str = "constant"  # any transformers scheduler name (constant_with_warmup, cosine, linear, ...)
    # learning-rate warm-up steps (linear from 0); needs a scheduler that has one (not `constant`)
    warmup_steps: int = 0
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    adam_beta1: float = 0.9  # AdamW's first-moment decay
    adam_beta2: float = 0.95  # AdamW's second-moment decay, as in the reference recipe (CS336 GRPO)
    max_grad_norm: float = 1.0  # gradient clipping: a larger global gradient norm is scaled down to this; 0 = none
    optim: str = "adamw_torch_fused"  # any transformers optimizer name; fused AdamW: one kernel for all parameters
    # recompute activations in the backward pass: less memory, but a 512-token step takes ~45% longer (7.46 s
    # on, 5.13 s off, docs/benchmarks.md); off where memory allows
    gradient_checkpointing: bool = True
    seed: int = 42  # seeds the held-out split, the data order, sampling and initialisation (0 to 2**32 - 1)


@dataclass
class PeftSection:
    """LoRA (PEFT): train low-rank adapters on a frozen base model instead of every weight, through TRL's
    GRPOTrainer (`peft_config`); vLLM receives the adapters merged into the weights at each sync. Checkpoints hold
    the adapter and its optimizer state; the run ends with `final_model/` (the adapter merged into the base: what
    evaluate.py and vLLM load) and `final_model_adapter/` (the adapter alone)."""

    enabled: bool = False  # train LoRA adapters (needs peft: pip install -e '.[peft]'); false = every weight
    r: int = 16  # the adapters' rank
    alpha: int = 32  # LoRA alpha: an adapter's update is scaled by alpha / r
    dropout: float = 0.05  # dropout on the adapters' input, in [0, 1)
    # the modules that get adapters: all-linear = every linear layer but the output head, or a list of module names
    # (e.g. [q_proj, k_proj, v_proj, o_proj]); a name the model lacks stops the run before it loads
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class GRPOSection:
    """The GRPO algorithm. TRL changes some of these defaults between versions; they are written out so that an
    upgrade cannot change the algorithm."""

    group_size: int = 8  # completions per prompt (TRL num_generations)
    temperature: float = 1.0  # sampling temperature of the rollouts; > 0: a group needs different completions
    top_p: float = 1.0  # nucleus sampling of the rollouts, in (0, 1]
    max_completion_length: int = 1024  # tokens per completion; generation also stops at `</answer>`
    # how token losses are aggregated; grpo: per-sequence mean, as the reference recipe (TRL's default is dapo)
    loss_type: str = "grpo"
    # divide advantages by the reward std of the group (as the reference recipe), of the batch, or none
    scale_rewards: str = "group"
    beta: float = 0.0  # KL coefficient; 0 = no KL penalty and no reference model (as the reference recipe)
    epsilon: float = 0.2  # PPO clip range; on-policy with num_iterations 1 the ratio is 1
    num_iterations: int = 1  # policy updates per batch of rollouts (1 = on-policy)
    # leave completions that max_completion_length cut out of the loss (a stop at `</answer>` is not a cut)
    mask_truncated_completions: bool = False


@dataclass
class VLLMConfig:
    """Rollout generation with vLLM (on GPU; on a CPU transformers generates)."""

    use_vllm: bool = True  # generate rollouts with vLLM where a GPU is present
    # colocate: vLLM runs inside each training process and shares its GPU; server: the launcher starts
    # `trl vllm-serve` on GPUs of its own and trains on the rest
    mode: str = "colocate"
    # share of each GPU's memory for vLLM's weights + KV cache (server mode: of the server's GPUs); null = colocate:
    # sized from what one step's rollouts need (bf16 weights + the KV cache of every rollout at full length), so
    # the rest of the card goes to training; server: 0.9
    gpu_memory_utilization: float | None = 0.3
    # colocate: offload vLLM weights and KV cache during the policy update (frees the engine's share for training,
    # costs time every step); must be false in server mode, where the server keeps GPUs of its own
    enable_sleep_mode: bool = True
    # reweight the loss by trainer/vLLM probability ratios (TRL's default; the reference recipe has none): costs a
    # forward pass over every rollout, and vLLM's per-token log-probs, which are not computed when this is off
    importance_sampling_correction: bool = True
    tensor_parallel_size: int = 1  # colocate: GPUs per vLLM engine (server mode: vllm.server_gpus instead)
    server_gpus: int = 1  # server mode: the launcher gives the last N GPUs to `trl vllm-serve`, the rest train
    server_port: int = 8000  # server mode: where the launcher's vLLM server listens (localhost)


@dataclass
class EvaluationConfig:
    """The held-out evaluation after training (and, optionally, a periodic one during training)."""

    enabled: bool = True  # final evaluation after training (rank 0)
    max_samples: int | None = None  # cap on held-out problems; null = the whole held-out split
    temperature: float = 1.0  # CS336 protocol: sample at T=1, top_p=1, 1024 tokens; 0 = greedy (needs n = 1)
    top_p: float = 1.0  # nucleus sampling
    max_tokens: int = 1024  # tokens per answer; generation also stops at `</answer>`
    n: int = 1  # samples per problem; >1 adds pass@k and mean@k
    batch_size: int = 64  # prompts per transformers generate() call (CPU path)
    use_vllm: bool = True  # vLLM when installed and a GPU is present, transformers otherwise
    gpu_memory_utilization: float = 0.85  # vLLM share for the final evaluation (trainer memory is freed)
    every_steps: int = 0  # also evaluate during training every N steps (needs data.eval_holdout > 0); 0 = off
    periodic_samples: int = 200  # held-out problems used by the periodic evaluation


@dataclass
class CheckpointingConfig:
    """Resumable checkpoints. Each holds the float32 weights and AdamW's state, 12 bytes per parameter (18 GB for
    1.5B parameters); transformers also writes one at the last step."""

    output_dir: str = "outputs/grpo-qwen2.5-math-1.5b"  # where checkpoints, the final model and the evaluation go
    save_steps: int = 50  # save a resumable checkpoint every N steps
    # checkpoints kept (>= 1; older ones are deleted); the run refuses to start when the disk cannot hold them
    save_total_limit: int = 3
    # auto: continue from the newest complete checkpoint of this run in output_dir (a run with another model,
    # data or hyper-parameters there is refused); never: start over; or a checkpoint folder to continue from
    resume: str = "auto"
    # an output_dir holding another run (or this one, with resume: never): move that run aside to
    # <output_dir>.replaced-<time>/ and start over; nothing is deleted
    overwrite: bool = False


@dataclass
class LoggingConfig:
    """Metrics and experiment tracking."""

    # where the training metrics go: one name or a list of transformers' integrations (wandb, tensorboard, trackio,
    # mlflow, ...), each checked to be installed before the run starts; none = nowhere. The final evaluation logs to
    # wandb, tensorboard and trackio among them (eval_summary.json is always written)
    report_to: list[str] = field(default_factory=lambda: ["wandb"])
    # wandb's mode when report_to lists it. auto: online if WANDB_API_KEY is set, else offline (training then ends
    # with the `wandb sync` command that uploads it); off = no wandb, whatever report_to says
    wandb: str = "auto"
    project: str = "grpo-math"  # wandb and trackio project
    run_name: str | None = None  # the run's name in the trackers; null = theirs
    logging_steps: int = 1  # log metrics every N steps
    log_completions: bool = False  # print a table of sample completions at each logging step


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    peft: PeftSection = field(default_factory=PeftSection)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    checkpointing: CheckpointingConfig = field(default_factory=CheckpointingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # The reward functions and their weights (TRL's reward_weights): `answer` (1 for a correct answer in the r1_zero
    # format, else 0) and `format` (1 for the format alone), built in, and any `module:function` with TRL's
    # reward-function signature `(completions, **kwargs) -> list[float | None]` (the dataset's `solution` and `source`
    # columns arrive as keyword arguments), imported and checked before any model is loaded. A weight of 0 logs the
    # reward's mean without training on it. The default is the reference recipe: the answer reward alone, the format
    # rate logged. A rewards: section in the file replaces this list; rewards.NAME=weight on the command line changes
    # or adds one.
    rewards: dict = field(default_factory=lambda: {"answer": 1.0, "format": 0.0})
    # Any other field of TRL's GRPOConfig, passed through as given, in the YAML or as trl.key=value (e.g.
    # save_only_model: true, checkpoints of the weights alone, which the disk check counts and a run never resumes
    # from; lr_scheduler_kwargs for schedulers that take arguments); checked against GRPOConfig's fields and their
    # types before any model is loaded (an unknown name or a value of another type stops the run with one line), and
    # refused for a field that a section above already sets.
    trl: dict = field(default_factory=dict)


CHOICES = {
    "model.dtype": ("float32", "bfloat16"),
    "grpo.loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"),
    "grpo.scale_rewards": ("group", "batch", "none"),
    "vllm.mode": ("colocate", "server"),
    "logging.wandb": ("auto", "online", "offline", "off"),
}


# ----------------------------------------------------------------------------------------------- loading
class Origin:
    """Where a key's value came from, for the error message: the command-line override that set it, or the file.

    A section is blamed on the override that named it (`trainer.x=1`: the unknown section 'trainer' is the
    override's); an override with spaces around it is quoted, so that the space shows.

    >>> where = Origin("c.yaml", {"training.max_steps": "training.max_steps=0", " grpo.beta": " grpo.beta=0"})
    >>> where("training.max_steps"), where("training"), where(" grpo"), where("grpo.beta")
    ('override training.max_steps=0', 'override training.max_steps=0', "override ' grpo.beta=0'", 'c.yaml')
    """

    def __init__(self, file: str, overrides: dict[str, str] | None = None):
        self.file, self.overrides = file, overrides or {}

    def __call__(self, *keys: str) -> str:
        for k in keys:
            for key, item in self.overrides.items():
                if key == k or key.startswith(f"{k}."):
                    return f"override {item if item == item.strip() else repr(item)}"
        return self.file


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Config:
    """Read `path` (None = all defaults), apply `key.sub=value` overrides, type-check and cross-check. A mistake
    in an override is reported against the override, one in the file against the file."""
    raw: dict = {}
    file = str(path) if path else "<defaults>"
    if path is not None:
        raw = read_config_file(Path(path))
    given: dict[str, str] = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"override {item!r}: write it as section.key=value, e.g. training.max_steps=10")
        section, _, name = key.partition(".")
        try:
            parsed = yaml.safe_load(value) if value != "" else None
        except yaml.YAMLError:
            parsed = value
        # a mapping section the file leaves out starts from its default (rewards.format=0.1 keeps the answer reward)
        raw.setdefault(section, dict(getattr(Config(), section, None) or {}) if section in MAPPINGS else {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{file}: section '{section}' must be a mapping")
        raw[section][name] = parsed
        given[key] = item
    where = Origin(file, given)
    cfg = _build(Config, raw, "", where)
    if cfg.trl:  # TRL is imported only for a config that passes fields through to it
        from train.trl_section import checked_trl

        cfg.trl = checked_trl(cfg.trl, where)
    check(cfg, where)
    return cfg


# the sections that are free mappings rather than fixed keys
MAPPINGS = ("rewards", "trl")


def read_config_file(p: Path) -> dict:
    """The sections of a config file. Refused with the reason: a path that is no file, text that is not YAML, a
    key written twice (YAML keeps the last without a word, so the first section's values would vanish) and a file
    without a single setting (it would silently run the whole default recipe)."""
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "not found"
        raise ConfigError(f"config file {p} {what} (pass --config with an existing YAML file)")
    text = p.read_text()
    try:
        raw = yaml.safe_load(text)
        twice = written_twice(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if raw is None:
        raise ConfigError(f"{p} holds no settings (it is empty or only comments); write the sections to change "
                          "(see config/quickstart.yaml), or pass config/grpo_config.yaml for the full recipe")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections (model:, data:, ...)")
    if twice:
        key, first, second = twice
        raise ConfigError(f"{p}: '{key}' is written twice (lines {first} and {second}); YAML would keep only the "
                          "second: write it once")
    return raw


def written_twice(node, prefix: str = "") -> tuple[str, int, int] | None:
    """The first key that a YAML mapping (or one inside it) holds twice: (dotted key, first line, second line).

    >>> written_twice(yaml.compose("training: {seed: 1}\\ngrpo: {}\\ntraining: {seed: 2}"))
    ('training', 1, 3)
    """
    if not isinstance(node, yaml.MappingNode):
        return None
    seen: dict[str, int] = {}
    for key, value in node.value:
        name = f"{prefix}{key.value}"
        if name in seen:
            return name, seen[name], key.start_mark.line + 1
        seen[name] = key.start_mark.line + 1
        if found := written_twice(value, f"{name}."):
            return found
    return None


# keys that live in another section than a config might put them: the original recipe's README documents the
# output folder as checkpointing.output_dir, which is where it is; the older training.output_dir is refused
MOVED = {"training.output_dir": "checkpointing.output_dir"}


def _build(cls, raw: dict, prefix: str, where: Origin):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (known: {', '.join(fields)})"
            if f"{prefix}{key}" in MOVED:
                hint = f" (did you mean '{MOVED[f'{prefix}{key}']}'? the key lives there)"
            raise ConfigError(f"{where(f'{prefix}{key}')}: unknown key '{prefix}{key}'{hint}")
    kwargs = {}
    for name, value in raw.items():
        tp = hints[name]
        if tp is dict:
            if not isinstance(value, dict | None):
                raise ConfigError(f"{where(prefix + name)}: '{prefix}{name}' must be a section (a mapping of keys)")
            kwargs[name] = dict(value or {})
        elif dataclasses.is_dataclass(tp):
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{where(prefix + name)}: '{prefix}{name}' must be a section (a mapping of keys)")
            kwargs[name] = _build(tp, value, f"{prefix}{name}.", where)
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}", where(prefix + name))
    return cls(**kwargs)


def _coerce(value, tp, key: str, where: str):
    if typing.get_origin(tp) is list:  # a list of names; one name alone is a list of one
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{where}: '{key}' must be a name or a list of names, got {value!r}")
        return list(names)
    args = typing.get_args(tp)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), tp) if isinstance(tp, types.UnionType) else tp
    if base is str and isinstance(value, bool) and key in CHOICES:
        value = "on" if value else "off"  # YAML 1.1 reads a bare `off` as false; the user meant the word
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: '{key}' must not be empty (expected {_tname(base)})")
    if base is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-5 (no dot) as a string; Python reads it as the number it is
            value = float(value)
        except ValueError:
            pass
    ok = (
        (base is bool and isinstance(value, bool))
        or (base is int and isinstance(value, int) and not isinstance(value, bool))
        or (base is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (base is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{where}: '{key}' must be {_tname(base)}, got {value!r} ({type(value).__name__})")
    if base is float and not math.isfinite(value):
        raise ConfigError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value) if base is float else value


def _tname(tp) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


# ------------------------------------------------------------------------------------------ value checks
def _at_least(low):
    return lambda v: v >= low, f"at least {low}"


def _optional(test_what, null: str):
    test, what = test_what
    return lambda v: v is None or test(v), f"{what}, or null ({null})"


_SHARE = (lambda v: 0.0 < v < 1.0, "between 0 and 1")
_TOP_P = (lambda v: 0.0 < v <= 1.0, "in (0, 1]")
_POSITIVE = (lambda v: v > 0, "positive")

# key -> (valid?, what a valid value is): the range of every numeric key, checked before anything is loaded
RANGES = {
    "data.max_prompt_tokens": _at_least(1),
    "data.max_train_samples": _optional(_at_least(1), "every row not held out"),
    "data.eval_holdout": _at_least(0),
    "training.max_steps": _at_least(1),
    "training.max_minutes": _optional(_POSITIVE, "no time limit"),
    "training.prompts_per_step": _at_least(1),
    "training.micro_batch_size": _at_least(1),
    "training.learning_rate": _POSITIVE,
    "training.warmup_steps": _at_least(0),
    "training.weight_decay": _at_least(0),
    "training.adam_beta1": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "training.adam_beta2": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "training.max_grad_norm": (lambda v: v >= 0, "at least 0 (0 = no clipping)"),
    "training.seed": (lambda v: 0 <= v < 2**32, "in 0 .. 2**32 - 1"),
    "grpo.group_size": (lambda v: v >= 2, "at least 2 (advantages compare completions of the same prompt)"),
    "grpo.temperature": (lambda v: v > 0, "positive (the completions of a group must differ)"),
    "grpo.top_p": _TOP_P,
    "grpo.max_completion_length": _at_least(1),
    "grpo.beta": _at_least(0),
    "grpo.epsilon": _POSITIVE,
    "grpo.num_iterations": _at_least(1),
    "peft.r": _at_least(1),
    "peft.alpha": _at_least(1),
    "peft.dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "vllm.gpu_memory_utilization": _optional(_SHARE, "sized from the batch"),
    "vllm.tensor_parallel_size": _at_least(1),
    "vllm.server_gpus": _at_least(1),
    "vllm.server_port": (lambda v: 1 <= v <= 65535, "a port, 1 .. 65535"),
    "evaluation.max_samples": _optional(_at_least(1), "the whole held-out split"),
    "evaluation.temperature": (lambda v: v >= 0, "at least 0 (0 = greedy)"),
    "evaluation.top_p": _TOP_P,
    "evaluation.max_tokens": _at_least(1),
    "evaluation.n": _at_least(1),
    "evaluation.batch_size": _at_least(1),
    "evaluation.gpu_memory_utilization": _SHARE,
    "evaluation.every_steps": (lambda v: v >= 0, "at least 0 (0 = off)"),
    "evaluation.periodic_samples": _at_least(1),
    "checkpointing.save_steps": _at_least(1),
    "checkpointing.save_total_limit": _at_least(1),
    "logging.logging_steps": _at_least(1),
}

# Schedulers that take no warmup: transformers ignores warmup_steps with them
NO_WARMUP = {"constant": "constant_with_warmup", "reduce_lr_on_plateau": None, "greedy": None}


def value(cfg: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def check(cfg: Config, where: Origin | str = "<config>") -> None:
    """Value and cross-field checks that need no model, data or GPU."""
    where = Origin(where) if isinstance(where, str) else where
    if cfg.model.dtype == "float16":
        raise ConfigError(f"{where('model.dtype')}: 'model.dtype' float16 cannot be trained (fp16 weights under a "
                          "gradient scaler fail at the first optimizer step); use float32 (bf16 autocast on GPU) or "
                          "bfloat16")
    for key, allowed in CHOICES.items():
        if value(cfg, key) not in allowed:
            raise ConfigError(f"{where(key)}: '{key}' is {value(cfg, key)!r}; choose one of {', '.join(allowed)}")
    for key, (valid, what) in RANGES.items():
        if not valid(value(cfg, key)):
            raise ConfigError(f"{where(key)}: '{key}' must be {what}, got {value(cfg, key)!r}")
    t, ev, v = cfg.training, cfg.evaluation, cfg.vllm
    if t.warmup_steps and t.lr_scheduler_type in NO_WARMUP:
        instead = NO_WARMUP[t.lr_scheduler_type]
        fix = f"use training.lr_scheduler_type={instead}" if instead else "pick a scheduler with warmup"
        raise ConfigError(f"{where('training.warmup_steps', 'training.lr_scheduler_type')}: "
                          f"'training.warmup_steps' is {t.warmup_steps} but the '{t.lr_scheduler_type}' scheduler has "
                          f"no warmup (transformers would ignore it): {fix}, or set warmup_steps=0")
    for key in ("evaluation.enabled", "evaluation.every_steps"):
        if value(cfg, key) and cfg.data.eval_holdout == 0:
            raise ConfigError(f"{where(key, 'data.eval_holdout')}: '{key}' needs held-out rows: set "
                              f"data.eval_holdout > 0, or {key}={'false' if key.endswith('enabled') else 0}")
    if ev.n > 1 and ev.temperature == 0:
        raise ConfigError(f"{where('evaluation.n', 'evaluation.temperature')}: 'evaluation.n' is {ev.n} with "
                          "evaluation.temperature=0: greedy decoding gives the same answer n times; set n=1 or a "
                          "temperature > 0")
    check_optimizer_and_scheduler(cfg, where)
    check_reward_weights(cfg, where)
    if v.use_vllm and v.mode == "server":
        if v.enable_sleep_mode:
            raise ConfigError(f"{where('vllm.enable_sleep_mode', 'vllm.mode')}: 'vllm.enable_sleep_mode' applies "
                              "to colocate mode (vLLM sharing the training GPUs); the vLLM server keeps GPUs of its "
                              "own: set vllm.enable_sleep_mode=false")
        if v.tensor_parallel_size != 1:
            raise ConfigError(f"{where('vllm.tensor_parallel_size', 'vllm.mode')}: 'vllm.tensor_parallel_size' "
                              "applies to colocate mode; the vLLM server spans vllm.server_gpus GPUs: set "
                              f"vllm.server_gpus={v.tensor_parallel_size} and vllm.tensor_parallel_size=1")


def check_reward_weights(cfg: Config, where: Origin) -> None:
    """Each reward's weight is a number, and one at least is not 0 (else nothing trains). The functions themselves
    are imported and checked by train.reward_funcs."""
    if not cfg.rewards:
        raise ConfigError(f"{where('rewards')}: 'rewards' lists no reward function; e.g. rewards: {{answer: 1.0}}")
    for name, weight in cfg.rewards.items():
        key = f"rewards.{name}"
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise ConfigError(f"{where(key)}: '{key}' must be a weight (a finite number), got {weight!r}")
        cfg.rewards[name] = float(weight)
    if not any(cfg.rewards.values()):
        raise ConfigError(f"{where('rewards')}: every reward has weight 0, so nothing would train; give one a weight "
                          "(the reference recipe: rewards.answer=1)")


def check_optimizer_and_scheduler(cfg: Config, where: Origin) -> None:
    """training.optim and training.lr_scheduler_type must be names transformers knows, usable here (an optimizer's
    package installed, a scheduler's arguments given through trl.lr_scheduler_kwargs), and a scheduler that
    steps on an evaluation metric needs the periodic evaluation."""
    from types import SimpleNamespace

    import torch
    from transformers import Trainer, get_scheduler
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    t = cfg.training
    for key, names in (("training.optim", OptimizerNames), ("training.lr_scheduler_type", SchedulerType)):
        known = [n.value for n in names]
        if value(cfg, key) not in known:
            close = [n for n in known if n.startswith(value(cfg, key))] or difflib.get_close_matches(
                value(cfg, key), known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"{where(key)}: '{key}' is {value(cfg, key)!r}, which transformers does not know "
                              f"({hint})")
    args = SimpleNamespace(**{"optim_args": None, "adam_epsilon": 1e-8, "optim_target_modules": None, **cfg.trl,
                              "optim": t.optim, "learning_rate": t.learning_rate, "adam_beta1": t.adam_beta1,
                              "adam_beta2": t.adam_beta2, "weight_decay": t.weight_decay})
    try:
        Trainer.get_optimizer_cls_and_kwargs(args)
    except (ImportError, ValueError) as e:  # a package the optimizer needs is missing
        raise ConfigError(f"{where('training.optim')}: 'training.optim' {t.optim} cannot be used here: "
                          f"{_first_line(e)}") from None
    except AttributeError:  # GaLore, APOLLO, LOMO read the model itself: the trainer checks them when it builds them
        pass
    if t.lr_scheduler_type in ("reduce_lr_on_plateau", "greedy") and cfg.evaluation.every_steps == 0:
        raise ConfigError(f"{where('training.lr_scheduler_type')}: the '{t.lr_scheduler_type}' scheduler steps on "
                          "the periodic evaluation's loss: set evaluation.every_steps > 0, or pick another scheduler")
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    try:  # built once on a stand-in optimizer: a missing scheduler argument fails here, not after the model loads
        get_scheduler(t.lr_scheduler_type, dummy, num_warmup_steps=t.warmup_steps, num_training_steps=t.max_steps,
                      scheduler_specific_kwargs=dict(cfg.trl.get("lr_scheduler_kwargs") or {}))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where('training.lr_scheduler_type', 'trl.lr_scheduler_kwargs')}: the "
                          f"'{t.lr_scheduler_type}' scheduler cannot be built: {_first_line(e)} (scheduler arguments "
                          "go in trl.lr_scheduler_kwargs)") from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def max_model_len(cfg: Config) -> int:
    """The rollout engine's context (colocated or the launcher's server): the longest training prompt plus a full
    completion."""
    return cfg.data.max_prompt_tokens + cfg.grpo.max_completion_length


@dataclass(frozen=True)
class BatchPlan:
    """TRL's batch arguments, derived from the way a user states the batch."""

    rollouts_per_step: int  # prompts_per_step x group_size, over all GPUs
    per_device_rollouts: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    steps_per_generation: int


def plan_batch(cfg: Config, world_size: int) -> BatchPlan:
    """Derive TRL's per-device batch / accumulation / generation steps; fail with the fix when they don't divide.

    One optimizer step consumes exactly one generation batch of `prompts_per_step x group_size` rollouts, so
    the run is on-policy like the reference recipe.

    >>> cfg = Config(); cfg.training.prompts_per_step, cfg.grpo.group_size, cfg.training.micro_batch_size
    (32, 8, 8)
    >>> plan_batch(cfg, world_size=2).gradient_accumulation_steps
    16
    """
    t, g = cfg.training, cfg.grpo
    tp = cfg.vllm.tensor_parallel_size
    if cfg.vllm.use_vllm and cfg.vllm.mode == "colocate" and world_size % tp:
        raise ConfigError(f"vllm.tensor_parallel_size={tp} does not divide the {world_size} training processes: "
                          f"each colocated vLLM engine spans {tp} of them; pick a divisor of {world_size}")
    rollouts = t.prompts_per_step * g.group_size
    if rollouts % world_size:
        raise ConfigError(
            f"rollouts per step ({t.prompts_per_step} prompts x {g.group_size} = {rollouts}) do not split over "
            f"{world_size} GPUs: make training.prompts_per_step x grpo.group_size a multiple of {world_size}"
        )
    per_device = rollouts // world_size
    micro = min(t.micro_batch_size, per_device)
    if per_device % micro:
        raise ConfigError(
            f"each GPU gets {per_device} rollouts per step, not a multiple of training.micro_batch_size={micro}: "
            f"pick a micro_batch_size that divides {per_device}"
        )
    accum = per_device // micro
    return BatchPlan(rollouts, per_device, micro, accum, accum)


# ---------------------------------------------------------------------------------------------- helpers
def resolve_path(value: str) -> Path:
    """A path from the config: as given if it exists (relative to the current directory), else relative to
    the project root, so the shipped configs work from any directory."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists():
        return p
    alt = PROJECT_ROOT / p
    return alt if alt.exists() else p


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
