"""Config schema: parsing, overrides, every bad-input case, the derived batch arithmetic."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from train.config import MAPPINGS, RANGES, Config, ConfigError, load_config, plan_batch

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "config").glob("*.yaml"))


def write(tmp_path: Path, data) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_shipped_default_is_the_faithful_recipe():
    cfg = load_config(ROOT / "config/grpo_config.yaml")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-Math-1.5B"
    assert cfg.data.path == "AI-MO/NuminaMath-CoT"
    assert (cfg.training.learning_rate, cfg.grpo.group_size, cfg.grpo.temperature) == (1e-5, 8, 1.0)
    assert (cfg.grpo.max_completion_length, cfg.training.max_steps) == (1024, 200)
    assert (cfg.vllm.use_vllm, cfg.vllm.mode, cfg.vllm.enable_sleep_mode) == (True, "colocate", True)
    assert (cfg.vllm.gpu_memory_utilization, cfg.vllm.importance_sampling_correction) == (0.3, True)
    assert cfg.training.gradient_checkpointing is True


def test_the_quick_start_is_what_the_readme_says():
    """README: CPU generation, 16 held-out problems, one checkpoint without optimizer state, float32, in
    outputs/quickstart, replacing the last run rather than refusing it."""
    from train.checkpoints import saves_left

    cfg = load_config(ROOT / "config/quickstart.yaml")
    assert (cfg.vllm.use_vllm, cfg.evaluation.use_vllm) == (False, False)
    assert cfg.data.eval_holdout == 16 and cfg.evaluation.max_samples is None
    assert saves_left(cfg.checkpointing.save_steps, cfg.training.max_steps, 0) == 1
    assert cfg.trl == {"save_only_model": True} and cfg.model.dtype == "float32"
    assert (cfg.checkpointing.output_dir, cfg.checkpointing.overwrite) == ("outputs/quickstart", True)


def test_relative_paths_are_taken_from_here_or_else_from_the_project_root(tmp_path, monkeypatch):
    """README: the shipped configs work from any folder; a file in the current folder wins over the project's."""
    from train.config import resolve_path

    monkeypatch.chdir(tmp_path)
    assert resolve_path("config/prompts/r1_zero.prompt") == ROOT / "config/prompts/r1_zero.prompt"
    (tmp_path / "config/prompts").mkdir(parents=True)
    (tmp_path / "config/prompts/r1_zero.prompt").write_text("mine: {question}")
    assert resolve_path("config/prompts/r1_zero.prompt").resolve() == tmp_path / "config/prompts/r1_zero.prompt"
    assert resolve_path("no/such/file") == Path("no/such/file")  # named as given in the error


# the sections of fixed keys; rewards and trl (GRPOConfig's other fields, passed through) are free mappings
SECTIONS = [f for f in dataclasses.fields(Config) if f.name not in MAPPINGS]


def test_every_schema_key_is_written_in_the_default_yaml():
    """The YAML documents the whole schema: a key missing there is a key users cannot discover."""
    raw = yaml.safe_load((ROOT / "config/grpo_config.yaml").read_text())
    assert set(raw) == {f.name for f in dataclasses.fields(Config)}
    for section in SECTIONS:
        keys = {f.name for f in dataclasses.fields(getattr(Config(), section.name))}
        assert set(raw[section.name]) == keys, section.name


def test_configuration_reference_is_generated_from_the_schema():
    """docs/configuration.md is what tools/config_reference.py makes of train/config.py, so the two cannot drift:
    after a schema change, run `python tools/config_reference.py`."""
    from tools.config_reference import REFERENCE, render

    assert REFERENCE.read_text() == render(), "docs/configuration.md is stale: run python tools/config_reference.py"


