"""Generation for the evaluation: `n` samples per prompt with vLLM on a GPU, batched transformers elsewhere.

Both follow `train.protocol` (stop at `</answer>` and keep it, at least MIN_NEW_TOKENS) with the sampling of the
YAML's `evaluation:` section, and return one dict per sample, prompt-major: `{text, num_tokens, truncated}`.
"""

from __future__ import annotations

import os
import time

from train.config import Config, EvaluationConfig
from train.models import inference_dtype
from train.protocol import MIN_NEW_TOKENS, STOP

MAX_NUM_SEQS = 512  # sequences vLLM decodes at once in the evaluation; its KV cache is sized for them


def generate(cfg: Config, model_path: str, prompts: list[str]) -> tuple[str, list[dict]]:
    """The engine the config asks for and the machine allows, and its generations."""
    if vllm_usable(cfg.evaluation.use_vllm):
        return "vllm", generate_vllm(cfg, model_path, prompts)
    return "transformers", generate_transformers(cfg, model_path, prompts)


def vllm_usable(wanted: bool) -> bool:
    if not wanted:
        return False
    from train.models import has_gpu

    if not has_gpu():
        return False
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        print(f"[eval] vllm not importable ({e}); generating with transformers", flush=True)
        return False
    return True


def generate_vllm(cfg: Config, model_path: str, prompts: list[str]) -> list[dict]:
    """`n` samples per prompt with a vLLM engine of its own, flattened prompt-major: [{text, num_tokens, truncated}]."""
    import gc

    import torch
    from vllm import LLM

    from train.models import load_tokenizer

    # The engine's worker process must be spawned: forking after this process touched CUDA (the trainer did,
    # and so does any torch.cuda query) fails with "Cannot re-initialize CUDA in forked subprocess".
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    ev = cfg.evaluation
    # Held-out prompts are not length-filtered (the split must not depend on the tokenizer), so the context
    # is sized for the longest prompt, capped by the model's own context.
    lengths = prompt_lengths(load_tokenizer(model_path), prompts)
    context = model_context(model_path) or max(lengths) + ev.max_tokens
    max_model_len = min(context, max(lengths) + ev.max_tokens)
    fits = [i for i, n_prompt in enumerate(lengths) if n_prompt < max_model_len]
    if len(fits) < len(prompts):
        print(f"[eval] {len(prompts) - len(fits)} prompt(s) longer than the model's context ({context}); "
              "they count as truncated format failures", flush=True)
    seqs = min(len(fits) * ev.n, MAX_NUM_SEQS)
    # at most half of the evaluation's share: the rest holds the weights, activations and CUDA graphs; with a
    # smaller cache vLLM decodes fewer sequences at once
    share = ev.gpu_memory_utilization * gpu_total_memory()
    kv_bytes = min(kv_cache_bytes(model_path, max_model_len, seqs), int(share / 2))
    t0 = time.time()
    llm = LLM(model=model_path, gpu_memory_utilization=ev.gpu_memory_utilization, seed=cfg.training.seed,
              dtype=inference_dtype(cfg.model.dtype), max_model_len=max_model_len, max_num_seqs=seqs,
              kv_cache_memory_bytes=kv_bytes)
    print(f"[eval] vLLM engine ready in {time.time() - t0:.1f} s", flush=True)
    gens = generate_with(llm, ev, prompts, lengths, max_model_len)
    del llm
    gc.collect()
    torch.cuda.empty_cache()
    return gens


def prompt_lengths(tokenizer, prompts: list[str]) -> list[int]:
    """Prompt tokens as vLLM counts them (special tokens added as the tokenizer adds them)."""
    return [len(ids) for ids in tokenizer(prompts)["input_ids"]]


def generate_with(llm, ev: EvaluationConfig, prompts: list[str], lengths: list[int], max_model_len: int) -> list[dict]:
    """The evaluation's samples from a running engine (its own, or the trainer's colocated one), prompt-major.

    Each prompt gets `ev.max_tokens` new tokens, or what the engine's context leaves after it; a prompt that
    fills the context is not generated and counts as a truncated format failure.
    """
    from vllm import SamplingParams

    # No per-request seed: vLLM samples each seeded request with its own generator (a slower path); the
    # engine's global seed already makes a run reproducible for the same prompts and settings.
    fits = [i for i, n_prompt in enumerate(lengths) if n_prompt < max_model_len]
    params = []
    for i in fits:
        budget = min(ev.max_tokens, max_model_len - lengths[i])
        params.append(SamplingParams(n=ev.n, temperature=ev.temperature, top_p=ev.top_p, max_tokens=budget,
                                     stop=[STOP], include_stop_str_in_output=True,
                                     min_tokens=min(MIN_NEW_TOKENS, budget)))
    t0 = time.time()
    outputs = llm.generate([prompts[i] for i in fits], params, use_tqdm=True) if fits else []
    gen_s = time.time() - t0
    n_tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    print(f"[eval] {n_tokens} tokens generated in {gen_s:.1f} s ({n_tokens / max(gen_s, 1e-9):.0f} tokens/s)",
          flush=True)
    by_prompt = dict(zip(fits, outputs, strict=True))
    gens = []
    for i in range(len(prompts)):
        if i not in by_prompt:
            gens += [{"text": "", "num_tokens": 0, "truncated": True}] * ev.n
            continue
        for o in by_prompt[i].outputs:
            gens.append({"text": o.text, "num_tokens": len(o.token_ids), "truncated": o.finish_reason == "length"})
    return gens


