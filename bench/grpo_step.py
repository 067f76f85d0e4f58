"""GRPO step-time benchmark through the project's own trainer, against the card's physical floor.

    python bench/grpo_step.py --shape B1 --variants ours,trl_default,no_vllm --out result.json

Each variant runs `step3_GRPO/train_trl.py`'s `run()` in a fresh process (one vLLM engine per process) on a
randomly initialised model of the Qwen2.5-1.5B shape with fixed-length completions (`ignore_eos`, no stop
string), and reports per step: wall seconds, the generation / reward / weight-sync / policy-update split
(from TRL's profiling hooks), completion tokens/s and peak GPU memory. The floor: generation reads the
weights and the KV cache once per decode step, so it needs at least decode_steps x bytes / copy bandwidth;
the update needs ~8 x params x tokens FLOPs (forward for the old log-probs, forward + backward) / matmul rate.
Both rates are measured on the card first.

Shapes: B1 = 8 prompts x 8 completions x 512 tokens; B2 = 32 x 8 x 1024 (the recipe's 256 rollouts).
Variants: `ours` (the YAML defaults), one change at a time from it (`sleep_off`, `ckpt_off`, `bf16_weights`,
`sleep_ckpt_off`), `trl_default` (TRL's defaults with vLLM colocate: float32 weights with bf16 autocast,
sleep mode off, no gradient checkpointing, dapo loss), `no_vllm` (transformers generation).
Extra `key=value` config overrides after `--` apply to every variant, e.g. `-- vllm.gpu_memory_utilization=0.4`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {"B1": (8, 8, 512), "B2": (32, 8, 1024)}  # prompts per step, group size, completion tokens
VARIANTS = {
    "ours": [],
    # one change at a time against `ours`, to attribute the difference to TRL's defaults
    "sleep_off": ["vllm.enable_sleep_mode=false"],
    "ckpt_off": ["training.gradient_checkpointing=false"],
    "bf16_weights": ["model.dtype=bfloat16"],
    "sleep_ckpt_off": ["vllm.enable_sleep_mode=false", "training.gradient_checkpointing=false"],
    "trl_default": ["model.dtype=float32", "vllm.enable_sleep_mode=false", "training.gradient_checkpointing=false",
                    "grpo.loss_type=dapo", "training.optim=adamw_torch"],
    "no_vllm": ["vllm.use_vllm=false"],
}
QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=4096, rope_theta=10000.0,
                  tie_word_embeddings=True)


# ------------------------------------------------------------------------------------------ measurements
def card_rates() -> dict:
    """Measured device-memory copy bandwidth (GB/s) and dense bf16 matmul rate (TFLOP/s)."""
    import torch

    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        y.copy_(x)
    torch.cuda.synchronize()
    bw = 2 * x.numel() * 20 / (time.perf_counter() - t) / 1e9  # read + write
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    flops = 2 * 8192**3 * 20 / (time.perf_counter() - t) / 1e12
    del x, y, a
    torch.cuda.empty_cache()
    return {"copy_GBps": round(bw, 1), "bf16_TFLOPs": round(flops, 1), "card": torch.cuda.get_device_name()}


def floor(shape: str, prompt_tokens: int, rates: dict, n_params: float) -> dict:
    c = QWEN25_15B
    prompts, group, length = SHAPES[shape]
    seqs = prompts * group
    weight_bytes = 2 * n_params
    head_dim = c["hidden_size"] // c["num_attention_heads"]
    kv_per_token = 2 * c["num_hidden_layers"] * c["num_key_value_heads"] * head_dim * 2  # K and V, bf16
    # decode step i reads all weights once and every sequence's KV cache of length prompt + i
    kv_bytes = sum(seqs * (prompt_tokens + i) * kv_per_token for i in range(length))
    gen_s = (length * weight_bytes + kv_bytes) / (rates["copy_GBps"] * 1e9)  # copy_GBps counts read + write traffic
    tokens = seqs * (prompt_tokens + length)
    upd_s = 8 * n_params * tokens / (rates["bf16_TFLOPs"] * 1e12)
    return {"generation_s": round(gen_s, 3), "update_s": round(upd_s, 3), "total_s": round(gen_s + upd_s, 3)}


def param_count(c: dict) -> int:
    h, kv = c["hidden_size"], c["num_key_value_heads"] * (c["hidden_size"] // c["num_attention_heads"])
    attn = h * h * 2 + h * kv * 2 + h + 2 * kv  # q, o, k, v weights and the q/k/v biases
    mlp = 3 * h * c["intermediate_size"]
    return c["vocab_size"] * h + c["num_hidden_layers"] * (attn + mlp + 2 * h) + h


# ------------------------------------------------------------------------------------------------ set-up
def build_assets(work: Path, tokenizer_dir: Path) -> tuple[Path, Path, int]:
    """A random bf16 model of the Qwen2.5-1.5B shape and a jsonl of synthetic problems, built once."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    model_dir = work / "qwen2.5-1.5b-random"
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if not (model_dir / "config.json").is_file():
        config = Qwen2Config(**QWEN25_15B, eos_token_id=tok.eos_token_id, bos_token_id=None,
                             pad_token_id=tok.pad_token_id, torch_dtype="bfloat16")
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = Qwen2ForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        del model
        torch.cuda.empty_cache()
    data = work / "problems.jsonl"
    rows = [{"problem": f"Problem {i}: compute the sum of the first {i + 10} positive integers, then explain "
                        "each step of the reasoning carefully and check the result twice.",
             "solution": f"The answer is \\boxed{{{(i + 10) * (i + 11) // 2}}}.", "source": "synthetic"}
            for i in range(4096)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from train.data import render

    template = (ROOT / "config/prompts/r1_zero.prompt").read_text()
    prompt_tokens = len(tok(render(template, rows[0]["problem"]))["input_ids"])
    return model_dir, data, prompt_tokens


def overrides(shape: str, model_dir: Path, data: Path, out: Path, steps: int) -> list[str]:
    prompts, group, length = SHAPES[shape]
    return [f"model.name_or_path={model_dir}", f"data.path={data}", "data.source_column=source",
            "data.eval_holdout=64", f"training.output_dir={out}", f"training.max_steps={steps}",
            f"training.prompts_per_step={prompts}", f"grpo.group_size={group}", f"grpo.max_completion_length={length}",
            "checkpointing.save_steps=100000", "checkpointing.resume=never", "checkpointing.overwrite=true",
            "evaluation.enabled=false", "logging.wandb=off"]


# ------------------------------------------------------------------------------------------------ worker
def worker(args) -> None:
    """One variant in this process: patch in timing hooks and fixed-length generation, then run the trainer."""
    import torch
    from transformers import TrainerCallback
    from trl.extras import profiling

    import step3_GRPO.train_trl as tt

    timings: dict[str, float] = {}
    steps: list[dict] = []
    original = profiling.ProfilingContext._log_metrics

    def record(self, duration):
        timings[self.name] = timings.get(self.name, 0.0) + duration
        original(self, duration)

    profiling.ProfilingContext._log_metrics = record

    def fixed_length(use_vllm: bool) -> dict:
        return {"ignore_eos": True} if use_vllm else {"min_new_tokens": args.length}

    tt.generation_kwargs = fixed_length

    cuda = torch.cuda.is_available()  # False only when the worker is tried on a CPU

    class StepTimer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            timings.clear()
            if cuda:
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info() if cuda else (0, 0)
            steps.append({"step": state.global_step, "seconds": time.perf_counter() - self.t, **timings,
                          "device_used_GiB": (total - free) / 2**30,
                          "torch_peak_GiB": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0})

    import trl

    original_init = trl.GRPOTrainer.__init__

    def init_with_timer(self, *a, **kw):
        original_init(self, *a, **kw)
        self.add_callback(StepTimer())

    trl.GRPOTrainer.__init__ = init_with_timer

    def skip_weights(self, output_dir=None, _internal_call=False):
        # a benchmark's trained random weights are worth nothing; 3-6 GB per variant filled the GPU machine's disk
        Path(output_dir).mkdir(parents=True, exist_ok=True)

    trl.GRPOTrainer.save_model = skip_weights
    rc = tt.run(str(ROOT / "config/grpo_config.yaml"), args.overrides)
    Path(args.result).write_text(json.dumps({"rc": rc, "steps": steps}))


def summarize(steps: list[dict], rollouts: int, length: int) -> dict:
    use = steps[1:] if len(steps) > 2 else steps  # the first steps warm up (compile, allocator)

    def med(key_part: str) -> float:
        vals = [sum(v for k, v in s.items() if key_part in k and isinstance(v, float)) for s in use]
        return round(statistics.median(vals), 3) if vals else 0.0

    sec = round(statistics.median(s["seconds"] for s in use), 3)
    gen = med("generate")
    reward = med("_calculate_rewards")  # wraps every reward function
    sync = med("sync_weights")
    return {"steps_timed": len(use), "s_per_step": sec, "generation_s": gen, "reward_s": reward, "sync_s": sync,
            "update_s": round(sec - gen - reward - sync, 3), "reward_share": round(reward / sec, 4),
            "completion_tok_per_s": round(rollouts * length / sec),
            "peak_device_GiB": round(max(s["device_used_GiB"] for s in steps), 1),
            "peak_torch_GiB": round(max(s["torch_peak_GiB"] for s in steps), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=SHAPES, default="B1")
    ap.add_argument("--variants", default="ours,trl_default,no_vllm")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--no-vllm-steps", type=int, default=3, help="steps for the slow transformers variant")
    ap.add_argument("--work", default="/tmp/grpo-bench")
    ap.add_argument("--tokenizer", default="~/.cache/grpo-math/qwen2.5_tokenizer")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rates = card_rates()
    model_dir, data, prompt_tokens = build_assets(work, Path(args.tokenizer).expanduser())
    n_params = param_count(QWEN25_15B)
    prompts, group, length = SHAPES[args.shape]
    results = {"shape": args.shape, "rates": rates, "prompt_tokens": prompt_tokens,
               "floor": floor(args.shape, prompt_tokens, rates, n_params), "variants": {}}
    print(json.dumps({"rates": rates, "floor": results["floor"]}), flush=True)
    for variant in args.variants.split(","):
        steps = args.no_vllm_steps if variant == "no_vllm" else args.steps
        result = work / f"{variant}.json"
        cmd = [sys.executable, __file__, "--worker", "--result", str(result), "--length", str(length), "--",
               *overrides(args.shape, model_dir, data, work / f"out-{variant}", steps), *VARIANTS[variant],
               *args.overrides]
        t = time.perf_counter()
        rc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
        wall = time.perf_counter() - t
        if rc or not result.exists():
            results["variants"][variant] = {"error": f"exit {rc}", "wall_s": round(wall)}
            continue
        steps_log = json.loads(result.read_text())["steps"]
        results["variants"][variant] = {**summarize(steps_log, prompts * group, length), "wall_s": round(wall),
                                        "steps": steps_log}
        brief = {k: v for k, v in results["variants"][variant].items() if k != "steps"}
        print(f"[bench] {variant}: {json.dumps(brief)}", flush=True)
        if args.out:  # after every variant, so a run cut short keeps what it measured
            Path(args.out).write_text(json.dumps(results, indent=1))
    print_table(results)
    return 0


def print_table(results: dict) -> None:
    f = results["floor"]
    print(f"\nshape {results['shape']} on {results['rates']['card']}: copy {results['rates']['copy_GBps']} GB/s, "
          f"bf16 {results['rates']['bf16_TFLOPs']} TFLOP/s, prompt {results['prompt_tokens']} tokens")
    cols = ("s/step", 7), ("gen", 6), ("reward", 7), ("sync", 6), ("update", 7), ("tok/s", 7), ("peak GiB", 9)
    print(f"{'variant':<12} " + " ".join(f"{c:>{w}}" for c, w in cols))
    print(f"{'floor':<12} {f['total_s']:>7} {f['generation_s']:>6} {'':>7} {'':>6} {f['update_s']:>7}")
    for name, v in results["variants"].items():
        if "error" in v:
            print(f"{name:<12} {v['error']}")
            continue
        print(f"{name:<12} {v['s_per_step']:>7} {v['generation_s']:>6} {v['reward_s']:>7} {v['sync_s']:>6} "
              f"{v['update_s']:>7} {v['completion_tok_per_s']:>7} {v['peak_device_GiB']:>9}")


if __name__ == "__main__":
    sys.exit(main())