def test_the_list_of_promises_names_tests_that_exist():
    """tests/README.md maps each promise of the README and troubleshooting pages to its tests: a renamed or removed
    test must take its line along."""
    listed = (ROOT / "tests/README.md").read_text()
    named = []
    for cell in re.findall(r"\| ((?:[a-z]+::)?test_\w+(?:, (?:[a-z]+::)?test_\w+)*) \|$", listed, re.M):
        topic = None
        for ref in cell.split(", "):
            topic, _, name = ref.rpartition("::") if "::" in ref else (topic, "", ref)
            named.append((topic, name))
    assert len(named) > 100
    missing = [f"{t}::{n}" for t, n in named
               if not re.search(rf"^def {n}\(", (ROOT / f"tests/test_{t}.py").read_text(), re.M)]
    assert not missing, missing


def test_every_schema_key_is_described_in_the_reference():
    """Each key gets a row with its meaning (a field without a comment would document nothing), and the trl:
    pass-through its own section."""
    from tools.config_reference import render

    rows = {m[1]: m[2] for m in re.finditer(r"^\| `([a-z_]+\.[a-z_0-9]+)` \|.*\| (.*) \|$", render(), re.M)}
    keys = {f"{s.name}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(Config(), s.name))}
    assert set(rows) == keys
    assert all(len(meaning) > 10 for meaning in rows.values()), [k for k, m in rows.items() if len(m) <= 10]
    assert re.search(r"^## trl\n\nAny other field of TRL's GRPOConfig", render(), re.M)


def test_overrides_are_typed_by_yaml():
    cfg = load_config(None, ["training.max_steps=7", "grpo.temperature=0.7", "vllm.use_vllm=false",
                             "data.source_column=null", "logging.run_name=abc"])
    assert (cfg.training.max_steps, cfg.grpo.temperature, cfg.vllm.use_vllm) == (7, 0.7, False)
    assert cfg.data.source_column is None and cfg.logging.run_name == "abc"


def test_bare_off_means_off():
    """YAML reads `wandb: off` as false; the user wrote the word, so it stays the choice 'off'."""
    assert load_config(None, ["logging.wandb=off"]).logging.wandb == "off"


def test_int_is_accepted_for_float():
    assert load_config(None, ["grpo.beta=0"]).grpo.beta == 0.0


# One row per bad-input case: (yaml or overrides, a regex the one-line message must match).
BAD = [
    # a mistyped key names the key and suggests the right one
    ({"training": {"learnig_rate": 1e-5}},
     r"unknown key 'training.learnig_rate'.*did you mean 'training.learning_rate'"),
    # the output folder lives where the original recipe documents it; the older spelling points there
    ({"training": {"output_dir": "out"}},
     r"unknown key 'training.output_dir' \(did you mean 'checkpointing.output_dir'\? the key lives there\)"),
    # an unknown section
    ({"trainer": {}}, r"unknown key 'trainer'"),
    # wrong type: a string where an int is expected
    ({"training": {"max_steps": "ten"}}, r"'training.max_steps' must be an integer"),
    # a bool is not an int even though Python says it is
    ({"grpo": {"group_size": True}}, r"'grpo.group_size' must be an integer"),
    # a section given as a scalar
    ({"model": "Qwen"}, r"'model' must be a section"),
    # a value outside its choices
    ({"grpo": {"loss_type": "ppo"}}, r"'grpo.loss_type' is 'ppo'; choose one of"),
    # group size 1 has no baseline
    ({"grpo": {"group_size": 1}}, r"group_size' must be at least 2"),
    # memory share outside (0, 1)
    ({"vllm": {"gpu_memory_utilization": 1.5}}, r"gpu_memory_utilization' must be between 0 and 1"),
    # an empty required value
    ({"model": {"name_or_path": None}}, r"'model.name_or_path' must not be empty"),
    # evaluation with nothing held out
    ({"data": {"eval_holdout": 0}}, r"evaluation.enabled' needs held-out rows"),
    # a time limit of zero would stop before the first step
    ({"training": {"max_minutes": 0}}, r"'training.max_minutes' must be positive, or null \(no time limit\)"),
    ({"training": {"max_minutes": "ten"}}, r"'training.max_minutes' must be a number"),
    # names transformers does not know, with the nearest one
    ({"training": {"optim": "adamw"}}, r"'training.optim' is 'adamw', which transformers does not know \(did you "
                                       r"mean 'adamw_torch'\?"),
    ({"training": {"lr_scheduler_type": "cosin"}}, r"'training.lr_scheduler_type' is 'cosin', which transformers "
                                                  r"does not know \(did you mean 'cosine'\?"),
    # a scheduler whose required arguments are missing, and where they go
    ({"training": {"lr_scheduler_type": "cosine_with_min_lr"}},
     r"'cosine_with_min_lr' scheduler cannot be built: One of min_lr or min_lr_rate .* trl.lr_scheduler_kwargs"),
    # a scheduler that steps on an evaluation metric, with no periodic evaluation
    ({"training": {"lr_scheduler_type": "reduce_lr_on_plateau"}}, r"set evaluation.every_steps > 0"),
    # warmup with a scheduler that has none: transformers would ignore it silently
    ({"training": {"warmup_steps": 10}},
     r"'constant' scheduler has no warmup .*lr_scheduler_type=constant_with_warmup"),
    # a number that is not one
    ({"training": {"learning_rate": float("inf")}}, r"'training.learning_rate' must be a finite number"),
    # no held-out rows for the periodic evaluation
    ({"data": {"eval_holdout": 0}, "evaluation": {"enabled": False, "every_steps": 5}},
     r"'evaluation.every_steps' needs held-out rows: set data.eval_holdout > 0, or evaluation.every_steps=0"),
    # n greedy samples are one sample n times
    ({"evaluation": {"n": 4, "temperature": 0}}, r"greedy decoding gives the same answer n times"),
    ({"evaluation": {"n": 2, "temperature": 0}}, r"'evaluation.n' is 2 with evaluation.temperature=0"),  # the edge
    # server mode: colocate-only keys cannot reach the server, so they are refused there
    ({"vllm": {"mode": "server", "enable_sleep_mode": True}},
     r"'vllm.enable_sleep_mode' applies to colocate mode.*enable_sleep_mode=false"),
    ({"vllm": {"mode": "server", "enable_sleep_mode": False, "tensor_parallel_size": 2}},
     r"set vllm.server_gpus=2 and vllm.tensor_parallel_size=1"),
    # a cap of zero training rows is a range mistake, not a prompt-length one
    ({"data": {"max_train_samples": 0}}, r"'data.max_train_samples' must be at least 1, or null \(every row not "
                                         r"held out\), got 0"),
]


@pytest.mark.parametrize("data,pattern", BAD, ids=[p[:40] for _, p in BAD])
def test_bad_config_is_one_clear_line(tmp_path, data, pattern):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, data))
    msg = str(e.value)
    assert re.search(pattern, msg), msg
    assert "\n" not in msg and str(tmp_path / "c.yaml") in msg


