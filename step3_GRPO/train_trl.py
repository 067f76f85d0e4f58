"""GRPO for math reasoning with TRL's GRPOTrainer (vLLM colocate on GPU, transformers generation on CPU).

    ./launch_trl.sh 1                                   # one GPU
    ./launch_trl.sh 2 training.max_steps=100            # two GPUs, vLLM colocated on each; any key overridable
    python step3_GRPO/train_trl.py --config config/quickstart.yaml     # CPU, offline, a few minutes
    grpo-math-train --config config/quickstart.yaml    # the same, from any folder (pip install -e . installs it)

The algorithm, as in the reference recipe (CS336 / Dr. GRPO, r1_zero prompt):
- each step samples `prompts_per_step` problems and `group_size` completions per problem, at temperature 1;
- each completion is scored by `r1_zero_reward_fn`: 1 if it has the `</think> <answer> ... </answer>` format
  and the answer matches the gold answer, else 0 (format only gates, it earns nothing by itself; `rewards:` can
  add others);
- the advantage is the reward minus its group mean, divided by the group std (`scale_rewards: group`);
- one policy-gradient update per batch of rollouts (on-policy, so the PPO ratio is 1), no KL penalty.

Stages: config -> output dir -> data -> model -> rewards -> trainer -> train -> save -> evaluate -> model card.
A mistake in the configuration or the output folder ends the run before any model is loaded, with one line and
exit code 2 (docs/troubleshooting.md lists them).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from train.checkpoints import (
    OutputLock,
    OutputPlan,
    check_disk,
    check_writable,
    move_aside,
    plan_output_dir,
    retire_evaluations,
)
from train.config import (
    BatchPlan,
    Config,
    ConfigError,
    dump_yaml,
    load_config,
    max_model_len,
    plan_batch,
    resolve_path,
)

DEFAULT_CONFIG = "config/grpo_config.yaml"
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
            "ROLE_RANK", "ROLE_WORLD_SIZE", "GROUP_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "ACCELERATE_MIXED_PRECISION")


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description="GRPO training for math reasoning (see config/grpo_config.yaml).")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file (default: %(default)s)")
    ap.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. training.max_steps=10")
    return ap.parse_args(argv)


def log(msg: str) -> None:
    if int(os.environ.get("RANK", 0)) == 0:  # one process speaks
        print(f"[grpo] {msg}", flush=True)


# --------------------------------------------------------------------------------------------- output dir
def same_checkpoint_everywhere(resume_from: str | None) -> None:
    """Every process must resume from the same checkpoint. Machines that do not share checkpointing.output_dir
    would otherwise start from different states: rank 0 from its last checkpoint, the others afresh."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    seen: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(seen, resume_from)
    if len(set(seen)) > 1:
        found = ", ".join(f"rank {r}: {s or 'none'}" for r, s in enumerate(seen))
        raise ConfigError(f"the processes found different checkpoints to resume from ({found}); on several "
                          "machines, put checkpointing.output_dir on a filesystem they all share")


def hold_output_dir(cfg: Config, held: contextlib.ExitStack) -> OutputLock:
    """Rank 0, before it looks into the output folder: lock it for this run (released when `held` closes), so that a
    second run started into it stops with one line naming this one."""
    out = Path(cfg.checkpointing.output_dir).expanduser()
    check_writable(out)
    lock = held.enter_context(OutputLock(out))
    if lock.note:
        log(lock.note)
    return lock


def claim_output_dir(out: Path, output: OutputPlan, lock: OutputLock) -> None:
    """Rank 0: say what the output-dir decision skipped, and move another run aside (checkpointing.overwrite)."""
    for note in output.notes:
        log(f"{out}: {note}")
    if output.move_aside:
        log(f"moved the run that was in {out} to {move_aside(out, lock)} (checkpointing.overwrite); nothing was "
            "deleted")


