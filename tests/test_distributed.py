"""The shared torch.distributed helpers: one rule for rank/world, used by engine and evaluation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ghostdet.errors import InputError
from ghostdet.utils.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    cleanup_distributed,
    init_distributed,
    is_main_process,
    rank_world,
    reduce_mean,
)

TORCHRUN_ENV = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}


def test_without_a_group_the_torchrun_environment_is_not_a_placement(monkeypatch):
    # launched by torchrun but not joined: no group to gather with, so the process works alone
    for k, v in TORCHRUN_ENV.items():
        monkeypatch.setenv(k, v)
    assert not torch.distributed.is_initialized()
    assert rank_world() == (0, 1)
    assert is_main_process()
    assert all_gather_objects({"a": 1}) == [{"a": 1}]
    values = {"loss": torch.tensor(2.5), "cls": torch.tensor(-1.0)}
    assert reduce_mean(values) == values
    barrier()  # no group: returns at once


def test_single_process_init_creates_nothing(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    info = init_distributed("cpu")
    assert info == DistInfo(0, 1, 0, torch.device("cpu"), False, created=False)
    assert info.is_main
    cleanup_distributed(info)
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize(("device", "message"), [("tpu", "unknown device"), ("meta", "unsupported device")])
def test_bad_device_strings(device, message):
    with pytest.raises(InputError, match=message) as e:
        init_distributed(device)
    assert e.value.argument == "device"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    info = init_distributed("cpu")
    out = {"info": [info.rank, info.world_size, info.local_rank, info.distributed, info.created]}
    # the group, once there, is the truth, whatever the environment says
    os.environ["WORLD_SIZE"] = "1"
    os.environ["RANK"] = "0"
    out["rank_world"] = list(rank_world())
    out["main"] = is_main_process()
    again = init_distributed("cpu")  # joins nothing new, so it will destroy nothing
    out["again"] = [again.rank, again.world_size, again.created]
    cleanup_distributed(again)
    out["kept"] = torch.distributed.is_initialized()
    out["gathered"] = all_gather_objects(f"r{rank}")
    out["mean"] = float(reduce_mean({"x": torch.tensor(float(rank) * 3)})["x"])
    barrier()
    cleanup_distributed(info)
    out["destroyed"] = not torch.distributed.is_initialized()
    Path(out_dir, f"{rank}.json").write_text(json.dumps(out))


def test_two_gloo_processes_follow_the_group(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"{rank}.json").read_text())
        assert got["info"] == [rank, 2, rank, True, True]
        assert got["rank_world"] == [rank, 2] and got["main"] == (rank == 0)
        assert got["again"] == [rank, 2, False] and got["kept"]
        assert got["gathered"] == ["r0", "r1"]
        assert got["mean"] == pytest.approx(1.5)  # (0 + 3) / 2
        assert got["destroyed"]


def test_evaluation_does_not_import_engine():
    code = (
        "import sys, ghostdet.evaluation.evaluate, ghostdet.utils.distributed; "
        "print(sorted(m for m in sys.modules if m.startswith('ghostdet.engine')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