@pytest.mark.parametrize("text,pattern", [
    ("model: [unclosed", r"line \d+: not valid YAML"),  # a YAML syntax error points at the line
    ("- a\n- b\n", r"top level must be a mapping"),  # a list instead of sections
])
def test_malformed_yaml(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=f"^config file {tmp_path} is a folder"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# training:\n#   max_steps: 3\n", "---\n"])
def test_a_config_without_settings_is_refused(tmp_path, text):
    """An empty file would run the whole default recipe (a 1.5B model for hours) instead of what was meant."""
    with pytest.raises(ConfigError, match=r"c.yaml holds no settings \(it is empty or only comments\)"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("text,message", [
    # a section twice: YAML keeps the second, and the first one's max_steps and learning rate would vanish
    ("training:\n  max_steps: 3\n  learning_rate: 0.1\ngrpo:\n  group_size: 4\ntraining:\n  seed: 1\n",
     "'training' is written twice (lines 1 and 6)"),
    ("training:\n  max_steps: 3\n  max_steps: 30\n", "'training.max_steps' is written twice (lines 2 and 3)"),
    ("trl:\n  lr_scheduler_kwargs: {min_lr: 1, min_lr: 2}\n",
     "'trl.lr_scheduler_kwargs.min_lr' is written twice (lines 2 and 2)"),  # inside a value, on one line
])
def test_a_key_written_twice_is_refused(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert str(e.value) == f"{tmp_path / 'c.yaml'}: {message}; YAML would keep only the second: write it once"


def test_trl_values_are_typed_like_grpo_config():
    """The trl: pass-through takes what GRPOConfig's field types take; a number YAML read as a string is a number."""
    cfg = load_config(None, ["trl.adam_epsilon=1e-6", "trl.save_only_model=true", "trl.report_to=[tensorboard]",
                             "trl.lr_scheduler_kwargs={min_lr: 0.0}", "trl.torch_empty_cache_steps=null"])
    assert cfg.trl["adam_epsilon"] == 1e-6 and isinstance(cfg.trl["adam_epsilon"], float)
    with pytest.raises(ConfigError, match=r"'trl.report_to' must be null or a string or a list, got 3 \(int\)"):
        load_config(None, ["trl.report_to=3"])


# (key, a value out of its range): every numeric key of the schema has one row (see the audit test below)
OUT_OF_RANGE = [
    ("data.max_prompt_tokens", 0), ("data.max_train_samples", 0), ("data.eval_holdout", -1),
    ("training.max_steps", 0), ("training.max_minutes", -1), ("training.prompts_per_step", 0),
    ("training.micro_batch_size", 0), ("training.learning_rate", 0), ("training.warmup_steps", -1),
    ("training.weight_decay", -0.1), ("training.adam_beta1", 1.0), ("training.adam_beta2", -0.5),
    ("training.max_grad_norm", -1), ("training.seed", -1), ("grpo.group_size", 1), ("grpo.temperature", 0),
    ("grpo.top_p", 0), ("grpo.max_completion_length", 0), ("grpo.beta", -0.1), ("grpo.epsilon", 0),
    ("grpo.num_iterations", 0), ("peft.r", 0), ("peft.alpha", 0), ("peft.dropout", 1.0),
    ("vllm.gpu_memory_utilization", 1.0), ("vllm.tensor_parallel_size", 0),
    ("vllm.server_gpus", 0), ("vllm.server_port", 70000), ("evaluation.max_samples", 0),
    ("evaluation.temperature", -0.5), ("evaluation.top_p", 1.5), ("evaluation.max_tokens", 0), ("evaluation.n", 0),
    ("evaluation.batch_size", 0), ("evaluation.gpu_memory_utilization", 0), ("evaluation.every_steps", -1),
    ("evaluation.periodic_samples", 0), ("checkpointing.save_steps", 0), ("checkpointing.save_total_limit", 0),
    ("logging.logging_steps", 0),
]


@pytest.mark.parametrize("key,bad", OUT_OF_RANGE, ids=[k for k, _ in OUT_OF_RANGE])
def test_every_numeric_key_refuses_a_value_out_of_range(tmp_path, key, bad):
    section, name = key.split(".")
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {section: {name: bad}}))
    assert re.search(rf"c.yaml: '{re.escape(key)}' must be .*, got {re.escape(repr(bad))}", str(e.value)), str(e.value)


def test_every_numeric_key_has_a_range():
    """The audit stays complete: a numeric key added to the schema without a range (and a row above) fails here."""
    numeric = {f"{s.name}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(Config(), s.name))
               if typing.get_type_hints(type(getattr(Config(), s.name)))[f.name] in (int, float, int | None,
                                                                                   float | None)}
    assert numeric == set(RANGES) == {k for k, _ in OUT_OF_RANGE}


# (key, a value past the other end of its range): the keys whose range has two ends (OUT_OF_RANGE has the first)
OTHER_END = [
    ("training.adam_beta1", -0.1), ("training.adam_beta2", 1.0), ("training.seed", 2**32), ("grpo.top_p", 1.5),
    ("vllm.gpu_memory_utilization", 0), ("vllm.server_port", 0), ("evaluation.top_p", 0),
    ("evaluation.gpu_memory_utilization", 1.0), ("peft.dropout", 1.0),
]
# (key, the value at an end of its range): accepted, so a range drawn one step too tight fails here
EDGES = [
    ("data.eval_holdout", 0), ("training.warmup_steps", 0), ("training.weight_decay", 0), ("training.adam_beta1", 0),
    ("training.max_grad_norm", 0), ("training.seed", 0), ("training.seed", 2**32 - 1), ("grpo.group_size", 2),
    ("grpo.top_p", 1.0), ("grpo.beta", 0), ("vllm.server_port", 65535), ("evaluation.temperature", 0),
    ("evaluation.top_p", 1.0), ("evaluation.every_steps", 0), ("data.max_train_samples", 1),
]


@pytest.mark.parametrize("key,bad", OTHER_END, ids=[k for k, _ in OTHER_END])
def test_a_two_ended_range_refuses_a_value_past_either_end(tmp_path, key, bad):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}' must be .*, got {re.escape(repr(bad))}"):
        load_config(write(tmp_path, {section: {name: bad}}))


