"""The step-time benchmark runs the project's launcher and trainer (GRPO_ENTRY), here on the CPU with a tiny
model: the same code path the GPU table comes from, minus vLLM."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_launcher_runs_another_entry_point_with_the_same_arguments():
    env = {**os.environ, "PYTHON": sys.executable, "GRPO_ENTRY": "bench/grpo_step.py"}
    r = subprocess.run([str(ROOT / "launch_trl.sh"), "2", "training.seed=3", "--dry-run"], capture_output=True,
                       text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    assert "bench/grpo_step.py training.seed=3" in r.stdout and "train_trl.py" not in r.stdout


def test_benchmark_times_steps_through_the_trainer(tmp_path, tiny_model):
    out = tmp_path / "result.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench/grpo_step.py"), "--shape", "cpu", "--model", "tiny",
                        "--tokenizer", str(tiny_model), "--work", str(tmp_path), "--variants", "ours,lora",
                        "--steps", "4", "--profile-step", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    for name in ("ours", "lora"):
        v = res["variants"][name]
        assert "error" not in v, (name, v, r.stderr[-3000:])
        # step 2 ran under the profilers: logged, left out of the timing, its tables written beside the result
        assert [s["step"] for s in v["steps"]] == [1, 2, 3, 4] and v["steps_timed"] == 2
        assert [s["profiled"] for s in v["steps"]] == [False, True, False, False]
        assert "torch.profiler, the whole step" in (tmp_path / f"{name}.profile.txt").read_text()
        assert v["s_per_step"] > 0 and v["completion_tok_per_s"] == round(2 * 4 * 16 / v["s_per_step"])
        assert 0 < v["generation_s"] < v["s_per_step"] and v["floor"]["total_s"] > 0
        assert len(v["trainer_peak_GiB_per_rank"]) == 1  # one process; no GPU, so no driver samples
    # the variant's overrides reached the trainer's resolved config, on top of the shape's batch
    cfg = yaml.safe_load((tmp_path / "out-lora" / "resolved_config.yaml").read_text())
    assert cfg["peft"]["enabled"] is True and cfg["training"]["prompts_per_step"] == 2
    assert cfg["grpo"]["max_completion_length"] == 16
    assert not list((tmp_path / "out-ours" / "final_model").glob("*.safetensors"))  # weights are not saved


def test_gpu_sampler_keeps_each_gpus_peak_and_busy_clock(tmp_path, monkeypatch):
    """The run-long sampler reads `nvidia-smi`'s CSV lines: the largest memory reading of every GPU, and its SM
    clock over the busy samples only (an idle card's clock says nothing of throttling)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from grpo_step import GpuSampler

    lines = ["0, 100, 0, 345, 80.5, 30", "1, 2048, 90, 1980, 650.0, 61", "0, 3072, 95, 1500, 700.1, 70",
             "1, [N/A], [N/A], [N/A], [N/A], [N/A]", "0, 50, 60, 1700, 690.0, 72", "0, 60, 99, 1900, 600, 65"]
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '" + "\\n".join(lines) + "\\n'\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    sampler = GpuSampler()
    time.sleep(1)
    assert sampler.stop() == {"gpu0": 3.0, "gpu1": 2.0}
    assert sampler.state() == {
        "gpu0": {"busy_samples": 3, "sm_MHz_busy_median": 1700.0, "sm_MHz_busy_min": 1500.0, "power_W_max": 700.1,
                 "temp_C_max": 72.0},
        "gpu1": {"busy_samples": 1, "sm_MHz_busy_median": 1980.0, "sm_MHz_busy_min": 1980.0, "power_W_max": 650.0,
                 "temp_C_max": 61.0},
    }


def test_rehearsed_nodes_split_the_gpus_and_meet_at_one_address(monkeypatch):
    """`--nodes 2` starts one launcher per rehearsed machine on its own half of the visible GPUs; each command is
    one the real launcher accepts and turns into accelerate's multi-node launch. A failing node fails the run
    and stops the node left waiting for it."""
    sys.path.insert(0, str(ROOT / "bench"))
    import grpo_step

    started, nodes = [], []

    class FakePopen:  # node 0 would wait forever; node 1 fails
        def __init__(self, cmd, env):
            started.append((cmd, env["CUDA_VISIBLE_DEVICES"]))
            nodes.append(self)
            self.rc = 3 if len(started) == 2 else None

        def poll(self):
            return self.rc

        def terminate(self):
            self.rc = -15

    monkeypatch.setattr(grpo_step.subprocess, "Popen", FakePopen)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "4,5,6,7", "MAIN_PROCESS_PORT": "29612", "PYTHON": sys.executable}
    assert grpo_step.launch(4, 2, [], ["training.seed=1"], env) == 3
    assert [devices for _, devices in started] == ["4,5", "6,7"]
    assert nodes[0].rc == -15  # stopped, not left waiting
    monkeypatch.undo()
    for rank, (cmd, _) in enumerate(started):
        r = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, cwd=ROOT, env=env)
        assert r.returncode == 0, r.stderr
        assert (f"--num_processes 4 --num_machines 2 --main_process_port 29612 --machine_rank {rank} "
                "--main_process_ip 127.0.0.1") in r.stdout


