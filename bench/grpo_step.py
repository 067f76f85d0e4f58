"""GRPO step-time benchmark through the project's own launcher and trainer, against the card's physical floor.

    python bench/grpo_step.py --shape B1 --variants ours,trl_default,no_vllm --out result.json
    python bench/grpo_step.py --shape B1 --gpus 2 --variants ours,server                  # 2 GPUs, DDP
    python bench/grpo_step.py --shape B2 --gpus 4 --model 7B --batch global --variants ours \
        --accelerate-config config/accelerate/fsdp2.yaml                                  # largest model test
    python bench/grpo_step.py --shape B1 --gpus 2 --nodes 2 --variants ours   # multi-node, rehearsed on one host
    python bench/grpo_step.py --prepare                # only build the random model and problems, print paths

Each variant runs `launch_trl.sh` (so `step3_GRPO/train_trl.py`'s `run()` on 1 GPU, accelerate on N, the vLLM
server in server mode) with this file as the entry point (GRPO_ENTRY), which adds timing hooks and fixed-length
generation (`ignore_eos`, no stop string) before it calls `run()`. The model is randomly initialised with a
Qwen2.5 architecture (1.5B, 3B or 7B). Reported per step (rank 0): wall seconds, the generation / reward /
weight-sync / policy-update split (TRL's profiling hooks), completion tokens/s over all GPUs, and peak GPU memory:
the device's during each step (driver-sampled, vLLM included), every GPU's over the whole run (`nvidia-smi`,
engine start and the vLLM server included; this script's own CUDA context adds ~0.5 GiB on the first GPU) and
each rank's torch peak (`max_memory_allocated`: the trainer, plus colocated vLLM's weights and KV cache, which
allocate in the same process and stay counted while vLLM sleeps). Also per GPU over the run (`gpu_state`): the SM
clock while busy, peak power and temperature, so that a slow run on a throttled card shows as such (two runs of
the 1-GPU baseline on one host can differ by 23% at the same clock: docs/benchmarks.md).
The floor, per GPU: generation reads the weights and the KV cache once per decode step, so it needs at least
decode_steps x bytes / copy bandwidth; the update needs ~8 x params x tokens FLOPs (forward for the old
log-probs, forward + backward) / matmul rate. Both rates are measured on the card first.

Shapes: B1 = 8 prompts x 8 completions x 512 tokens; B2 = 32 x 8 x 1024 (the recipe's 256 rollouts).
`--batch per-gpu` (default) gives every training GPU the shape's batch (scaling runs); `global` splits it.
Variants: `ours` (the YAML defaults), one change at a time from it (`sleep_off`, `sleep_on`, `ckpt_off`,
`ckpt_on`, `bf16_weights`, `fp32_weights`, `mb16`, `mb32`, `adamw`), `sleep_ckpt_off` (two changes),
`trl_default` (TRL's defaults with vLLM colocate: float32 weights with bf16 autocast, sleep mode off, no
gradient checkpointing, dapo loss, plain AdamW), `no_vllm` (transformers generation), `server` (vLLM server
on the last GPU, the others train), `lora` (LoRA adapters on the frozen base: `peft.enabled=true`), `lora_bf16`
(the same with the base in bfloat16), e.g. `--model 7B --shape B2 --variants lora,lora_bf16` on one GPU.
`--nodes N` rehearses N machines on this one: N launchers at once, each given its share of the visible GPUs
and `--num-machines N --machine-rank R --main-process-ip 127.0.0.1`, so the multi-node rendezvous, global ranks
and cross-"node" traffic run as on a cluster (over this host's interconnect, not a network).
Extra `key=value` config overrides after `--` apply to every variant, e.g. `-- vllm.gpu_memory_utilization=0.4`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {"B1": (8, 8, 512), "B2": (32, 8, 1024), "cpu": (2, 4, 16)}  # prompts per step, group size, tokens
VARIANTS = {
    "ours": [],
    # one change at a time against `ours`
    "sleep_off": ["vllm.enable_sleep_mode=false"],
    "sleep_on": ["vllm.enable_sleep_mode=true"],
    "ckpt_off": ["training.gradient_checkpointing=false"],
    "ckpt_on": ["training.gradient_checkpointing=true"],
    "bf16_weights": ["model.dtype=bfloat16"],
    "fp32_weights": ["model.dtype=float32"],
    "sleep_ckpt_off": ["vllm.enable_sleep_mode=false", "training.gradient_checkpointing=false"],
    "mb16": ["training.micro_batch_size=16"],
    "mb32": ["training.micro_batch_size=32"],
    "adamw": ["training.optim=adamw_torch"],
    "correction_off": ["vllm.importance_sampling_correction=false"],  # also leaves vLLM's log-probs out
    "share_sized": ["vllm.gpu_memory_utilization=null"],
    # every step-time lever at once: no checkpointing, no sleep mode, the engine's share sized from the batch, no
    # importance-sampling correction (and so no vLLM log-probs)
    "all_levers": ["training.gradient_checkpointing=false", "vllm.enable_sleep_mode=false",
                   "vllm.gpu_memory_utilization=null", "vllm.importance_sampling_correction=false"],
    # TRL 1.16's GRPOConfig defaults where they touch speed, with vLLM colocate
    "trl_default": ["model.dtype=float32", "vllm.enable_sleep_mode=false", "training.gradient_checkpointing=false",
                    "grpo.loss_type=dapo", "training.optim=adamw_torch", "training.micro_batch_size=8",
                    "vllm.gpu_memory_utilization=0.3", "vllm.importance_sampling_correction=true"],
    "no_vllm": ["vllm.use_vllm=false"],
    "server": ["vllm.mode=server", "vllm.enable_sleep_mode=false"],  # the server keeps its GPUs: no sleep mode
    # LoRA adapters (rank 16, every linear layer) on the frozen base; then with the base in bf16 (adapters stay fp32)
    "lora": ["peft.enabled=true"],
    "lora_bf16": ["peft.enabled=true", "model.dtype=bfloat16"],
}
# variants that differ by the worker's patches, not the config; TRL's defaults keep TRL's shuffled, padded
# micro-batches (the same as ours where every completion has one length, as here: it matters for real answers)
ENV = {"trl_default": {"BENCH_TRL_BATCHES": "1"}}
ARCH = {  # Qwen2.5 shapes (config.json of the released models)
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "3B": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    # the tests' CPU run of this script (the tokenizer's vocabulary is filled in)
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=None, tie_word_embeddings=True),
}
COMMON = dict(max_position_embeddings=4096, rope_theta=10000.0)


# ------------------------------------------------------------------------------------------ measurements
def card_rates() -> dict:
    """Measured device-memory copy bandwidth (GB/s) and dense bf16 matmul rate (TFLOP/s)."""
    import torch

    if not torch.cuda.is_available():  # the tests' CPU run: a nominal floor
        return {"copy_GBps": 10.0, "bf16_TFLOPs": 0.1, "card": "cpu"}

    def seconds(fn, reps: int = 20) -> float:  # per call, after 3 warm-up calls
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / reps

    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    bw = 2 * x.numel() / seconds(lambda: y.copy_(x)) / 1e9  # read + write
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    flops = 2 * 8192**3 / seconds(lambda: a @ a) / 1e12
    x = y = a = None  # free them before the trainer starts
    torch.cuda.empty_cache()
    return {"copy_GBps": round(bw, 1), "bf16_TFLOPs": round(flops, 1), "card": torch.cuda.get_device_name()}


def floor(arch: dict, seqs: int, length: int, prompt_tokens: int, rates: dict, n_params: float) -> dict:
    """Lower bound of one step for `seqs` rollouts of `length` tokens on one GPU."""
    weight_bytes = 2 * n_params
    head_dim = arch["hidden_size"] // arch["num_attention_heads"]
    kv_per_token = 2 * arch["num_hidden_layers"] * arch["num_key_value_heads"] * head_dim * 2  # K and V, bf16
    # decode step i reads all weights once and every sequence's KV cache of length prompt + i
    kv_bytes = sum(seqs * (prompt_tokens + i) * kv_per_token for i in range(length))
    gen_s = (length * weight_bytes + kv_bytes) / (rates["copy_GBps"] * 1e9)  # copy_GBps counts read + write traffic
    tokens = seqs * (prompt_tokens + length)
    upd_s = 8 * n_params * tokens / (rates["bf16_TFLOPs"] * 1e12)
    return {"generation_s": round(gen_s, 3), "update_s": round(upd_s, 3), "total_s": round(gen_s + upd_s, 3)}


def param_count(c: dict) -> int:
    """
    >>> round(param_count(ARCH["1.5B"]) / 1e9, 2), round(param_count(ARCH["7B"]) / 1e9, 2)
    (1.54, 7.62)
    """
    h, kv = c["hidden_size"], c["num_key_value_heads"] * (c["hidden_size"] // c["num_attention_heads"])
    attn = h * h * 2 + h * kv * 2 + h + 2 * kv  # q, o, k, v weights and the q/k/v biases
    mlp = 3 * h * c["intermediate_size"]
    embeddings = c["vocab_size"] * h * (1 if c["tie_word_embeddings"] else 2)
    return embeddings + c["num_hidden_layers"] * (attn + mlp + 2 * h) + h


# ------------------------------------------------------------------------------------------------ set-up
def build_assets(work: Path, tokenizer_dir: Path, size: str) -> tuple[Path, Path, int]:
    """A random bf16 model of a Qwen2.5 shape and a jsonl of synthetic problems, built once."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    model_dir = work / f"qwen2.5-{size}-random"
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if not (model_dir / "config.json").is_file():
        arch = {**ARCH[size], "vocab_size": ARCH[size]["vocab_size"] or len(tok)}
        config = Qwen2Config(**arch, **COMMON, eos_token_id=tok.eos_token_id, bos_token_id=None,
                             pad_token_id=tok.pad_token_id, torch_dtype="bfloat16")
        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = Qwen2ForCausalLM(config)
        torch.set_default_dtype(torch.float32)
        model.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        del model
        torch.cuda.empty_cache()
    data = work / "problems.jsonl"
    rows = [{"problem": f"Problem {i}: compute the sum of the first {i + 10} positive integers, then explain "
                        "each step of the reasoning carefully and check the result twice.",
             "solution": f"The answer is \\boxed{{{(i + 10) * (i + 11) // 2}}}.", "source": "synthetic"}
            for i in range(8192)]  # 5000 held out for the evaluation benchmark, the rest to train on
    if not data.is_file():  # runs started side by side share the folder: write once, atomically
        tmp = data.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.rename(data)
    from train.data import render

    template = (ROOT / "config/prompts/r1_zero.prompt").read_text()
    prompt_tokens = len(tok(render(template, rows[0]["problem"]))["input_ids"])
    return model_dir, data, prompt_tokens


