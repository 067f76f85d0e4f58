"""What the entrypoint hands the libraries it drives: the arguments `step3_GRPO/train_trl.py` gives the trainer, the
generation settings vLLM gets for the rollouts (against the evaluation's), and the time limit of the reward TRL calls.

The libraries are replaced by stand-ins that record what they are given and stop the run there: nothing is trained,
and vLLM is never imported (it is not installed on the CPU). The GPU path runs here with the GPU, vLLM and the
GRPOConfig validation played by stand-ins, so a wiring mistake on it fails on the CPU instead of on every GPU run.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.machinery
import sys
import types

import pytest
from trl import GRPOConfig  # the real one: the GPU tests replace it in trl

from step3_GRPO.train_trl import main
from train.config import load_config
from train.protocol import MIN_NEW_TOKENS, STOP

from .test_train import config


class Handed(Exception):
    """The stand-in trainer raises it once it has its arguments: the run ends there."""


@pytest.fixture
def handed(monkeypatch, tmp_path, tiny_model, tiny_data):
    """run(*overrides, gpu=False) -> the keyword arguments the entrypoint gave R1GRPOTrainer. With gpu=True the
    machine has a GPU and vLLM (stand-ins), and `args` is the dict of what the entrypoint gave GRPOConfig."""
    import trl

    import train.generation
    import train.models
    import train.trainer

    got: dict = {}

    class Trainer:
        def __init__(self, *args, **kwargs):
            assert not args, "the entrypoint passes the trainer's arguments by name"
            got.update(kwargs)
            raise Handed

    monkeypatch.setattr(train.trainer, "R1GRPOTrainer", Trainer)

    def run(*overrides: str, gpu: bool = False) -> dict:
        if gpu:
            monkeypatch.setattr(train.models, "has_gpu", lambda: True)
            monkeypatch.setattr(train.generation, "gpu_total_memory", lambda: 80 << 30)  # the engine's share
            vllm = types.ModuleType("vllm")  # found by the entrypoint's "is vllm installed" check, never used
            vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
            monkeypatch.setitem(sys.modules, "vllm", vllm)
            # GRPOConfig refuses bf16 without a GPU: record its arguments instead
            monkeypatch.setattr(trl, "GRPOConfig", lambda **kw: types.SimpleNamespace(**kw))
            overrides = ("vllm.use_vllm=true", *overrides)  # the tests' config turns vLLM off
        cfg = config(tmp_path, tiny_model, tiny_data)
        with pytest.raises(Handed):
            main(["--config", str(cfg), *overrides])
        if gpu:
            got["args"] = vars(got["args"])
        return got

    return run


# ------------------------------------------------------------------------------------- entrypoint -> trainer
@pytest.mark.parametrize("mask", [True, False])
def test_mask_truncated_completions_reaches_the_trainer(handed, mask):
    """grpo.mask_truncated_completions is the subclass's own mask (TRL's counts a stop at </answer> as a cut)."""
    kw = handed(f"grpo.mask_truncated_completions={str(mask).lower()}")
    assert kw["mask_truncated_completions"] is mask
    assert kw["args"].mask_truncated_completions is False  # TRL's mask stays off


def test_the_trainer_gets_the_rewards_the_data_and_the_config(handed):
    from train.rewards_math import answer_reward, format_reward

    kw = handed("grpo.group_size=4", "evaluation.every_steps=2", "evaluation.periodic_samples=3")
    assert kw["reward_funcs"] == [answer_reward, format_reward]
    assert kw["args"].reward_weights == [1.0, 0.0]  # the answer trains; the format rate is only logged
    assert kw["args"].num_generations == 4 and kw["args"].eval_strategy == "steps"
    assert set(kw["train_dataset"].column_names) == {"prompt", "solution", "source"}
    assert len(kw["eval_dataset"]) == 3  # the periodic evaluation: held-out rows, never trained on
    assert not set(kw["eval_dataset"]["prompt"]) & set(kw["train_dataset"]["prompt"])
    assert kw["processing_class"].pad_token is not None


def test_on_the_cpu_transformers_generates_with_the_protocols_stop(handed):
    kw = handed()
    args = kw["args"]
    assert not args.use_vllm and args.use_cpu
    assert args.generation_kwargs == {"stop_strings": [STOP], "min_new_tokens": MIN_NEW_TOKENS}
    # TRL calls generate() without the tokenizer that stop strings need: the entrypoint binds it
    generate = kw["model"].generate
    assert isinstance(generate, functools.partial) and generate.keywords["tokenizer"] is kw["processing_class"]


# ---------------------------------------------------------------------------------- the rollouts' vLLM settings
# What vLLM's SamplingParams does with a key left out (vLLM 0.26); top_k -1 and 0 both mean "off".
VLLM_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0,
                 "presence_penalty": 0.0, "frequency_penalty": 0.0, "stop": None, "stop_token_ids": None,
                 "include_stop_str_in_output": False, "min_tokens": 0, "ignore_eos": False,
                 "skip_special_tokens": True, "spaces_between_special_tokens": True, "bad_words": None,
                 "logit_bias": None, "allowed_token_ids": None, "structured_outputs": None}


def trl_rollout_params(args: dict) -> dict:
    """What TRL 1.16 gives vLLM's SamplingParams for a rollout (trl/generation/vllm_generation.py, colocate and
    server alike): the trainer's sampling fields, then `generation_kwargs` on top. `args` holds what the entrypoint
    gave GRPOConfig; GRPOConfig's defaults fill the rest."""
    a = {f.name: f.default for f in dataclasses.fields(GRPOConfig) if f.init} | args
    return {"n": 1, "repetition_penalty": a["repetition_penalty"], "temperature": a["temperature"], "top_p": a["top_p"],
            "top_k": a["top_k"], "min_p": 0.0 if a["min_p"] is None else a["min_p"],
            "max_tokens": a["max_completion_length"], **(a["generation_kwargs"] or {})}


