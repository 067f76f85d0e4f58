"""TRL's GRPOTrainer with the r1_zero stop: a completion that stopped at `</answer>` is finished, not truncated.

Generation stops at `</answer>` (the trainer's rollouts and the evaluation alike), so a formatted answer ends with
that text, not with an EOS token. TRL 1.16 calls every completion whose last token is not EOS or pad truncated:
`completions/clipped_ratio` would read 1.0, and `mask_truncated_completions` would leave every formatted answer
out of the loss. Here a completion is truncated only when it has neither an EOS token nor the stop string, that is
when `max_completion_length` cut it: TRL's termination metrics are recomputed on that rule, and the mask of
length-cut completions is applied on it (TRL's own mask is kept off).

Two changes of speed, neither of which changes the loss:
- vLLM is asked for per-token log-probs only where the loss reads them (the importance-sampling correction, the
  off-policy mask); building them costs host time at every decoding step.
- The micro-batches of an optimizer step are cut from rollouts sorted by length, and each is trimmed to its own
  longest completion (and shortest left padding): a step's padding is then a few tokens per row instead of up to
  `max_completion_length`. The gradient is the same sum over the same rollouts (for every loss but `bnpo`,
  which normalises by the tokens of each micro-batch, and keeps TRL's shuffled micro-batches).

A checkpoint that fails to load when training resumes raises `CheckpointLoadError` naming it, so that the
entrypoint can say so in one line and point to the previous one.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from trl import GRPOTrainer
from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

from train.protocol import STOP


class CheckpointLoadError(Exception):
    """A checkpoint that looked complete on disk but failed to load into the trainer."""

    def __init__(self, path: str, cause: Exception):
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]


@contextmanager
def _naming(checkpoint: str | None):
    try:
        yield
    except Exception as e:
        if checkpoint is None:  # not resuming: nothing to blame on a checkpoint
            raise
        raise CheckpointLoadError(checkpoint, e) from e


class _NamedCheckpointLoads:
    """transformers' loading of a checkpoint's weights, optimizer and RNG state, with a failure naming the checkpoint
    (the entrypoint then points to the previous one), instead of a traceback from deep inside `train()`."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        with _naming(resume_from_checkpoint):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint):
        with _naming(checkpoint):
            return super()._load_optimizer_and_scheduler(checkpoint)

    def _load_rng_state(self, checkpoint):
        with _naming(checkpoint):
            return super()._load_rng_state(checkpoint)