# ------------------------------------------------------------------------------------------------ trainer
def generation_kwargs(use_vllm: bool) -> dict:
    """Stop at `</answer>` (kept in the text) after at least 4 tokens, in whichever engine generates: the same
    protocol as the final evaluation."""
    from train.protocol import MIN_NEW_TOKENS, STOP

    if use_vllm:
        return {"stop": [STOP], "include_stop_str_in_output": True, "min_tokens": MIN_NEW_TOKENS}
    return {"stop_strings": [STOP], "min_new_tokens": MIN_NEW_TOKENS}


def grpo_args(cfg: Config, plan: BatchPlan, on_gpu: bool, eval_rows: int, vllm_share: float | None = None):
    from trl import GRPOConfig

    return GRPOConfig(**grpo_kwargs(cfg, plan, on_gpu, eval_rows, vllm_share), **cfg.trl)


def engine_share(cfg: Config, plan: BatchPlan, model_path: str) -> float:
    """vllm.gpu_memory_utilization, or (null) the share the colocated engine needs for one GPU's rollouts."""
    if cfg.vllm.gpu_memory_utilization is not None:
        return cfg.vllm.gpu_memory_utilization
    from train.generation import colocate_share, gpu_total_memory

    return colocate_share(model_path, plan.per_device_rollouts, max_model_len(cfg), gpu_total_memory(),
                          tensor_parallel=cfg.vllm.tensor_parallel_size)


def check_launch(cfg: Config, world_size: int) -> BatchPlan:
    """The checks that need the launch but no model, data or GPU; the launcher runs them once before it starts
    any process, each process again."""
    from train.reward_funcs import reward_functions
    from train.tracking import check_trackers

    plan = plan_batch(cfg, world_size)
    check_trl_section(cfg, plan)
    reward_functions(cfg)  # each reward imports and takes TRL's arguments
    check_trackers(cfg.logging)
    return plan


def check_trl_section(cfg: Config, plan: BatchPlan) -> None:
    """The `trl:` section passes other GRPOConfig fields through: each must be one, and not one that the
    project's sections already set (two places for one setting would disagree)."""
    if not cfg.trl:
        return
    import difflib

    from train.trl_section import field_types

    fields = field_types()  # GRPOConfig's fields, by name
    ours = grpo_kwargs(cfg, plan, on_gpu=False, eval_rows=0)
    for key in cfg.trl:
        if key in ours:
            raise ConfigError(f"'trl.{key}' is set by the project's own keys (see the configuration reference); "
                              "set it there, not in the trl: section")
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean 'trl.{close[0]}'?)" if close else ""
            raise ConfigError(f"'trl.{key}' is not a field of TRL's GRPOConfig{hint}")


def grpo_kwargs(cfg: Config, plan: BatchPlan, on_gpu: bool, eval_rows: int, vllm_share: float | None = None) -> dict:
    from train.tracking import tracking_kwargs

    t, g, v, ev = cfg.training, cfg.grpo, cfg.vllm, cfg.evaluation
    use_vllm = v.use_vllm and on_gpu
    periodic = ev.every_steps > 0 and eval_rows > 0
    # bf16 autocast on GPU as TRL does by default (also over float32 weights); plain float32 on CPU
    bf16 = on_gpu
    return dict(
        output_dir=str(Path(cfg.checkpointing.output_dir).expanduser()),
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        max_grad_norm=t.max_grad_norm,
        optim=t.optim,
        gradient_checkpointing=t.gradient_checkpointing,
        seed=t.seed,
        data_seed=t.seed,
        bf16=bf16,
        use_cpu=not on_gpu,  # without it the CPU processes of a launch each train alone (accelerate's default)
        per_device_train_batch_size=plan.per_device_train_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        steps_per_generation=plan.steps_per_generation,
        num_generations=g.group_size,
        temperature=g.temperature,
        top_p=g.top_p,
        max_completion_length=g.max_completion_length,
        loss_type=g.loss_type,
        scale_rewards=g.scale_rewards,
        beta=g.beta,
        epsilon=g.epsilon,
        num_iterations=g.num_iterations,
        mask_truncated_completions=False,  # R1GRPOTrainer masks: TRL's mask counts an </answer> stop as a cut
        generation_kwargs=generation_kwargs(use_vllm),
        reward_weights=list(cfg.rewards.values()),  # in reward_functions(cfg)'s order; the recipe: answer 1, format 0
        use_vllm=use_vllm,
        vllm_mode=v.mode,
        vllm_gpu_memory_utilization=vllm_share or v.gpu_memory_utilization or 0.3,  # 0.3: unused off the GPU
        vllm_enable_sleep_mode=v.enable_sleep_mode,
        vllm_importance_sampling_correction=v.importance_sampling_correction,
        vllm_tensor_parallel_size=v.tensor_parallel_size,
        vllm_server_host="127.0.0.1",  # server mode: started by the launcher on this node
        vllm_server_port=v.server_port,
        vllm_max_model_length=max_model_len(cfg),
        save_strategy="steps",
        save_steps=cfg.checkpointing.save_steps,
        save_total_limit=cfg.checkpointing.save_total_limit,
        eval_strategy="steps" if periodic else "no",
        eval_steps=ev.every_steps if periodic else None,
        per_device_eval_batch_size=g.group_size,
        logging_steps=cfg.logging.logging_steps,
        log_completions=cfg.logging.log_completions,
        **tracking_kwargs(cfg.logging),
        dataloader_num_workers=0,
    )


