"""The one checkpoint reader: good files round-trip, every bad file is one error naming it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ghostdet.engine.checkpoint import load_checkpoint
from ghostdet.errors import CheckpointError
from ghostdet.models.loading import load_detector
from ghostdet.models.weights import load_state_dict_file
from ghostdet.utils.checkpoint_io import CheckpointReadError, read_checkpoint

STATE = {"conv.weight": torch.arange(6.0).reshape(2, 3), "conv.bias": torch.tensor([1.0, -2.0])}


class _RunsCode:
    """Unpickling this would call ``os.mkdir(marker)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _torch_file(tmp_path: Path) -> Path:
    torch.save({"model": STATE, "epoch": 3}, tmp_path / "ok.pth")
    return tmp_path / "ok.pth"


def _safetensors_file(tmp_path: Path) -> Path:
    save_file(STATE, str(tmp_path / "ok.safetensors"))
    return tmp_path / "ok.safetensors"


def _bad_file(kind: str, tmp_path: Path) -> Path:
    if kind == "missing":
        return tmp_path / "nope.pth"
    if kind == "folder":
        (tmp_path / "dir.pth").mkdir()
        return tmp_path / "dir.pth"
    if kind == "empty":
        (tmp_path / "empty.pth").write_bytes(b"")
        return tmp_path / "empty.pth"
    if kind == "garbage":
        (tmp_path / "garbage.pth").write_text("these are not the weights you are looking for")
        return tmp_path / "garbage.pth"
    if kind == "truncated":
        data = _torch_file(tmp_path).read_bytes()
        (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
        return tmp_path / "cut.pth"
    if kind == "truncated safetensors":
        data = _safetensors_file(tmp_path).read_bytes()
        (tmp_path / "cut.safetensors").write_bytes(data[:-8])
        return tmp_path / "cut.safetensors"
    if kind == "garbage safetensors":
        (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)
        return tmp_path / "garbage.safetensors"
    assert kind == "pickled code"
    torch.save({"model": STATE, "payload": _RunsCode(tmp_path / "ran")}, tmp_path / "evil.pth")
    return tmp_path / "evil.pth"


BAD = [
    "missing", "folder", "empty", "garbage", "truncated", "truncated safetensors", "garbage safetensors",
    "pickled code",
]  # fmt: skip


def test_good_files_round_trip(tmp_path):
    ckpt = read_checkpoint(_torch_file(tmp_path))
    assert ckpt["epoch"] == 3 and ckpt["model"].keys() == STATE.keys()
    for k, v in STATE.items():
        assert torch.equal(ckpt["model"][k], v)
        assert torch.equal(read_checkpoint(_safetensors_file(tmp_path))[k], v)


@pytest.mark.parametrize("kind", BAD)
def test_every_bad_file_is_one_error_naming_the_file(kind, tmp_path):
    path = _bad_file(kind, tmp_path)
    with pytest.raises(CheckpointReadError) as e:
        read_checkpoint(path)
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg and len(msg) < 500
    expected = "checkpoint file not found" if kind in ("missing", "folder") else "could not read checkpoint"
    assert msg.startswith(expected)


def test_pickled_code_is_refused_not_run(tmp_path):
    path = _bad_file("pickled code", tmp_path)
    with pytest.raises(CheckpointReadError, match=r"pickled objects .*\(posix\.mkdir\).*state_dict"):
        read_checkpoint(path)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("kind", ["missing", "truncated", "pickled code"])
def test_weights_training_and_detector_loads_share_the_reader(kind, tmp_path):
    path = _bad_file(kind, tmp_path)
    with pytest.raises(CheckpointReadError) as direct:
        read_checkpoint(path)
    for load in (load_state_dict_file, load_checkpoint):
        with pytest.raises(CheckpointReadError) as e:
            load(path)
        assert str(e.value) == str(direct.value)
    with pytest.raises(CheckpointError) as e:  # a project error (one line in the tools), same message
        load_detector(checkpoint=path)
    assert str(e.value) == str(direct.value)