def eval_params(tmp_path, tiny_model, tiny_data, monkeypatch, *overrides: str) -> dict:
    """The keyword arguments of the evaluation's SamplingParams (train/generation.py), from a stand-in vLLM."""
    import train.generation

    seen: list[dict] = []

    class SamplingParams(dict):
        def __init__(self, **kw):
            super().__init__(kw)
            seen.append(kw)

    class LLM:
        def __init__(self, **kw):
            pass

        def generate(self, prompts, params, use_tqdm=True):
            done = types.SimpleNamespace(text="x </think> <answer> 5 </answer>", token_ids=[1, 2], finish_reason="stop")
            return [types.SimpleNamespace(outputs=[done] * p["n"]) for p in params]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    monkeypatch.setattr(train.generation, "gpu_total_memory", lambda: 80 << 30)
    cfg = load_config(config(tmp_path, tiny_model, tiny_data), list(overrides))
    train.generation.generate_vllm(cfg, str(tiny_model), ["What is 2 + 3? Assistant: <think>"])
    (params,) = seen
    return params


def vllm_output(text: str, params: dict) -> str:
    """The text vLLM returns for a model that writes `text`: cut at the first stop string, which is kept only with
    include_stop_str_in_output."""
    p = VLLM_DEFAULTS | params
    hits = [(text.find(s), s) for s in p["stop"] or [] if s in text]
    if not hits:
        return text
    at, stop = min(hits)
    return text[: at + len(stop)] if p["include_stop_str_in_output"] else text[:at]


def test_vllm_rollouts_keep_the_stop_so_the_format_gate_passes(handed):
    """A rollout that answers in the format is cut at </answer> by vLLM: with the stop kept it earns its reward;
    without it (or without the stop: generation runs on past the answer) every rollout scores 0."""
    from train.rewards_math import answer_reward, format_reward

    kw = handed(gpu=True)
    args = kw["args"]
    assert args["use_vllm"] and args["vllm_mode"] == "colocate" and args["bf16"] and not args["use_cpu"]
    params = trl_rollout_params(args)
    assert params["stop"] == [STOP] and params["include_stop_str_in_output"] is True
    assert params["min_tokens"] == MIN_NEW_TOKENS
    model_writes = "2 and 3 make 5 </think> <answer> 5 </answer> and then more text"
    rollout = vllm_output(model_writes, params)
    assert rollout == "2 and 3 make 5 </think> <answer> 5 </answer>"
    assert format_reward([rollout]) == [1.0] and answer_reward([rollout], ["\\boxed{5}"]) == [1.0]
    assert not isinstance(kw["model"].generate, functools.partial)  # vLLM generates, not model.generate


