"""TRL's GRPOTrainer with the r1_zero stop: a completion that stopped at `</answer>` is finished, not truncated.

Generation stops at `</answer>` (the trainer's rollouts and the evaluation alike), so a formatted answer ends with
that text, not with an EOS token. TRL 1.16 calls every completion whose last token is not EOS or pad truncated:
`completions/clipped_ratio` would read 1.0, and `mask_truncated_completions` would leave every formatted answer
out of the loss. Here a completion is truncated only when it has neither an EOS token nor the stop string, that is
when `max_completion_length` cut it: TRL's termination metrics are recomputed on that rule, and the mask of
length-cut completions is applied on it (TRL's own mask is kept off).

A checkpoint that fails to load when training resumes raises `CheckpointLoadError` naming it, so that the
entrypoint can say so in one line and point to the previous one.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from trl import GRPOTrainer

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


def _text(completion) -> str:
    """A completion's text: a string, or (conversational prompts) a list of messages."""
    return completion if isinstance(completion, str) else completion[-1]["content"]