def time_limit(minutes: float):
    """A callback that stops training at the first step boundary after `minutes`; the run then saves and
    evaluates as at max_steps, so a time-boxed run ends with a final model and its evaluation. Rank 0's clock
    decides for every rank (ranks that stopped at different steps would wait on each other forever)."""
    import time

    import torch
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.start = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            stop = torch.tensor([time.monotonic() - self.start >= minutes * 60], dtype=torch.int32)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                if torch.distributed.get_backend() == "nccl":
                    stop = stop.cuda()
                torch.distributed.broadcast(stop, src=0)
            if stop.item():
                log(f"training.max_minutes={minutes} reached at step {state.global_step}; stopping")
                control.should_training_stop = True
                control.should_save = True  # a later resume continues from here

    return TimeLimit()


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------- stages
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.ExitStack() as held:  # the output folder's lock, released however the run ends
        try:
            return run(args.config, args.overrides, held)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            if int(os.environ.get("RANK", 0)) == 0:
                print(interrupted(args.config, args.overrides), file=sys.stderr)
            return 130


def run(config_path: str, overrides: list[str], held: contextlib.ExitStack | None = None) -> int:
    clock = WallClock()
    # 1. config and output dir: every user mistake surfaces here, before anything heavy is loaded
    cfg = load_config(resolve_path(config_path), overrides)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    plan = check_launch(cfg, world_size)
    lock = hold_output_dir(cfg, held or contextlib.ExitStack()) if rank == 0 else None
    output = plan_output_dir(cfg)

    from train.data import build_splits, load_rows, to_trl_dataset, write_heldout_ids
    from train.lora import ADAPTER_DIR, check_lora, lora_config
    from train.model_card import read_summary
    from train.models import check_model_source, eos_token_ids, has_gpu, load_policy, load_tokenizer, materialize
    from train.tracking import setup_tracking_env, sync_command

    check_model_source(cfg.model)
    out = Path(cfg.checkpointing.output_dir).expanduser()
    final_dir, adapter_dir = out / "final_model", out / ADAPTER_DIR
    on_gpu = has_gpu()
    if cfg.vllm.use_vllm and on_gpu:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("vllm.use_vllm is true but vllm is not installed: pip install -e '.[vllm]' "
                              "or set vllm.use_vllm=false")

    # 2. data file and model files: each is converted once (the data to Arrow, a GGUF to a folder) by the first
    #    process, the others then read the cache; a bad data file ends the run before any model is loaded
    from accelerate import PartialState

    state = PartialState(cpu=not on_gpu)  # on CPU the processes form one gloo group
    same_checkpoint_everywhere(output.resume_from)
    if output.complete:  # nothing to train: rank 0 finishes what is missing, the others are done
        return finish_complete_run(cfg, config_path, overrides, output) if rank == 0 else 0
    with state.local_main_process_first():  # datasets' cache is per machine
        rows = load_rows(cfg.data)
    with state.main_process_first():
        model_path = materialize(cfg.model)
    check_disk(cfg, model_path, output, adapter_params=check_lora(cfg, model_path))
    with state.main_process_first():  # the others wait while rank 0 moves another run aside
        if rank == 0:
            claim_output_dir(out, output, lock)
    tokenizer = load_tokenizer(model_path)

    # 3. data: gold answers, held-out split, prompt-length filter; computed into datasets' cache by the first
    #    process on each machine, read from it by the others (seconds, and the rows stay memory-mapped)
    with state.local_main_process_first():
        splits = build_splits(cfg, rows, tokenizer)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "resolved_config.yaml").write_text(dump_yaml(cfg))
        heldout_file = write_heldout_ids(splits, cfg, out)
    else:
        heldout_file = out / "heldout_ids.json"
    log("resolved config:\n" + dump_yaml(cfg))
    log(f"data: {splits.stats}")

    # 4. policy model and TRL arguments
    setup_tracking_env(cfg.logging, out)
    periodic = splits.heldout[: cfg.evaluation.periodic_samples] if cfg.evaluation.every_steps else []
    colocate = on_gpu and cfg.vllm.use_vllm and cfg.vllm.mode == "colocate"
    args = grpo_args(cfg, plan, on_gpu, len(periodic), engine_share(cfg, plan, model_path) if colocate else None)
    model = load_policy(model_path, cfg.model.dtype)
    if tokenizer.pad_token_id not in eos_token_ids(model):
        # TRL masks a completion after its first EOS; rows that stopped early are padded, so pad ends one too
        model.generation_config.eos_token_id = [*eos_token_ids(model), tokenizer.pad_token_id]
    if not args.use_vllm:
        # TRL calls generate() without the tokenizer that stop strings need; bind it to this model
        model.generate = functools.partial(type(model).generate, model, tokenizer=tokenizer)

    # 5. rewards and trainer
    from train.reward_funcs import reward_functions
    from train.trainer import CheckpointLoadError, R1GRPOTrainer

    trainer = R1GRPOTrainer(
        mask_truncated_completions=cfg.grpo.mask_truncated_completions,
        model=model,
        reward_funcs=reward_functions(cfg),
        peft_config=lora_config(cfg.peft),
        args=args,
        train_dataset=to_trl_dataset(splits.train),
        eval_dataset=to_trl_dataset(periodic) if periodic else None,
        processing_class=tokenizer,
    )
    group = trainer.accelerator.num_processes  # what the trainer trains with, not what the launcher asked for
    if group != world_size:
        raise ConfigError(f"the {world_size} processes did not form one group (the trainer sees {group}); "
                          "start them with ./launch_trl.sh or torchrun")
    log(f"batch: {plan} on {group} process(es) in one group; "
        f"{'vLLM ' + cfg.vllm.mode if args.use_vllm else 'transformers'} generation")

    if cfg.training.max_minutes is not None:
        trainer.add_callback(time_limit(cfg.training.max_minutes))
    trainer.add_callback(clock.callback())

    # 6. train (resuming when a checkpoint exists) and save
    if output.resume_from:
        log(f"resuming from {output.resume_from}")
    try:
        trainer.train(resume_from_checkpoint=output.resume_from)
    except CheckpointLoadError as e:
        fix = (f"continue from the previous complete one with checkpointing.resume={output.previous}"
               if output.previous else "start over with checkpointing.resume=never checkpointing.overwrite=true")
        raise ConfigError(f"checkpoint {e.path} cannot be loaded ({e.reason}); {fix}") from None
    clock.mark("training")
    if rank == 0 and (retired := retire_evaluations(final_dir)):  # they describe the model about to be replaced
        log(f"removed {', '.join(str(f) for f in retired)}: the evaluation of the final model this run replaces")
    # with LoRA the trainer saves the adapter, merged into final_model/ once the trainer's memory is freed; the Hub
    # (trl.push_to_hub) gets the final model once its card is written, not here
    trainer.save_model(str(adapter_dir if cfg.peft.enabled else final_dir), _internal_call=True)
    saved_at, steps, hub_repo = time.time(), trainer.state.global_step, trainer.hub_model_id
    log_history = list(trainer.state.log_history)
    if rank == 0:
        final_dir.mkdir(parents=True, exist_ok=True)
        trainer.state.save_to_json(str(final_dir / "trainer_state.json"))
    generation_config = model.generation_config
    clock.mark("save")

    # 7. final evaluation: with the trainer's own vLLM engine, each process a share of the problems, rank 0
    #    grading; otherwise rank 0 alone, after the trainer's memory is freed
    rc = 0
    heldout = splits.heldout[: cfg.evaluation.max_samples]
    # (LoRA: final_model/ is merged on the CPU afterwards, and evaluated by an engine of its own)
    engine = colocated_engine(trainer, cfg, heldout) if cfg.evaluation.enabled and not cfg.peft.enabled else None
    if engine is not None:
        from train.evaluation import evaluate

        if rank == 0:
            evaluate(cfg, str(final_dir), heldout, out, log_history=log_history, heldout_ids_file=heldout_file,
                     generate_fn=engine)
        else:
            engine([e.prompt for e in heldout])  # this process's share, gathered on rank 0
    if hasattr(trainer, "vllm_generation"):
        del trainer.vllm_generation
    del trainer, model
    free_memory()
    if rank == 0 and cfg.peft.enabled:
        merge_final_model(adapter_dir, final_dir, cfg.model.dtype, model_path, generation_config)
    log(f"saved {final_dir}")
    if engine is None and rank == 0 and cfg.evaluation.enabled:
        rc = final_evaluation(cfg, config_path, overrides, final_dir, heldout, heldout_file, log_history)
    clock.mark("evaluation")
    if rank == 0:
        publish_final_model(cfg, final_dir, steps, read_summary(out, since=saved_at), hub_repo)
    log(f"wall time: {clock}")
    sync = sync_command(cfg.logging, os.environ.get("WANDB_DIR", out))
    if sync:  # wandb's own hint is silenced (WANDB_SILENT), so say it once at the end
        log(f"wandb recorded this run offline; upload it with: {sync}")
    return rc