def test_every_two_ended_range_has_a_row_for_each_end():
    """A range stated with two ends ("in (0, 1]", "between 0 and 1", "1 .. 65535") is tested past both."""
    two_ended = {k for k, (_, what) in RANGES.items() if re.search(r"\bin [(\[]|between|\.\.", what)}
    assert two_ended == {k for k, _ in OTHER_END}


@pytest.mark.parametrize("key,edge", EDGES, ids=[f"{k}={v}" for k, v in EDGES])
def test_the_ends_of_a_range_are_accepted(key, edge):
    overrides = [f"{key}={edge}"] + (["evaluation.enabled=false"] if key == "data.eval_holdout" else [])
    assert getattr(getattr(load_config(None, overrides), key.split(".")[0]), key.split(".")[1]) == edge


# (key, its choices): every key that takes one of a few words refuses any other word
CHOICE_KEYS = [
    ("model.dtype", "float32, bfloat16"), ("grpo.loss_type", "grpo, dr_grpo, dapo, bnpo, cispo, sapo"),
    ("grpo.scale_rewards", "group, batch, none"), ("vllm.mode", "colocate, server"),
    ("logging.wandb", "auto, online, offline, off"),
]


@pytest.mark.parametrize("key,choices", CHOICE_KEYS, ids=[k for k, _ in CHOICE_KEYS])
def test_a_word_outside_a_keys_choices_is_refused(tmp_path, key, choices):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}' is 'nonsense'; choose one of {re.escape(choices)}$"):
        load_config(write(tmp_path, {section: {name: "nonsense"}}))
    for choice in choices.split(", "):
        extra = {"vllm": {"mode": "server", "enable_sleep_mode": False}} if choice == "server" else {}
        assert load_config(write(tmp_path, {section: {name: choice}, **extra})) is not None