class R1GRPOTrainer(_NamedCheckpointLoads, GRPOTrainer):
    def __init__(self, *args, mask_truncated_completions: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if self.mask_truncated_completions:
            raise ValueError("pass mask_truncated_completions to R1GRPOTrainer, not to GRPOConfig: TRL's own mask "
                             "counts a completion stopped at </answer> as truncated")
        self.mask_length_cut = mask_truncated_completions
        self._finished: list[bool] = []
        if self.use_vllm and self.vllm_mode == "colocate" and not self._reads_sampling_logprobs():
            self.vllm_generation.logprobs = None
            self.vllm_generation.generate = _no_logprobs(self.vllm_generation.generate)

    def _reads_sampling_logprobs(self) -> bool:
        """Whether the loss reads vLLM's per-token log-probs (TRL requests them for every rollout)."""
        return self.vllm_importance_sampling_correction or self.off_policy_mask_threshold is not None

    def _generate_single_turn(self, *args, **kwargs):
        completion_ids, logprobs = super()._generate_single_turn(*args, **kwargs)
        if self.use_vllm and self.vllm_generation.logprobs is None:
            logprobs = None  # the placeholders of _no_logprobs: no log-probs, as with transformers generation
        return completion_ids, logprobs

    def _prepare_inputs(self, generation_batch):
        """TRL's buffering of one generation batch into micro-batches, with the micro-batches cut by length."""
        spg = self.args.steps_per_generation
        if not self.model.training or self.loss_type == "bnpo":
            return super()._prepare_inputs(generation_batch)
        if self._step % (spg * self.num_iterations) == 0 or self._buffered_inputs is None:
            batch = shuffle_sequence_dict(self._generate_and_score_completions(generation_batch))  # random ties
            self._buffered_inputs = [trim_padding(b) for b in split_tensor_dict(sort_by_length(batch), spg)]
        return self._buffered_inputs[self._step % spg]

    def _generate(self, prompts: list):
        out = super()._generate(prompts)
        completion_ids, completions = out[1], out[3]
        ends = {*self.eos_token_ids, self._tokenizer.pad_token_id}
        self._finished = [(bool(ids) and ids[-1] in ends) or STOP in _text(c)
                          for ids, c in zip(completion_ids, completions, strict=True)]
        self._log_termination(completion_ids)
        return out

    def _log_termination(self, completion_ids: list[list[int]]) -> None:
        """Replace the values TRL just logged for this batch with the ones of the stop-aware rule."""
        device = self.accelerator.device
        lengths = self.accelerator.gather(torch.tensor([len(ids) for ids in completion_ids], device=device))
        finished = self.accelerator.gather(torch.tensor(self._finished, device=device))
        term = lengths[finished].float() if finished.any() else torch.zeros(1, device=device)
        metrics = self._metrics["train" if self.model.training else "eval"]
        metrics["completions/clipped_ratio"][-1] = (~finished).float().mean().item()
        metrics["completions/mean_terminated_length"][-1] = term.mean().item()
        metrics["completions/min_terminated_length"][-1] = term.min().item()
        metrics["completions/max_terminated_length"][-1] = term.max().item()

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.mask_length_cut:
            mask = out["completion_mask"]
            keep = torch.tensor(self._finished, device=mask.device, dtype=mask.dtype).unsqueeze(1)
            out["completion_mask"] = mask * keep
            out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        return out


def _no_logprobs(generate):
    """VLLMGeneration.generate returning an empty log-prob list per completion when vLLM computed none (TRL's
    caller indexes them unconditionally); R1GRPOTrainer._generate_single_turn then drops them."""

    def wrapper(*args, **kwargs):
        prompt_ids, completion_ids, logprobs, logprob_token_ids = generate(*args, **kwargs)
        return prompt_ids, completion_ids, logprobs or [[] for _ in completion_ids], logprob_token_ids

    return wrapper


def sort_by_length(batch: dict) -> dict:
    """The rows of a generation batch ordered by completion length (a stable sort: ties keep their order).

    >>> b = {"completion_mask": torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]]), "ids": ["a", "b", "c"]}
    >>> sort_by_length(b)["ids"]
    ['b', 'a', 'c']
    """
    order = torch.argsort(batch["completion_mask"].sum(1), stable=True)
    return {k: _take(v, order) for k, v in batch.items()}


def _take(v, order: torch.Tensor):
    if isinstance(v, torch.Tensor) and v.ndim >= 1:
        return v[order.to(v.device)]
    if isinstance(v, list):
        return [v[i] for i in order.tolist()]
    return v  # scalars (num_items_in_batch) and None


def trim_padding(batch: dict) -> dict:
    """Drop the columns that are padding in every row of a micro-batch: completion columns after the longest
    completion, prompt columns before the shortest left padding. Per-token tensors (log-probs, ratios, masks) are
    cut with the completion; masked positions carry no loss, so the loss is unchanged.

    >>> t = torch.tensor
    >>> b = {"prompt_ids": t([[0, 5, 6], [0, 0, 7]]), "prompt_mask": t([[0, 1, 1], [0, 0, 1]]),
    ...      "completion_ids": t([[8, 0, 0], [9, 9, 0]]), "completion_mask": t([[1, 0, 0], [1, 1, 0]])}
    >>> t = trim_padding(b)
    >>> t["prompt_ids"].tolist(), t["completion_ids"].tolist()
    ([[5, 6], [0, 7]], [[8, 0], [9, 9]])
    """
    width = batch["completion_mask"].shape[1]
    used = batch["completion_mask"].any(0).nonzero()
    keep = int(used.max()) + 1 if len(used) else 1
    first = batch["prompt_mask"].any(0).nonzero()
    start = int(first.min()) if len(first) else 0
    out = {}
    for k, v in batch.items():
        if k in ("prompt_ids", "prompt_mask"):
            v = v[:, start:]
        elif isinstance(v, torch.Tensor) and v.ndim == 2 and v.shape[1] == width and k != "advantages":
            v = v[:, :keep]
        out[k] = v
    return out


def _text(completion) -> str:
    """A completion's text: a string, or (conversational prompts) a list of messages."""
    return completion if isinstance(completion, str) else completion[-1]["content"]