def test_benchmark_refuses_nodes_that_do_not_split_the_gpus():
    r = subprocess.run([sys.executable, str(ROOT / "bench/grpo_step.py"), "--gpus", "3", "--nodes", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--gpus 3 does not split over --nodes 2" in r.stderr


def test_data_stage_benchmark_second_process_reads_the_cache(tmp_path, tiny_model):
    """bench/data_scale.py at a small scale: the first process computes into datasets' cache, the second (another
    rank) writes nothing and gets the same split."""
    out = tmp_path / "data.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench/data_scale.py"), "--rows", "3000", "--tokenizer",
                        str(tiny_model), "--work", str(tmp_path), "--out", str(out), "data.eval_holdout=100",
                        "data.max_prompt_tokens=300"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    first, second = json.loads(out.read_text())["processes"]
    assert first["new_cache_files"] > 0 and second["new_cache_files"] == 0
    assert first["heldout_sha256"] == second["heldout_sha256"] and first["stats"] == second["stats"]
    assert first["stats"]["rows"] == 3000 and 0 < first["stats"]["dropped_no_gold"] < 150
    assert first["stats"]["dropped_long_prompt"] > 0  # the long problems meet the prompt filter
    assert 0 < second["peak_rss_GiB"] < 2 and second["wall_s"] > 0


def run_suite(tmp_path, suite: str, gpus: int, job_rc: int = 3):
    """bench/offline/gpu_suite.sh on a fake machine: `nvidia-smi -L` lists `gpus` GPUs and every python3 command
    (each job) is recorded and exits with `job_rc`."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "nvidia-smi").write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {i}: fake'\n" for i in range(gpus)))
    (fake / "python3").write_text(f'#!/bin/sh\necho "$CUDA_VISIBLE_DEVICES $*" >> "{tmp_path}/calls"\nexit {job_rc}\n')
    for f in fake.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "RES": str(tmp_path / "res"),
           "WORK": str(tmp_path / "work")}
    r = subprocess.run(["bash", str(ROOT / "bench/offline/gpu_suite.sh"), suite], capture_output=True, text=True,
                       env=env, timeout=120)
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    progress = (tmp_path / "res/progress").read_text() if (tmp_path / "res/progress").exists() else ""
    return r, calls, progress


def test_gpu_suite_reports_each_jobs_own_exit_status(tmp_path):
    r, calls, progress = run_suite(tmp_path, "eval", gpus=1, job_rc=3)
    ends = re.findall(r"end (\S+) rc=(\d+)", progress)
    assert [name for name, _ in ends] == ["prepare_1.5B", "eval_random"]
    assert all(rc == "3" for _, rc in ends), progress  # the job's status, not that of the `date` beside it
    assert (tmp_path / "res/DONE").exists() and r.returncode == 0


# (suite, GPUs on the machine) -> commands the suite must run, and ones it must not
SUITES = [
    # on 2 GPUs: the baseline on each GPU, every engine on both, the rehearsed two machines; nothing on 4
    ("scaling", 2, ["0 bench/grpo_step.py", "1 bench/grpo_step.py",
                    "--gpus 2 --variants sleep_ckpt_off --accelerate-config config/accelerate/zero3.yaml",
                    "--gpus 2 --variants server", "--gpus 2 --nodes 2"], ["--gpus 4"]),
    # on 4 GPUs the engines run on all four too
    ("scaling", 4, ["0,1,2,3 bench/grpo_step.py", "--gpus 4 --variants sleep_ckpt_off --accelerate-config "
                    "config/accelerate/fsdp2.yaml", "--gpus 4 --variants server"], []),
    # the 7B runs that need 4 GPUs are left out on 2
    ("largest", 2, ["--model 7B --batch global --variants ours --steps 2 --accelerate-config "
                    "config/accelerate/zero3.yaml"], ["--gpus 4"]),
    # the single-GPU suites size vLLM's share from the batch, as the defaults do: no H200-as-H100 override
    ("step-time", 1, ["--shape B1 --steps 6 --profile-step 3 --variants all_levers,trl_default,ours"],
     ["--gpus 2", "gpu_memory_utilization=0.17"]),
    ("levers", 1, ["--variants correction_off,share_sized,sleep_off,ckpt_off,mb16"], ["--gpus 2"]),
    ("b2", 1, ["--shape B2 --steps 3 --variants all_levers,trl_default,ours"], ["--gpus 2"]),
    ("lora", 1, ["--shape B2 --model 7B --steps 2 --variants lora,lora_bf16"], ["--gpus 2"]),
    ("wall", 1, ["bench/wall_time.py", "--variants ours,own_engine", "training.max_steps=3"], ["--gpus 2"]),
]


@pytest.mark.parametrize("suite,gpus,runs,never", SUITES, ids=[f"{s}-{g}gpu" for s, g, _, _ in SUITES])
def test_gpu_suite_runs_its_tables_commands(tmp_path, suite, gpus, runs, never):
    r, calls, _ = run_suite(tmp_path, suite, gpus)
    assert r.returncode == 0, r.stderr
    for part in runs:
        assert any(part in c for c in calls), (part, calls)
    for part in never:
        assert not any(part in c for c in calls), (part, calls)
    if suite in ("scaling", "largest"):
        assert all("-- vllm.gpu_memory_utilization=0.17" in c for c in calls if "--prepare" not in c)


@pytest.mark.parametrize("suite,gpus,message", [
    ("nope", 2,
     "usage: bash bench/offline/gpu_suite.sh SUITE, one of: step-time levers b2 lora wall scaling largest eval"),
    ("scaling", 1, "suite scaling needs 2 GPUs, this machine has 1"),
])
def test_gpu_suite_refuses_what_it_cannot_run(tmp_path, suite, gpus, message):
    r, calls, _ = run_suite(tmp_path, suite, gpus)
    assert r.returncode == 2 and r.stderr.strip().endswith(message) and not calls