def colocated_engine(trainer, cfg: Config, heldout: list):
    """The final evaluation's generation on the trainer's colocated vLLM engine, or None where it cannot serve:
    no colocated engine (CPU, server mode, transformers generation), one spanning several GPUs, the evaluation
    asking for transformers, or a held-out prompt too long for its context (the evaluation's own engine then
    gives every prompt its full `evaluation.max_tokens`, as it would here). Each process generates every
    world_size-th problem; rank 0 receives them all, in order."""
    args = trainer.args
    if not (args.use_vllm and args.vllm_mode == "colocate" and args.vllm_tensor_parallel_size == 1
            and cfg.evaluation.use_vllm and heldout):
        return None
    from train.generation import generate_with, prompt_lengths

    lengths = prompt_lengths(trainer.processing_class, [e.prompt for e in heldout])
    context = args.vllm_max_model_length
    if max(lengths) + cfg.evaluation.max_tokens > context:
        return None
    from accelerate.utils import gather_object

    vg = trainer.vllm_generation
    vg.sync_weights()  # the last optimizer step came after the last sync
    if vg.enable_sleep_mode:
        vg.llm.wake_up(tags=["kv_cache"])
    acc = trainer.accelerator

    def generate(prompts: list[str]) -> tuple[str, list[dict]]:
        mine = range(acc.process_index, len(prompts), acc.num_processes)
        gens = generate_with(vg.llm, cfg.evaluation, [prompts[i] for i in mine], [lengths[i] for i in mine],
                             context)
        n = cfg.evaluation.n
        shares = sorted(gather_object([(i, gens[k * n:(k + 1) * n]) for k, i in enumerate(mine)]), key=lambda s: s[0])
        return "vllm (the trainer's engine)", [g for _, samples in shares for g in samples]

    return generate


