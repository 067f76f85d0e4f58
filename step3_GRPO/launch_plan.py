"""The launcher behind launch_trl.sh: check the config against the launch, build the command(s), run them.

A configuration mistake ends here with one line and exit code 2, before any process starts, the batch's fit to
the launch included (rollouts over the training processes, vLLM's tensor-parallel size): otherwise every rank
would fail on its own, under accelerate's traceback. One GPU runs the trainer directly; N GPUs, several machines
or an engine config run `accelerate launch`. With `vllm.mode: server` the last vllm.server_gpus GPUs run
`trl vllm-serve` (with the config's vLLM memory share and the run's context length), the others train; the
launcher waits for the server's /health and stops it when training ends or fails. The commands are argument
lists handed to exec, never a line re-split by a shell, so a path with a space stays one argument.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from train.config import ConfigError, load_config, max_model_len, resolve_path

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = "config/grpo_config.yaml"
USAGE = """usage: launch_trl.sh [NUM_GPUS] [options] [section.key=value ...]
  NUM_GPUS                 GPUs on this machine; 1 (default) runs python directly, N > 1 `accelerate launch`
  --config FILE            training YAML (default: config/grpo_config.yaml)
  --accelerate-config FILE an accelerate config passed through (config/accelerate/{ddp,fsdp2,zero2,zero3}.yaml);
                           without one, N GPUs run DDP
  --num-machines N --machine-rank R --main-process-ip IP [--main-process-port P]   multi-node (run on every node)
  --dry-run                print the command(s) instead of running them
  section.key=value        config overrides, e.g. training.max_steps=50 vllm.gpu_memory_utilization=0.4
With `vllm.mode: server` in the config, the last vllm.server_gpus of the NUM_GPUS run `trl vllm-serve`, the
others train; the launcher waits for the server's /health, and stops it when training ends or fails. On a
machine without GPUs, N processes train on the CPU as one group (gloo).
env knobs: PYTHON (the interpreter of every command, default: this one), MAIN_PROCESS_PORT (default 29500),
  ACCELERATE_CONFIG (same as the flag), SERVER_TIMEOUT (seconds to wait for the vLLM server, default 900),
  GRPO_ENTRY (the Python file run in place of train_trl.py with the same arguments: bench/grpo_step.py times
  the trainer through this launcher)
The exit status is the trainer's; 2 for a mistake in the command or the config."""