def overrides(model_dir: Path, data: Path, out: Path, steps: int, prompts: int, group: int, length: int) -> list[str]:
    return [f"model.name_or_path={model_dir}", f"data.path={data}", "data.source_column=source",
            "data.eval_holdout=64", f"checkpointing.output_dir={out}", f"training.max_steps={steps}",
            f"training.prompts_per_step={prompts}", f"grpo.group_size={group}", f"grpo.max_completion_length={length}",
            "checkpointing.save_steps=100000", "checkpointing.resume=never", "checkpointing.overwrite=true",
            "evaluation.enabled=false", "logging.wandb=off"]


class GpuSampler:
    """Every visible GPU's state while a variant runs (engine start included), from `nvidia-smi` every 100 ms:
    the peak memory in use, whichever process holds it (trainer ranks, colocated vLLM, the vLLM server), and,
    to tell a slow run from a slow card, the SM clock while busy, the power and the temperature."""

    FIELDS = "index,memory.used,utilization.gpu,clocks.sm,power.draw,temperature.gpu"

    def __init__(self):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        cmd = ["nvidia-smi", f"--query-gpu={self.FIELDS}", "--format=csv,noheader,nounits", "-lms", "100"]
        try:
            self.proc = subprocess.Popen(cmd + (["-i", visible] if visible else []), stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
        except OSError:  # no NVIDIA driver (the CPU test)
            self.proc = None
        self.samples: dict[str, list[tuple]] = {}  # per GPU: (MiB used, util %, SM MHz, W, deg C), None if N/A
        if self.proc:
            self.thread = threading.Thread(target=self.read, daemon=True)
            self.thread.start()

    def read(self):
        def num(x):  # "[N/A]" and the like read as nothing
            try:
                return float(x)
            except ValueError:
                return None

        for line in self.proc.stdout:
            index, *values = (x.strip() for x in line.split(","))
            self.samples.setdefault(index, []).append(tuple(num(v) for v in (values + [""] * 5)[:5]))

    def stop(self) -> dict[str, float]:
        """Stop sampling; the peak memory in GiB per GPU."""
        if self.proc:
            self.proc.terminate()
            self.thread.join(timeout=5)
        peaks = {i: max((r[0] for r in rows if r[0] is not None), default=None) for i, rows in self.samples.items()}
        return {f"gpu{i}": round(mib / 1024, 1) for i, mib in sorted(peaks.items()) if mib is not None}

    def state(self) -> dict[str, dict]:
        """Per GPU: the SM clock's median and minimum over the samples with utilization >= 50%, peak power and
        temperature (a throttled card shows a low busy clock)."""
        out = {}
        for i, rows in sorted(self.samples.items()):
            mhz = sorted(r[2] for r in rows if r[1] is not None and r[1] >= 50 and r[2] is not None)
            out[f"gpu{i}"] = {"busy_samples": len(mhz), "sm_MHz_busy_median": mhz[len(mhz) // 2] if mhz else None,
                              "sm_MHz_busy_min": mhz[0] if mhz else None,
                              "power_W_max": max((r[3] for r in rows if r[3] is not None), default=None),
                              "temp_C_max": max((r[4] for r in rows if r[4] is not None), default=None)}
        return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(gpus: int, nodes: int, options: list[str], config: list[str], env: dict) -> int:
    """Run `launch_trl.sh` for one variant; with nodes > 1, one launcher per rehearsed machine, each on its own
    share of the visible GPUs, all meeting at 127.0.0.1. The exit status is the first failing launcher's; the
    others are then stopped, since they would wait for the lost machine until the rendezvous times out."""
    launcher = str(ROOT / "launch_trl.sh")
    if nodes == 1:
        return subprocess.run([launcher, str(gpus), *options, *config], env=env).returncode
    visible = env.get("CUDA_VISIBLE_DEVICES") or ",".join(map(str, range(gpus)))
    devices, per = visible.split(","), gpus // nodes
    procs = [subprocess.Popen([launcher, str(per), *options, "--num-machines", str(nodes), "--machine-rank", str(r),
                               "--main-process-ip", "127.0.0.1", "--main-process-port", env["MAIN_PROCESS_PORT"],
                               *config], env={**env, "CUDA_VISIBLE_DEVICES": ",".join(devices[r * per:(r + 1) * per])})
             for r in range(nodes)]
    while True:
        codes = [p.poll() for p in procs]
        failed = next((rc for rc in codes if rc), 0)
        if failed or None not in codes:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            return failed
        time.sleep(1)


# ------------------------------------------------------------------------------------------------ worker
def worker(config: str, config_overrides: list[str], result: str, length: int) -> int:
    """One variant in this process (one rank): patch in timing hooks and fixed-length generation, then run the
    trainer. Rank 0 writes the per-step log to `result`."""
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
        return {"ignore_eos": True} if use_vllm else {"min_new_tokens": length}

    tt.generation_kwargs = fixed_length
    if os.environ.get("BENCH_TRL_BATCHES"):
        from trl import GRPOTrainer

        from train.trainer import R1GRPOTrainer

        R1GRPOTrainer._prepare_inputs = GRPOTrainer._prepare_inputs

    cuda = torch.cuda.is_available()  # False only when the worker is tried on a CPU
    profile = Profile(int(os.environ.get("BENCH_PROFILE_STEP", 0)), Path(result).with_suffix(".profile.txt"))

    class StepTimer(TrainerCallback):
        """Wall time per step, and the device's peak memory in use during it: sampled every 20 ms from the
        driver, because vLLM's KV cache and sleep-mode pool are invisible to torch's allocator counters."""

        def on_step_begin(self, a, state, control, **kw):
            profile.begin(state.global_step + 1)
            timings.clear()
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                self.peak, self.sampling = 0, True
                self.sampler = threading.Thread(target=self.sample, args=(torch.cuda.current_device(),), daemon=True)
                self.sampler.start()
            self.t = time.perf_counter()

        def sample(self, device):
            while self.sampling:
                free, total = torch.cuda.mem_get_info(device)
                self.peak = max(self.peak, total - free)
                time.sleep(0.02)

        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
                self.sampling = False
                self.sampler.join()
            seconds = time.perf_counter() - self.t
            profiled = profile.end(state.global_step)
            steps.append({"step": state.global_step, "seconds": seconds, "profiled": profiled, **timings,
                          "device_peak_GiB": self.peak / 2**30 if cuda else 0.0,
                          "torch_peak_GiB": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0})

    import trl

    original_init = trl.GRPOTrainer.__init__

    def init_with_timer(self, *a, **kw):
        original_init(self, *a, **kw)
        self.add_callback(StepTimer())

    trl.GRPOTrainer.__init__ = init_with_timer
    from trl.generation import vllm_generation

    if hasattr(vllm_generation, "VLLMGeneration"):
        vllm_generation.VLLMGeneration.generate = profile.host(vllm_generation.VLLMGeneration.generate)

    def skip_weights(self, output_dir=None, _internal_call=False):
        # a benchmark's trained random weights are worth nothing, and 3-6 GB per variant fill a disk
        Path(output_dir).mkdir(parents=True, exist_ok=True)

    trl.GRPOTrainer.save_model = skip_weights
    tt.merge_final_model = lambda *a, **k: None  # LoRA: no adapter was saved to merge
    # nor the checkpoint transformers writes at the last step: 7B's ZeRO-3 optimizer state filled 128 GB of disk
    trl.GRPOTrainer._save_checkpoint = lambda self, model, trial: None
    rc = tt.run(config, config_overrides)
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        Path(result).write_text(json.dumps({"rc": rc, "world_size": int(os.environ.get("WORLD_SIZE", 1)),
                                            "steps": steps}))
    # every rank's torch peak: sharded setups (FSDP2, ZeRO) differ by rank
    peak = max((s["torch_peak_GiB"] for s in steps), default=0.0)
    Path(result).with_suffix(f".rank{rank}.json").write_text(json.dumps({"torch_peak_GiB": round(peak, 1)}))
    return rc


class Profile:
    """One step of rank 0 under the profilers (BENCH_PROFILE_STEP=N): cProfile over vLLM's generate() (the host's
    share of decoding: scheduling, sampling, detokenising, output objects) and torch.profiler over the whole step
    (the GPU's kernels, the update's split). Both tables go to one text file beside the result."""

    def __init__(self, step: int, path: Path):
        self.step, self.path, self.on = step, path, False
        self.rank0 = int(os.environ.get("RANK", 0)) == 0

    def begin(self, step: int) -> None:
        if not (self.rank0 and step == self.step):
            return
        import torch

        self.on = True
        kinds = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            kinds.append(torch.profiler.ProfilerActivity.CUDA)
        self.torch = torch.profiler.profile(activities=kinds)
        self.torch.__enter__()

    def host(self, generate):
        def wrapped(*a, **k):
            if not self.on:
                return generate(*a, **k)
            import cProfile
            import io
            import pstats

            prof = cProfile.Profile()
            out = prof.runcall(generate, *a, **k)
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(40)
            self.host_table = buf.getvalue()
            return out

        return wrapped

    def end(self, step: int) -> bool:
        """Whether this step ran under the profilers (its time is then left out of the summary)."""
        if not self.on:
            return False
        self.on = False
        self.torch.__exit__(None, None, None)
        import torch

        by = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        table = self.torch.key_averages().table(sort_by=by, row_limit=40, max_name_column_width=70)
        self.path.write_text(f"step {step}: vLLM generate() host profile (cProfile, by own time)\n"
                             f"{getattr(self, 'host_table', '(none)')}\n\ntorch.profiler, the whole step, by "
                             f"time ({by})\n{table}\n")
        return True


def summarize(steps: list[dict], rollouts: int, length: int) -> dict:
    steps = [s for s in steps if not s.get("profiled")]
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
            "peak_device_GiB": round(max(s["device_peak_GiB"] for s in steps), 1),
            "peak_torch_GiB": round(max(s["torch_peak_GiB"] for s in steps), 1)}


def main() -> int:
    if os.environ.get("BENCH_RESULT"):  # started by launch_trl.sh as GRPO_ENTRY: one rank of one variant
        import step3_GRPO.train_trl as tt

        a = tt.parse_args(sys.argv[1:])
        return worker(a.config, a.overrides, os.environ["BENCH_RESULT"], int(os.environ["BENCH_LENGTH"]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=SHAPES, default="B1")
    ap.add_argument("--variants", default="ours,trl_default,no_vllm")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs per variant (server mode: one of them serves)")
    ap.add_argument("--nodes", type=int, default=1, help="rehearse this many machines on this host (splits --gpus)")
    ap.add_argument("--accelerate-config", default=None, help="e.g. config/accelerate/fsdp2.yaml")
    ap.add_argument("--model", choices=ARCH, default="1.5B", help="the Qwen2.5 architecture, randomly initialised")
    ap.add_argument("--batch", choices=("per-gpu", "global"), default="per-gpu",
                    help="per-gpu: each training GPU gets the shape's prompts; global: they share them")
    ap.add_argument("--prompts", type=int, default=None,
                    help="prompts per step instead of the shape's (e.g. 24 for 3 training GPUs: 256 rollouts do not "
                    "split over 3)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--no-vllm-steps", type=int, default=3, help="steps for the slow transformers variant")
    ap.add_argument("--work", default="/tmp/grpo-bench", help="the random model and the problems (built once)")
    ap.add_argument("--scratch", default=None, help="each variant's output folder and result (default: --work)")
    ap.add_argument("--tokenizer", default="~/.cache/grpo-math/qwen2.5_tokenizer")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--profile-step", type=int, default=0,
                    help="profile this step of every variant (rank 0): <variant>.profile.txt beside the results")
    ap.add_argument("--prepare", action="store_true", help="build the model and problems, print their paths, exit")
    ap.add_argument("overrides", nargs="*", help="config overrides for every variant (after --)")
    args = ap.parse_args()
    if args.nodes < 1 or args.gpus % args.nodes:
        ap.error(f"--gpus {args.gpus} does not split over --nodes {args.nodes}")
    if args.nodes > 1 and "server" in args.variants.split(","):
        ap.error("the server variant serves from one machine; run it with --nodes 1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir, data, prompt_tokens = build_assets(work, Path(args.tokenizer).expanduser(), args.model)
    if args.prepare:
        print(json.dumps({"model": str(model_dir), "data": str(data), "prompt_tokens": prompt_tokens}))
        return 0
    from transformers import AutoConfig

    scratch = Path(args.scratch or args.work)
    scratch.mkdir(parents=True, exist_ok=True)
    rates = card_rates()
    arch = {**ARCH[args.model], "vocab_size": AutoConfig.from_pretrained(model_dir).vocab_size}
    n_params = param_count(arch)
    base_prompts, group, length = SHAPES[args.shape]
    base_prompts = args.prompts or base_prompts
    results = {"shape": args.shape, "model": args.model, "params": n_params, "gpus": args.gpus, "nodes": args.nodes,
               "accelerate_config": args.accelerate_config, "batch": args.batch, "rates": rates,
               "prompt_tokens": prompt_tokens, "overrides": args.overrides, "variants": {}}
    print(json.dumps({k: results[k] for k in ("shape", "model", "gpus", "accelerate_config", "rates")}), flush=True)
    for variant in args.variants.split(","):
        train_gpus = args.gpus - 1 if variant == "server" else args.gpus
        prompts = base_prompts * train_gpus if args.batch == "per-gpu" else base_prompts
        seqs_per_gpu = prompts * group // train_gpus
        steps = args.no_vllm_steps if variant == "no_vllm" else args.steps
        result = scratch / f"{variant}.json"
        for old in (result, *scratch.glob(f"{variant}.rank*.json")):
            old.unlink(missing_ok=True)
        options = ["--accelerate-config", str(args.accelerate_config)] if args.accelerate_config else []
        extra = [f"vllm.server_port={free_port()}"] if variant == "server" else []
        config = ["--config", str(ROOT / "config/grpo_config.yaml"),
                  *overrides(model_dir, data, scratch / f"out-{variant}", steps, prompts, group, length),
                  *VARIANTS[variant], *extra, *args.overrides]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRPO_ENTRY": __file__, "BENCH_RESULT": str(result),
               "BENCH_LENGTH": str(length), "MAIN_PROCESS_PORT": str(free_port()), "PYTHON": sys.executable,
               **ENV.get(variant, {}), **({"BENCH_PROFILE_STEP": str(args.profile_step)} if args.profile_step else {})}
        t = time.perf_counter()
        sampler = GpuSampler()
        rc = launch(args.gpus, args.nodes, options, config, env)
        wall = time.perf_counter() - t
        gpu = {"run_peak_GiB_per_gpu": sampler.stop(), "gpu_state": sampler.state()}
        if rc or not result.exists():
            results["variants"][variant] = {"error": f"exit {rc}", "wall_s": round(wall), **gpu}
        else:
            steps_log = json.loads(result.read_text())["steps"]
            ranks = [scratch / f"{variant}.rank{r}.json" for r in range(train_gpus)]
            v = {**summarize(steps_log, prompts * group, length), "wall_s": round(wall), "prompts": prompts,
                 "train_gpus": train_gpus, **gpu,
                 "trainer_peak_GiB_per_rank": [json.loads(f.read_text())["torch_peak_GiB"] for f in ranks
                                               if f.exists()],
                 "floor": floor(arch, seqs_per_gpu, length, prompt_tokens, rates, n_params)}
            results["variants"][variant] = {**v, "steps": steps_log}
            print(f"[bench] {variant}: {json.dumps(v)}", flush=True)
        if args.out:  # after every variant, so a run cut short keeps what it measured
            Path(args.out).write_text(json.dumps(results, indent=1))
    print_table(results)
    return 0


def print_table(results: dict) -> None:
    r = results["rates"]
    print(f"\nshape {results['shape']}, Qwen2.5-{results['model']} shape, {results['gpus']} GPU(s) "
          f"{results['accelerate_config'] or ''} on {r['card']}: copy {r['copy_GBps']} GB/s, "
          f"bf16 {r['bf16_TFLOPs']} TFLOP/s, prompt {results['prompt_tokens']} tokens")
    cols = ("s/step", 7), ("floor", 6), ("gen", 6), ("reward", 7), ("sync", 6), ("update", 7), ("tok/s", 7), \
        ("peak GiB", 9)
    print(f"{'variant':<13} " + " ".join(f"{c:>{w}}" for c, w in cols))
    for name, v in results["variants"].items():
        if "error" in v:
            print(f"{name:<13} {v['error']}")
            continue
        print(f"{name:<13} {v['s_per_step']:>7} {v['floor']['total_s']:>6} {v['generation_s']:>6} {v['reward_s']:>7} "
              f"{v['sync_s']:>6} {v['update_s']:>7} {v['completion_tok_per_s']:>7} {v['peak_device_GiB']:>9}")


if __name__ == "__main__":
    sys.exit(main())
