"""R1GRPOTrainer: a completion stopped at `</answer>` is finished; only one cut by the length limit is truncated.

Generation is replaced by fixed completions (the rest of TRL's scoring runs as in training), so each row's fate
is known: stopped at `</answer>` without EOS, ended by EOS, and cut at max_completion_length.
"""

from __future__ import annotations

import pytest

MAX_LEN = 16


@pytest.fixture
def make_trainer(tmp_path, tiny_model):
    """build(cls, config_kw, **trainer_kw) -> (trainer, inputs): four rollouts of one prompt whose completions are
    fixed: stopped at </answer> (no EOS), ended by EOS, cut at the length limit, stopped at </answer> again."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from train.rewards_math import answer_reward

    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompt = "What is 40 + 2? Assistant: <think>"
    data = Dataset.from_dict({"prompt": [prompt] * 4, "solution": ["\\boxed{42}"] * 4})
    stopped = tok("so 42 </think> <answer> 42 </answer>")["input_ids"]
    assert len(stopped) < MAX_LEN
    rows = [stopped, stopped[:3] + [tok.eos_token_id], tok("step by step " * 8)["input_ids"][:MAX_LEN], stopped]

    def build(cls, config_kw=None, **trainer_kw):
        kw = {"output_dir": str(tmp_path / cls.__name__), "per_device_train_batch_size": 4, "num_generations": 4,
              "max_completion_length": MAX_LEN, "report_to": "none", "bf16": False, "use_cpu": True,
              "loss_type": "grpo", "beta": 0.0, **(config_kw or {})}
        args = GRPOConfig(**kw)
        trainer = cls(model=str(tiny_model), reward_funcs=[answer_reward], args=args, train_dataset=data,
                      processing_class=tok, **trainer_kw)
        trainer._generate_single_turn = lambda *a, **k: ([list(r) for r in rows], None)
        trainer.model.train()
        return trainer, [{"prompt": prompt, "solution": "\\boxed{42}"}] * 4

    return build


def test_a_stop_at_answer_keeps_its_loss_weight_and_a_length_cut_does_not(make_trainer):
    from train.trainer import R1GRPOTrainer

    trainer, inputs = make_trainer(R1GRPOTrainer, mask_truncated_completions=True)
    out = trainer._generate_and_score_completions(inputs)
    kept = out["completion_mask"].sum(dim=1).tolist()
    assert kept[0] > 0 and kept[1] > 0 and kept[3] > 0  # stopped at </answer>, ended by EOS
    assert kept[2] == 0  # cut at max_completion_length: out of the loss
    assert out["num_items_in_batch"].item() == sum(kept)
    metrics = trainer._metrics["train"]
    assert metrics["completions/clipped_ratio"][-1] == pytest.approx(0.25)
    assert metrics["completions/max_terminated_length"][-1] < MAX_LEN


def test_without_the_mask_every_completion_trains_and_the_metric_still_counts_only_the_cut(make_trainer):
    from train.trainer import R1GRPOTrainer

    trainer, inputs = make_trainer(R1GRPOTrainer)
    out = trainer._generate_and_score_completions(inputs)
    assert (out["completion_mask"].sum(dim=1) > 0).all()
    assert trainer._metrics["train"]["completions/clipped_ratio"][-1] == pytest.approx(0.25)


def test_trl_alone_counts_a_stop_at_answer_as_truncated(make_trainer):
    """Why the subclass exists: TRL 1.16 masks every completion without EOS, formatted answers included.
    When a TRL upgrade makes this test fail, the subclass may no longer be needed."""
    from trl import GRPOTrainer

    trainer, inputs = make_trainer(GRPOTrainer, {"mask_truncated_completions": True})
    out = trainer._generate_and_score_completions(inputs)
    assert out["completion_mask"].sum(dim=1).tolist()[0] == 0
    assert trainer._metrics["train"]["completions/clipped_ratio"][-1] == pytest.approx(0.75)


def test_the_subclass_refuses_trls_own_mask(make_trainer):
    from train.trainer import R1GRPOTrainer

    with pytest.raises(ValueError, match="not to GRPOConfig"):
        make_trainer(R1GRPOTrainer, {"mask_truncated_completions": True})


# ------------------------------------------------------------------------- the trl: pass-through, float16
@pytest.mark.parametrize("override,message", [
    ("trl.save_only_modl=true", "'trl.save_only_modl' is not a field of TRL's GRPOConfig (did you mean "
                                "'trl.save_only_model'?)"),
    ("trl.learning_rate=0.1", "'trl.learning_rate' is set by the project's own keys"),
    ("model.dtype=float16", "'model.dtype' float16 cannot be trained"),
])
def test_bad_trl_keys_and_float16_stop_before_loading(tmp_path, tiny_model, tiny_data, capsys, monkeypatch,
                                                      override, message):
    import train.models
    from step3_GRPO.train_trl import main
    from tests.test_train import config

    monkeypatch.setattr(train.models, "load_policy", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["--config", str(config(tmp_path, tiny_model, tiny_data)), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_trl_section_reaches_grpo_config():
    from step3_GRPO.train_trl import grpo_args
    from train.config import load_config, plan_batch

    cfg = load_config("config/quickstart.yaml", ["trl.save_only_model=true", "trl.torch_empty_cache_steps=5"])
    args = grpo_args(cfg, plan_batch(cfg, 1), on_gpu=False, eval_rows=0)
    assert args.save_only_model is True and args.torch_empty_cache_steps == 5


# ------------------------------------------------------------------------- micro-batches cut by length
def step_gradients(trainer, inputs, micro_batches: int) -> tuple[dict, list[int]]:
    """One optimizer step's accumulated gradients through the trainer's own buffering, and the micro-batch widths."""
    trainer.model.zero_grad()
    trainer.current_gradient_accumulation_steps = micro_batches  # set by Trainer.train() in a real run
    widths = []
    for step in range(micro_batches):
        trainer._step = step
        batch = trainer._prepare_inputs(inputs)
        widths.append(batch["completion_ids"].shape[1] + batch["prompt_ids"].shape[1])
        trainer.compute_loss(trainer.model, batch).backward()
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}, widths


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_micro_batches_cut_by_length_give_trls_gradient_with_less_padding(make_trainer, loss_type):
    import torch
    from trl import GRPOTrainer

    from train.trainer import R1GRPOTrainer

    kw = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "steps_per_generation": 2,
          "loss_type": loss_type}
    ours, inputs = make_trainer(R1GRPOTrainer, kw)
    theirs, _ = make_trainer(GRPOTrainer, kw)
    got, widths = step_gradients(ours, inputs, 2)
    want, full = step_gradients(theirs, inputs, 2)
    assert got.keys() == want.keys() and got
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
    assert min(widths) < min(full)  # the short rollouts' micro-batch dropped the long one's padding


def test_bnpo_keeps_trls_micro_batches(make_trainer):
    """bnpo normalises by each micro-batch's tokens: regrouping the rollouts would change its gradient."""
    from train.trainer import R1GRPOTrainer

    kw = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "steps_per_generation": 2,
          "loss_type": "bnpo"}
    trainer, inputs = make_trainer(R1GRPOTrainer, kw)
    _, widths = step_gradients(trainer, inputs, 2)
    assert widths[0] == widths[1]  # TRL pads every micro-batch to the generation batch's width