def kv_cache_bytes(model_path: str, max_model_len: int, seqs: int) -> int:
    """A bf16 KV cache that holds `seqs` sequences of `max_model_len` tokens at once, plus 5% for block rounding.

    The evaluation sizes vLLM's cache from what it needs rather than from a share of the card: the footprint is
    then known, and the engine's start skips vLLM's memory profiling, which fails when another process on the
    same GPU (a training run, another evaluation) frees memory meanwhile.
    """
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(model_path)
    conf = getattr(conf, "text_config", None) or conf
    head_dim = getattr(conf, "head_dim", None) or conf.hidden_size // conf.num_attention_heads
    kv_heads = getattr(conf, "num_key_value_heads", None) or conf.num_attention_heads
    per_token = 2 * conf.num_hidden_layers * kv_heads * head_dim * 2  # K and V, 2 bytes each
    return int(1.05 * per_token * max_model_len * seqs)


def colocate_share(model_path: str, seqs: int, max_model_len: int, total_bytes: int, tensor_parallel: int = 1) -> float:
    """The share of a card that a colocated engine needs for one GPU's `seqs` rollouts of up to `max_model_len`
    tokens at once: bf16 weights, their KV cache (both split over the engine's `tensor_parallel` GPUs), and 2 GiB
    for vLLM's activations, sampler and CUDA graphs. vLLM counts all three inside `gpu_memory_utilization`; the
    rest of the card is the trainer's.

    >>> colocate_share("tests/fixtures/qwen2.5-1.5b-config", 64, 1024, 80 * 2**30)  # B1 on an 80 GiB card
    0.084
    """
    weights = 2 * parameter_count(model_path) / tensor_parallel
    need = weights + kv_cache_bytes(model_path, max_model_len, seqs) + 2 * 2**30
    return round(min(0.9, need / total_bytes), 3)


def parameter_count(model_path: str) -> int:
    """Parameters of the model's architecture, counted on the meta device (nothing is loaded or allocated)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    return sum(p.numel() for p in model.parameters())


def gpu_total_memory() -> int:
    import torch

    return torch.cuda.get_device_properties(0).total_memory


def model_context(model_path: str) -> int | None:
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(model_path)
    conf = getattr(conf, "text_config", None) or conf
    return getattr(conf, "max_position_embeddings", None)


def generate_transformers(cfg: Config, model_path: str, prompts: list[str]) -> list[dict]:
    """`n` samples per prompt with `model.generate` on left-padded batches, flattened prompt-major."""
    import torch
    import transformers
    from tqdm import tqdm

    from train.models import eos_token_ids, has_gpu, load_policy, load_tokenizer

    ev = cfg.evaluation
    transformers.set_seed(cfg.training.seed)
    tok = load_tokenizer(model_path)  # left padding
    model = load_policy(model_path, inference_dtype(cfg.model.dtype)).eval()
    if has_gpu():
        model = model.cuda()
    eos_ids = set(eos_token_ids(model)) | {tok.eos_token_id} - {None}
    end_ids = eos_ids | {tok.pad_token_id}
    sampling = (
        # top_k=0: transformers otherwise falls back to top_k=50, which the protocol (and vLLM) do not apply
        {"do_sample": True, "temperature": ev.temperature, "top_p": ev.top_p, "top_k": 0}
        if ev.temperature > 0 else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    gens: list[dict] = []
    batches = range(0, len(prompts), ev.batch_size)
    with torch.inference_mode():
        for start in tqdm(batches, desc="eval generate", unit="batch"):
            rows = [p for p in prompts[start : start + ev.batch_size] for _ in range(ev.n)]
            enc = tok(rows, return_tensors="pt", padding=True).to(model.device)
            out = model.generate(**enc, max_new_tokens=ev.max_tokens, min_new_tokens=MIN_NEW_TOKENS,
                                 stop_strings=[STOP], tokenizer=tok, pad_token_id=tok.pad_token_id,
                                 repetition_penalty=1.0, **sampling)
            for ids in out[:, enc["input_ids"].shape[1] :].tolist():
                gens.append(_finish(ids, tok, eos_ids, end_ids, ev.max_tokens))
    del model
    return gens


def _finish(ids: list[int], tok, eos_ids: set, end_ids: set, max_tokens: int) -> dict:
    """Cut one generated row: rows that stopped early are padded (pad may equal EOS) up to the batch length."""
    end = next((i for i, t in enumerate(ids) if t in end_ids), len(ids))
    text = tok.decode(ids[:end], skip_special_tokens=True)
    cut = text.find(STOP)
    hit_stop = cut >= 0
    if hit_stop:
        text = text[: cut + len(STOP)]  # a token may run past the stop string; vLLM cuts there too
    hit_eos = not hit_stop and end < len(ids) and ids[end] in eos_ids
    num_tokens = end + int(hit_eos)  # vLLM's token_ids include the EOS
    return {"text": text, "num_tokens": num_tokens,
            "truncated": not hit_stop and not hit_eos and num_tokens >= max_tokens}