@pytest.mark.parametrize("file,overrides,blamed", [
    ({}, ["training.max_steps=0"], "override training.max_steps=0: 'training.max_steps' must be at least 1"),
    ({}, ["training.learnig_rate=1"], "override training.learnig_rate=1: unknown key 'training.learnig_rate'"),
    ({}, ["grpo.group_size=two"], "override grpo.group_size=two: 'grpo.group_size' must be an integer"),
    ({}, ["training.optim=adam"], "override training.optim=adam: 'training.optim' is 'adam'"),
    # the override that makes a pair of keys disagree is the one blamed
    ({"training": {"warmup_steps": 5, "lr_scheduler_type": "linear"}}, ["training.lr_scheduler_type=constant"],
     "override training.lr_scheduler_type=constant: 'training.warmup_steps' is 5"),
    # a mistake in the file is the file's, whatever the command line adds
    ({"training": {"max_steps": 0}}, ["training.seed=1"], "c.yaml: 'training.max_steps' must be at least 1"),
    # a section the override names is the override's, and a space pasted before it shows in the message
    ({}, ["trainer.max_steps=1"], "override trainer.max_steps=1: unknown key 'trainer'"),
    ({}, [" training.max_steps=3"], "override ' training.max_steps=3': unknown key ' training' (did you mean "
                                    "'training'?)"),
    # a trl: value of the wrong type, and a scheduler argument of the wrong type, are the override's
    ({}, ["trl.adam_epsilon=abc"], "override trl.adam_epsilon=abc: 'trl.adam_epsilon' must be a number, got 'abc'"),
    ({}, ["trl.lr_scheduler_kwargs=5"], "override trl.lr_scheduler_kwargs=5: 'trl.lr_scheduler_kwargs' must be a "
                                        "mapping or a string or null, got 5 (int)"),
    ({"training": {"lr_scheduler_type": "cosine"}}, ["trl.lr_scheduler_kwargs={nope: 1}"],
     "override trl.lr_scheduler_kwargs={nope: 1}: the 'cosine' scheduler cannot be built"),
    ({"trl": {"max_completion_length": "long"}}, [], "c.yaml: 'trl.max_completion_length' must be an integer or "
                                                     "null, got 'long' (str)"),
])
def test_a_mistake_is_blamed_where_it_was_made(tmp_path, file, overrides, blamed):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, file), overrides)
    msg = str(e.value)
    if blamed.startswith("override"):
        assert msg.startswith(blamed) and str(tmp_path) not in msg, msg
    else:
        assert msg.startswith(str(tmp_path)) and blamed in msg, msg