def test_vllm_rollouts_are_sampled_and_cut_as_the_evaluation_samples(handed, tmp_path, tiny_model, tiny_data,
                                                                      monkeypatch):
    """The reward optimised is the accuracy reported only if the rollouts and the evaluation's samples come from
    one protocol: every key that changes what vLLM samples or where it cuts is the same on both sides (or, where
    one side leaves it out, vLLM's default), apart from temperature and top_p, which each side takes from its own
    section (equal here)."""
    trainer = trl_rollout_params(handed(gpu=True)["args"])
    evaluation = eval_params(tmp_path, tiny_model, tiny_data, monkeypatch)
    assert (evaluation["stop"], evaluation["include_stop_str_in_output"]) == ([STOP], True)

    def setting(side: dict, key: str):
        v = side.get(key, VLLM_DEFAULTS[key])
        return 0 if key == "top_k" and v == -1 else v

    differ = {k: (setting(trainer, k), setting(evaluation, k)) for k in VLLM_DEFAULTS
              if setting(trainer, k) != setting(evaluation, k)}
    assert differ == {}, f"rollouts and evaluation sample differently (rollout, evaluation): {differ}"
    unknown = (set(trainer) | set(evaluation)) - set(VLLM_DEFAULTS) - {"n", "max_tokens", "logprobs", "seed"}
    assert not unknown, f"add {unknown} to VLLM_DEFAULTS with vLLM's default, so that both sides are compared"


def test_the_sampling_sections_reach_their_own_side(handed, tmp_path, tiny_model, tiny_data, monkeypatch):
    """grpo.temperature/top_p sample the rollouts, evaluation.temperature/top_p the evaluation, each alone."""
    trainer = trl_rollout_params(handed("grpo.temperature=0.7", "grpo.top_p=0.9", gpu=True)["args"])
    evaluation = eval_params(tmp_path, tiny_model, tiny_data, monkeypatch, "evaluation.temperature=0.5",
                             "evaluation.top_p=0.8", "grpo.temperature=0.7", "grpo.top_p=0.9")
    assert (trainer["temperature"], trainer["top_p"]) == (0.7, 0.9)
    assert (evaluation["temperature"], evaluation["top_p"]) == (0.5, 0.8)


# -------------------------------------------------------------------------------- the reward TRL calls
def test_the_training_reward_bounds_each_batch_by_its_time_limit(monkeypatch):
    """answer_reward hands its batch time limit (REWARD_BATCH_TIMEOUT_S) to the grader: with a limit already
    spent, no answer is graded; each scores 0 and is logged as a grader timeout. Without the limit these correct
    answers would score 1 (and an answer that sends sympy into its time limit would stall the step)."""
    from train.rewards_math import answer_reward

    scope = answer_reward.__globals__
    assert "REWARD_BATCH_TIMEOUT_S" in scope, "answer_reward's batch time limit was renamed: update this test"
    correct = ["so </think> <answer> 5 </answer>"] * 3
    logged: dict = {}
    assert answer_reward(correct, ["\\boxed{5}"] * 3, log_metric=logged.__setitem__) == [1.0] * 3
    assert logged == {"rewards/grader_timeouts": 0.0}
    monkeypatch.setitem(scope, "REWARD_BATCH_TIMEOUT_S", 0.0)
    assert answer_reward(correct, ["\\boxed{5}"] * 3, log_metric=logged.__setitem__) == [0.0] * 3
    assert logged == {"rewards/grader_timeouts": 3.0}