class WallClock:
    """Seconds per stage of the run, from the process's start (imports and launch included).

    >>> c = WallClock(start=0.0); c.mark("start-up", now=40.0); c.mark("training", now=100.0); str(c)
    'start-up 40.0 s, training 60.0 s, total 100.0 s'
    """

    def __init__(self, start: float | None = None):
        import psutil

        self.start = psutil.Process().create_time() if start is None else start
        self.last, self.stages = self.start, {}

    def mark(self, stage: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.stages[stage], self.last = now - self.last, now

    def __str__(self) -> str:
        parts = [f"{k} {v:.1f} s" for k, v in self.stages.items()]
        return ", ".join([*parts, f"total {self.last - self.start:.1f} s"])

    def callback(self):
        """Marks the start of training and the end of its first step."""
        from transformers import TrainerCallback

        clock = self

        class Stages(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                clock.mark("start-up")

            def on_step_end(self, args, state, control, **kw):
                if "first step" not in clock.stages:
                    clock.mark("first step")

        return Stages()


def publish_final_model(cfg: Config, final_dir: Path, steps: int, summary: dict | None, hub_repo: str | None) -> None:
    """The model card in final_model/, then (trl.push_to_hub) the final model to the repository TRL created."""
    from train.model_card import push_final_model, write_model_card

    log(f"model card: {write_model_card(cfg, final_dir, steps, summary)}")
    if hub_repo:
        push_final_model(hub_repo, final_dir, cfg.trl)
        log(f"pushed {final_dir} to the Hub: {hub_repo}")


def merge_final_model(adapter_dir: Path, final_dir: Path, dtype: str, base: str, generation_config) -> None:
    """LoRA: final_model/ = the base with the trained adapter merged in (bench/grpo_step.py, which saves no weights,
    replaces this)."""
    from train.lora import merge_adapter

    log(f"merging the LoRA adapter ({adapter_dir}) into {base}")
    merge_adapter(adapter_dir, final_dir, dtype, base, generation_config)


def finish_complete_run(cfg: Config, config_path: str, overrides: list[str], output: OutputPlan) -> int:
    """Rank 0, for a run whose newest checkpoint reached training.max_steps: train nothing; make the final model that
    checkpoint's if it is not, and run the final evaluation alone if it is missing or describes another model."""
    import json

    from train.checkpoints import checkpoint_step, final_model_from, stale_evaluation, trained_step

    out = Path(cfg.checkpointing.output_dir).expanduser()
    ckpt = Path(output.resume_from)
    step, max_steps = checkpoint_step(ckpt), cfg.training.max_steps
    past = f", past training.max_steps={max_steps} (raise it to train further)" if step > max_steps else ""
    log(f"{out} holds a complete run: {ckpt.name} is at step {step}{past}; nothing to train")
    final_dir = out / "final_model"
    if trained_step(final_dir) != step:
        final_model_from(ckpt, final_dir)
        log(f"saved {final_dir} from {ckpt.name}")
    why = stale_evaluation(out / "eval_summary.json", final_dir)
    if why is None:
        log(f"its final evaluation is up to date: {out / 'eval_summary.json'}")
        return 0
    if not cfg.evaluation.enabled:
        if retired := retire_evaluations(final_dir):
            log(f"removed {', '.join(map(str, retired))}: {why}")
        return 0
    log(f"running its final evaluation alone ({why})")
    from train.data import heldout_examples, load_rows

    heldout = heldout_examples(cfg, load_rows(cfg.data))
    heldout_file = out / "heldout_ids.json"
    log_history = json.loads((final_dir / "trainer_state.json").read_text()).get("log_history", [])
    return final_evaluation(cfg, config_path, overrides, final_dir, heldout,
                            heldout_file if heldout_file.is_file() else None, log_history)


def interrupted(config_path: str, overrides: list[str]) -> str:
    """The one line a Ctrl-C leaves: what the output folder holds now, and the command that goes on from there."""
    from train.checkpoints import checkpoint_step, complete_checkpoints, weights_only

    try:
        cfg = load_config(resolve_path(config_path), overrides)
    except (ConfigError, KeyboardInterrupt):
        return "interrupted before the run started; nothing was saved"
    out = Path(cfg.checkpointing.output_dir).expanduser()
    ck = cfg.checkpointing
    again = this_command(config_path, [*overrides, *(["checkpointing.resume=auto"] if ck.resume != "auto" else [])])
    anew = this_command(config_path, [*overrides, *(["checkpointing.resume=never"] if ck.resume != "never" else []),
                                      *([] if ck.overwrite else ["checkpointing.overwrite=true"])])
    good = complete_checkpoints(out)[0]
    if not good:
        return f"interrupted: no checkpoint in {out} yet; start again with: {this_command(config_path, overrides)}"
    ckpt, step, max_steps = good[0], checkpoint_step(good[0]), cfg.training.max_steps
    if step >= max_steps:
        return f"interrupted: training is done ({ckpt}); save and evaluate its final model with: {again}"
    if weights_only(ckpt):
        return (f"interrupted: {ckpt} (step {step}) holds the weights only (trl.save_only_model), which cannot be "
                f"continued; start over with: {anew}")
    return f"interrupted: saved {ckpt} (step {step} of {max_steps}); continue with: {again}"


def this_command(config_path: str, overrides: list[str]) -> str:
    """The command line that runs this training again, as a user types it."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    head = ["./launch_trl.sh", str(world)] if world > 1 else ["python", os.path.relpath(__file__)]
    return shlex.join([*head, "--config", config_path, *overrides])


def final_evaluation(cfg, config_path, overrides, final_dir, heldout, heldout_file, log_history) -> int:
    from train.models import has_gpu

    if cfg.evaluation.use_vllm and has_gpu():
        # A fresh process: vLLM cannot start a second engine inside the training process's distributed group.
        import torch

        free, total = torch.cuda.mem_get_info()
        # what the trainer could not give back lowers vLLM's share (vLLM refuses a share larger than free memory)
        util = max(0.05, min(cfg.evaluation.gpu_memory_utilization, free / total - 0.05))
        wandb = sys.modules.get("wandb")  # the training's run, if it logged to one: the evaluation's run joins it
        train_run = wandb.run.name or wandb.run.id if wandb is not None and wandb.run is not None else None
        cmd, env = eval_command(config_path, overrides, final_dir, util, this_gpu(torch.cuda.current_device()),
                                train_run=train_run)
        log("final evaluation: " + " ".join(cmd))
        return subprocess.run(cmd, env=env).returncode
    from train.evaluation import evaluate

    evaluate(cfg, str(final_dir), heldout, final_dir.parent, log_history=log_history, heldout_ids_file=heldout_file)
    return 0


def eval_command(config_path, overrides, final_dir: Path, util: float, gpu: str, environ=None,
                 train_run: str | None = None):
    """The standalone evaluation of the final model on one GPU, outside the training's distributed group:
    the same config and overrides, vLLM's share of the GPU last (the last override wins). Its wandb run is
    named after the training run and grouped with it (a run cannot be reopened from a second process offline)."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k not in DIST_ENV and k != "WANDB_RUN_ID"}
    env["CUDA_VISIBLE_DEVICES"] = gpu
    if train_run:
        env["WANDB_RUN_GROUP"] = train_run
    cmd = [sys.executable, str(Path(__file__).with_name("evaluate.py")), "--config", str(config_path),
           "--model", str(final_dir), "--output-dir", str(final_dir.parent), *overrides,
           f"evaluation.gpu_memory_utilization={util:.3f}"]
    return cmd, env


def this_gpu(index: int, visible: str | None = None) -> str:
    """The physical GPU behind device `index` of this process (CUDA_VISIBLE_DEVICES may already remap it).

    >>> this_gpu(1, visible="2,3")
    '3'
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    return visible.split(",")[index].strip() if visible else str(index)


if __name__ == "__main__":
    sys.exit(main())