@dataclass
class Launch:
    train: list[str]  # the training command, as exec receives it
    serve: list[str] | None = None  # server mode: the vLLM server's command
    port: int | None = None  # server mode: where its /health answers
    note: str | None = None  # one line the launcher prints before it starts


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other refusal, instead of the usage text and a line
        raise ConfigError(f"{message} (see ./launch_trl.sh --help)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    argv = list(argv)
    gpus = 1
    number = bool(argv) and argv[0].lstrip("-").isdigit()  # -1 is a count of GPUs, however wrong, not an option
    if argv and (number or not argv[0].startswith("-")) and "=" not in argv[0]:  # not an option or a key
        if not number:
            raise ConfigError(f"NUM_GPUS (the first argument) must be a number of GPUs, got {argv[0]!r}; e.g. "
                              "./launch_trl.sh 2")
        gpus = int(argv.pop(0))
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        sys.exit(0)
    ap = OneLineParser(prog="launch_trl.sh", usage=USAGE, add_help=False)
    ap.add_argument("--config", default=None)
    ap.add_argument("--accelerate-config", default=None)
    ap.add_argument("--num-machines", type=int, default=1)
    ap.add_argument("--machine-rank", default=None)
    ap.add_argument("--main-process-ip", default=None)
    ap.add_argument("--main-process-port", default=None)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args(argv)
    args.gpus = gpus
    return args


def build(args: argparse.Namespace, environ: dict[str, str]) -> Launch:
    """The command(s) for this launch, after every check that needs no process started."""
    from step3_GRPO.train_trl import check_launch

    machines = args.num_machines
    if args.gpus < 1:
        raise ConfigError(f"NUM_GPUS must be at least 1, got {args.gpus}")
    if machines > 1 and not (args.machine_rank and args.main_process_ip):
        raise ConfigError(f"--num-machines {machines} needs --machine-rank and --main-process-ip (the rank-0 "
                          "node's address)")
    accel = args.accelerate_config or environ.get("ACCELERATE_CONFIG") or None
    if accel and not Path(accel).is_file():
        raise ConfigError(f"accelerate config {accel} not found")
    cfg = load_config(resolve_path(args.config or DEFAULT_CONFIG), args.overrides)
    v = cfg.vllm
    server = v.use_vllm and v.mode == "server"
    train_gpus = args.gpus - (v.server_gpus if server else 0)
    if train_gpus < 1:
        raise ConfigError(f"vllm.server_gpus={v.server_gpus} leaves none of the {args.gpus} GPUs to train on; "
                          "launch with more GPUs or lower vllm.server_gpus")
    if server and machines > 1:
        raise ConfigError("vllm.mode server serves from this node only; use vllm.mode=colocate on several nodes")
    check_launch(cfg, train_gpus * machines)
    note = None
    if not args.dry_run:
        check_deepspeed(accel)
        present = gpus_present()
        if present is not None and args.gpus > present:
            raise ConfigError(f"{args.gpus} GPUs requested but {present} present; run with {present}")
        if present is None and train_gpus * machines > 1:
            note = f"no GPU found (no nvidia-smi): {train_gpus} CPU processes train as one group (gloo)"

    python = environ.get("PYTHON") or sys.executable
    entry = environ.get("GRPO_ENTRY") or str(HERE / "train_trl.py")
    if train_gpus == 1 and machines == 1 and not accel:
        train = [python, entry]
    else:  # accelerate counts processes over all machines
        train = [python, "-m", "accelerate.commands.launch", "--num_processes", str(train_gpus * machines),
                 "--num_machines", str(machines), "--main_process_port",
                 args.main_process_port or environ.get("MAIN_PROCESS_PORT", "29500")]
        if machines > 1:
            train += ["--machine_rank", args.machine_rank, "--main_process_ip", args.main_process_ip]
        # DDP without a config: said outright, since accelerate infers it only from >1 GPU on this node, and on
        # nodes of one GPU each would start every node as a lone single-process run
        train += ["--config_file", accel] if accel else ["--multi_gpu"]
        train += [entry]
    train += [*(["--config", args.config] if args.config else []), *args.overrides]
    if not server:
        return Launch(train, note=note)

    from train.models import check_model_source, materialize

    check_model_source(cfg.model)
    model = materialize(cfg.model)  # a GGUF is converted once, as the trainer would
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(args.gpus)]
    serve = ["env", f"CUDA_VISIBLE_DEVICES={','.join(devices[train_gpus:train_gpus + v.server_gpus])}", python,
             "-m", "trl.cli.main", "vllm-serve", "--model", model, "--tensor_parallel_size", str(v.server_gpus),
             "--port", str(v.server_port), "--gpu_memory_utilization",
             str(v.gpu_memory_utilization or SERVER_SHARE),
             "--max_model_len", str(max_model_len(cfg))]
    train = ["env", f"CUDA_VISIBLE_DEVICES={','.join(devices[:train_gpus])}", *train]
    return Launch(train, serve, v.server_port, note)


SERVER_SHARE = 0.9  # vllm.gpu_memory_utilization: null in server mode: the server's GPUs serve and nothing else


def check_deepspeed(accel: str | None) -> None:
    import yaml

    engine = (yaml.safe_load(Path(accel).read_text()) or {}).get("distributed_type") if accel else None
    if engine == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"{accel} runs DeepSpeed, which is not installed: pip install -e '.[deepspeed]'")


def gpus_present() -> int | None:
    """GPUs on this machine by nvidia-smi, or None where there is no nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    return sum(line.startswith("GPU ") for line in listed.splitlines())


def serve_and_train(launch: Launch, timeout: float) -> int:
    """Server mode: the server in a process group of its own (stopping it stops its workers), then training."""
    server = subprocess.Popen(launch.serve, start_new_session=True)
    default = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a scheduler's stop still stops the server
    print(f"[launch] vLLM server (pid {server.pid}): {launch.serve[1]}, port {launch.port}; waiting for /health",
          file=sys.stderr, flush=True)
    try:
        start = time.monotonic()
        while not healthy(launch.port):
            if server.poll() is not None:
                raise ConfigError("the vLLM server exited before it was ready (see its log above)")
            if time.monotonic() - start > timeout:
                raise ConfigError(f"the vLLM server was not ready after {timeout:.0f} s (SERVER_TIMEOUT)")
            time.sleep(2)
        return subprocess.run(launch.train).returncode
    finally:
        stop(server)
        signal.signal(signal.SIGTERM, default)


def healthy(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
        return True
    except OSError:
        return False


def stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def main(argv: list[str] | None = None) -> int:
    environ = dict(os.environ)
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        launch = build(args, environ)
        if args.dry_run:
            if launch.serve:
                print(shlex.join(launch.serve) + " &")
            print(shlex.join(launch.train))
            return 0
        if launch.note:
            print(f"[launch] {launch.note}", file=sys.stderr, flush=True)
        if launch.serve is None:
            sys.stdout.flush()
            os.execvp(launch.train[0], launch.train)  # the trainer takes this process's place (and its signals)
        return serve_and_train(launch, float(environ.get("SERVER_TIMEOUT", 900)))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