# ------------------------------------------------------------------------------ every key TRL reads reaches it
# (overrides, GRPOConfig field, the value it must arrive with): one row per project key that TRL reads
TO_TRL = [
    (["training.max_steps=7"], "max_steps", 7),
    (["training.learning_rate=3e-4"], "learning_rate", 3e-4),
    (["training.lr_scheduler_type=linear", "training.warmup_steps=3"], "lr_scheduler_type", "linear"),
    (["training.lr_scheduler_type=linear", "training.warmup_steps=3"], "warmup_steps", 3),
    (["training.weight_decay=0.1"], "weight_decay", 0.1),
    (["training.adam_beta1=0.8"], "adam_beta1", 0.8),
    (["training.adam_beta2=0.99"], "adam_beta2", 0.99),
    (["training.max_grad_norm=0.5"], "max_grad_norm", 0.5),
    (["training.optim=adamw_torch"], "optim", "adamw_torch"),
    (["training.gradient_checkpointing=false"], "gradient_checkpointing", False),
    (["training.seed=5"], "seed", 5),
    (["training.seed=5"], "data_seed", 5),
    (["training.prompts_per_step=4", "grpo.group_size=4", "training.micro_batch_size=2"],
     "per_device_train_batch_size", 2),
    (["training.prompts_per_step=4", "grpo.group_size=4", "training.micro_batch_size=2"],
     "gradient_accumulation_steps", 8),
    (["training.prompts_per_step=4", "grpo.group_size=4", "training.micro_batch_size=2"], "steps_per_generation", 8),
    (["grpo.group_size=4"], "num_generations", 4),
    (["grpo.group_size=4"], "per_device_eval_batch_size", 4),  # the periodic evaluation: one group at a time
    (["grpo.temperature=0.7"], "temperature", 0.7),
    (["grpo.top_p=0.9"], "top_p", 0.9),
    (["grpo.max_completion_length=300"], "max_completion_length", 300),
    (["grpo.loss_type=dr_grpo"], "loss_type", "dr_grpo"),
    (["grpo.scale_rewards=batch"], "scale_rewards", "batch"),
    (["grpo.beta=0.04"], "beta", 0.04),
    (["grpo.epsilon=0.3"], "epsilon", 0.3),
    (["grpo.num_iterations=2"], "num_iterations", 2),
    (["vllm.mode=server", "vllm.enable_sleep_mode=false"], "vllm_mode", "server"),
    (["vllm.gpu_memory_utilization=0.5"], "vllm_gpu_memory_utilization", 0.5),
    (["vllm.enable_sleep_mode=false"], "vllm_enable_sleep_mode", False),
    (["vllm.tensor_parallel_size=2"], "vllm_tensor_parallel_size", 2),
    (["vllm.server_port=8123"], "vllm_server_port", 8123),
    (["vllm.importance_sampling_correction=true"], "vllm_importance_sampling_correction", True),
    # vLLM's context holds the longest prompt trained on and its completion
    (["data.max_prompt_tokens=200", "grpo.max_completion_length=300"], "vllm_max_model_length", 500),
    (["checkpointing.output_dir=/tmp/run-x"], "output_dir", "/tmp/run-x"),
    (["checkpointing.save_steps=5"], "save_steps", 5),
    (["checkpointing.save_total_limit=2"], "save_total_limit", 2),
    (["evaluation.every_steps=4"], "eval_steps", 4),
    (["evaluation.every_steps=4"], "eval_strategy", "steps"),
    (["logging.logging_steps=3"], "logging_steps", 3),
    (["logging.log_completions=true"], "log_completions", True),
    (["logging.run_name=abc"], "run_name", "abc"),
    (["logging.project=abc"], "project", "abc"),
    (["logging.wandb=offline"], "report_to", ["wandb"]),
    (["logging.wandb=off"], "report_to", []),
]
# GRPOConfig fields the entrypoint sets whatever the config says (or from the machine): no row above
FIXED = {"bf16", "use_cpu", "mask_truncated_completions", "generation_kwargs", "reward_weights", "use_vllm",
         "vllm_server_host", "save_strategy", "dataloader_num_workers"}


@pytest.mark.parametrize("overrides,field,expected", TO_TRL, ids=[f"{f}:{' '.join(o)}" for o, f, _ in TO_TRL])
def test_every_key_trl_reads_reaches_grpo_config(overrides, field, expected):
    from step3_GRPO.train_trl import grpo_args
    from train.config import plan_batch

    cfg = load_config("config/quickstart.yaml", overrides)
    args = grpo_args(cfg, plan_batch(cfg, cfg.vllm.tensor_parallel_size), on_gpu=False, eval_rows=8)
    got = getattr(args, field)
    assert getattr(got, "value", got) == expected


def test_every_field_the_entrypoint_sets_has_a_row():
    """A key newly handed to GRPOConfig gets a row in TO_TRL (or in FIXED, when no key of the config sets it)."""
    from step3_GRPO.train_trl import grpo_kwargs
    from train.config import plan_batch

    cfg = load_config("config/quickstart.yaml")
    assert set(grpo_kwargs(cfg, plan_batch(cfg, 1), on_gpu=False, eval_rows=8)) == {f for _, f, _ in TO_TRL} | FIXED


def test_processes_that_did_not_form_one_group_are_refused(monkeypatch, tmp_path, tiny_model, tiny_data, capsys):
    """Two processes launched without a rendezvous (WORLD_SIZE=2, but the trainer's group holds one): each would
    train alone on half the batch; the run stops with the fix instead."""
    import contextlib

    import accelerate
    import trl

    import train.trainer

    class State:  # no process group to join here: the trainer's own count (1) is what the check reads
        def __init__(self, cpu):
            pass

        def local_main_process_first(self):
            return contextlib.nullcontext()

        main_process_first = local_main_process_first

    class Trainer:
        def __init__(self, **kwargs):
            self.accelerator = types.SimpleNamespace(num_processes=1)

        def train(self, **kwargs):
            pytest.fail("trained in a group of 1 while launched as 2")

    monkeypatch.setattr(accelerate, "PartialState", State)
    monkeypatch.setattr(trl, "GRPOConfig", lambda **kw: types.SimpleNamespace(**kw))  # it would join a group too
    monkeypatch.setattr(train.trainer, "R1GRPOTrainer", Trainer)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["--config", str(config(tmp_path, tiny_model, tiny_data))]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the model's loading bar
    assert last == ("error: the 2 processes did not form one group (the trainer sees 1); start them with "
                    "./launch_trl.sh or torchrun")