# ------------------------------------------------------------------------- vLLM log-probs only when read
class FakeVLLMGeneration:
    """TRL's VLLMGeneration as the trainer sees it: `logprobs` asked of vLLM, and generate()'s 4-tuple."""

    def __init__(self, **kw):
        self.logprobs = kw["logprobs"]

    def sync_weights(self):
        pass

    def generate(self, prompts, images, num_generations, profiler):
        rows = [[5, 6, 7] for _ in prompts]
        lps = None if self.logprobs is None else [[[-0.5]] * 3 for _ in prompts]
        return prompts, rows, lps, None


@pytest.mark.parametrize("trl_kw,asked", [
    ({}, None),  # the project's default: no correction, no off-policy mask -> vLLM computes no log-probs
    ({"vllm_importance_sampling_correction": True}, 0),
    ({"off_policy_mask_threshold": 0.5}, 0),
])
def test_vllm_is_asked_for_logprobs_only_when_the_loss_reads_them(make_trainer, monkeypatch, trl_kw, asked):
    import trl.trainer.grpo_trainer as grpo

    from train.trainer import R1GRPOTrainer

    monkeypatch.setattr(grpo, "VLLMGeneration", FakeVLLMGeneration)
    kw = {"use_vllm": True, "vllm_mode": "colocate", "vllm_importance_sampling_correction": False, **trl_kw}
    trainer, _ = make_trainer(R1GRPOTrainer, kw)
    del trainer._generate_single_turn  # the fixture's fixed completions: use the trainer's own vLLM path
    assert trainer.vllm_generation.logprobs == asked
    completion_ids, logprobs = trainer._generate_single_turn([[1, 2]] * 4, None, {}, 4)
    assert completion_ids == [[5, 6, 7]] * 4
    assert logprobs == (None if asked is None else [[-0.5] * 3] * 4)