def test_a_number_written_as_on_the_command_line():
    """YAML 1.1 reads 1e-5 as a string; it is the learning rate users write."""
    assert load_config(None, ["training.learning_rate=2e-5"]).training.learning_rate == 2e-5


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["max_steps=3"])


# (prompts_per_step, group_size, micro_batch, world) -> (per-device batch, grad accumulation)
PLANS = [
    ((32, 8, 8, 1), (8, 32)),  # the reference recipe on one GPU: 256 rollouts in 32 micro-batches
    ((32, 8, 8, 2), (8, 16)),  # two GPUs halve the accumulation, same global batch
    ((32, 8, 8, 4), (8, 8)),
    ((2, 4, 4, 1), (4, 2)),  # the quick start
    ((1, 4, 16, 1), (4, 1)),  # a micro batch larger than the step's rollouts is capped
]


@pytest.mark.parametrize("shape,expected", PLANS, ids=[str(s) for s, _ in PLANS])
def test_batch_plan(shape, expected):
    p, g, m, w = shape
    cfg = load_config(None, [f"training.prompts_per_step={p}", f"grpo.group_size={g}",
                             f"training.micro_batch_size={m}"])
    plan = plan_batch(cfg, w)
    assert (plan.per_device_train_batch_size, plan.gradient_accumulation_steps) == expected
    assert plan.steps_per_generation == plan.gradient_accumulation_steps  # one generation per optimizer step
    assert plan.per_device_train_batch_size * plan.gradient_accumulation_steps * w == p * g


def test_tensor_parallel_must_divide_the_world():
    cfg = load_config(None, ["vllm.tensor_parallel_size=2"])
    assert plan_batch(cfg, 4).per_device_rollouts == 64
    with pytest.raises(ConfigError, match="tensor_parallel_size=2 does not divide the 3 training processes"):
        plan_batch(load_config(None, ["vllm.tensor_parallel_size=2", "training.prompts_per_step=24"]), 3)


@pytest.mark.parametrize("shape,pattern", [
    ((3, 3, 3, 2), r"9\) do not split over 2 GPUs"),  # 9 rollouts cannot split over 2 GPUs
    ((4, 6, 5, 1), r"24 rollouts per step, not a multiple of training.micro_batch_size=5"),
])
def test_batch_plan_errors_name_the_fix(shape, pattern):
    p, g, m, w = shape
    cfg = load_config(None, [f"training.prompts_per_step={p}", f"grpo.group_size={g}",
                             f"training.micro_batch_size={m}"])
    with pytest.raises(ConfigError, match=pattern):
        plan_batch(cfg, w)