def test_a_pad_token_that_is_not_eos_also_ends_a_completion(handed, tmp_path, tiny_model):
    """TRL masks a completion after its first EOS, and rows that stopped early are padded: with a pad token other
    than EOS (Qwen's instruct models), the entrypoint adds pad to the model's EOS ids so that padding never trains."""
    import shutil

    from transformers import AutoTokenizer

    model = tmp_path / "pad-model"
    shutil.copytree(tiny_model, model)
    tok = AutoTokenizer.from_pretrained(model)
    tok.pad_token = tok.convert_ids_to_tokens(5)
    tok.save_pretrained(model)
    kw = handed(f"model.name_or_path={model}")
    assert kw["model"].generation_config.eos_token_id == [tok.eos_token_id, 5]
    assert kw["processing_class"].pad_token_id == 5


def test_on_the_cpu_rollouts_and_evaluation_sample_alike(handed, tmp_path, tiny_model, tiny_data, monkeypatch):
    """transformers generates on a CPU, for the rollouts (TRL 1.16 builds its GenerationConfig from the trainer's
    sampling fields and generation_kwargs, trl/trainer/grpo_trainer.py) and for the evaluation: both set every
    sampling key themselves (transformers' own fallback, top_k=50, is not the protocol), and alike."""
    import train.generation
    import train.models

    args = handed()["args"]
    trainer = {"do_sample": True, "temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
               "repetition_penalty": args.repetition_penalty, **args.generation_kwargs}
    seen: dict = {}
    load = train.models.load_policy

    def recording(path, dtype):
        model = load(path, dtype)
        real = model.generate
        model.generate = lambda **kw: seen.update(kw) or real(**kw)
        return model

    monkeypatch.setattr(train.models, "load_policy", recording)
    cfg = load_config(config(tmp_path, tiny_model, tiny_data))
    train.generation.generate_transformers(cfg, str(tiny_model), ["What is 2 + 3? Assistant: <think>"])
    evaluation = {k: seen.get(k, "unset") for k in trainer}
    assert evaluation == trainer == {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                                     "repetition_penalty": 1.0, "stop_strings": [STOP],
                                     "min_new_tokens": MIN_NEW_TOKENS}


@pytest.mark.parametrize("free_gib,share", [(79, "0.850"), (30, "0.325"), (2, "0.050")])
def test_the_final_evaluation_on_a_gpu_asks_vllm_for_what_is_free(monkeypatch, tmp_path, free_gib, share):
    """On a GPU the final evaluation runs evaluate.py in a fresh process with vLLM's share of the card lowered to
    what the trainer left free (vLLM refuses a share larger than the free memory), never below 5%."""
    import subprocess

    import torch

    import train.models
    from step3_GRPO.train_trl import final_evaluation

    ran = []
    monkeypatch.setattr(train.models, "has_gpu", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (free_gib << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(subprocess, "run", lambda cmd, env: ran.append(cmd) or types.SimpleNamespace(returncode=3))
    cfg = load_config("config/quickstart.yaml", ["evaluation.use_vllm=true", "evaluation.gpu_memory_utilization=0.85"])
    assert final_evaluation(cfg, "c.yaml", ["training.seed=1"], tmp_path / "final_model", [], None, []) == 3
    (cmd,) = ran
    assert cmd[-2:] == ["training.seed=1", f"evaluation.gpu_memory_utilization={share}"]


@pytest.mark.parametrize("share", [None, 0.4])
def test_the_colocated_engines_share_is_sized_from_one_gpus_rollouts(handed, tiny_model, share):
    """vllm.gpu_memory_utilization: null gives the engine what one step's rollouts need on this card; a number
    given is passed as it is."""
    from train.generation import colocate_share

    given = [f"vllm.gpu_memory_utilization={'null' if share is None else share}"]
    args = handed("training.prompts_per_step=4", "grpo.group_size=4", "data.max_prompt_tokens=400",
                  "grpo.max_completion_length=28", *given, gpu=True)["args"]
    want = share or colocate_share(str(tiny_model), 16, 428, 80 << 30)
    assert args["vllm_gpu_memory_utilization"] == want and 0 < want < 0.5
