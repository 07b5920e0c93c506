"""The run-folder rule: a run never replaces or mixes with another run's files.

Unit cases for :func:`ghostdet.utils.run_dir.claim_run_dir` (next free name, the lock, exist_ok),
and the same through ``tools/train_det.py``: a second run into a run folder, a refused resume,
a lock held by another process, a file-size limit during a checkpoint write, and (slow) two runs
started at once into one folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ghostdet.errors import OutputError, RunFolderBusyError
from ghostdet.utils.locking import FileLock
from ghostdet.utils.run_dir import LOCK_NAME, claim_run_dir
from tests.test_bad_input import _fake_checkpoint, _load_tool, _one_error_line, _tiny_data, _train_argv

REPO = Path(__file__).resolve().parents[1]


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds ``folder``'s run lock until it is killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from ghostdet.utils.locking import FileLock
        lock = FileLock({str(folder / LOCK_NAME)!r})
        assert lock.acquire(blocking=False)
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    return proc


# ----------------------------------------------------------------------------- claim_run_dir
def test_a_folder_holding_a_run_is_not_reused(tmp_path):
    run = tmp_path / "run"
    lines: list[str] = []
    with claim_run_dir(run, log=lines.append) as first:
        assert first.path == run and lines == []
        (run / "checkpoint.pth").write_bytes(b"old")
    with claim_run_dir(run, log=lines.append) as second:
        assert second.path == tmp_path / "run2"
    assert "holds a previous run (checkpoint.pth)" in lines[0] and str(tmp_path / "run2") in lines[0]
    (tmp_path / "run2" / "best.pth").write_bytes(b"x")
    with claim_run_dir(run, log=lines.append) as third:
        assert third.path == tmp_path / "run3"
    assert (run / "checkpoint.pth").read_bytes() == b"old"


def test_resume_reuses_and_exist_ok_starts_afresh(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.pth", "best.pth", "log.txt"):
        (run / name).write_bytes(b"old")
    (run / "tensorboard").mkdir()
    with claim_run_dir(run, reuse=True) as folder:
        assert folder.path == run and (run / "best.pth").read_bytes() == b"old"
    lines: list[str] = []
    with claim_run_dir(run, reuse=True, fresh=True, log=lines.append) as folder:
        assert folder.path == run
    assert not (run / "checkpoint.pth").exists() and not (run / "best.pth").exists()
    assert not (run / "tensorboard").exists() and (run / "log.txt").read_bytes() == b"old"  # a log is kept
    assert "removed the previous run's checkpoint.pth, best.pth, tensorboard" in lines[0]


def test_the_lock_moves_a_new_run_on_and_refuses_a_reuse(tmp_path):
    run = tmp_path / "run"
    held = claim_run_dir(run)
    try:
        with claim_run_dir(run, log=lambda s: None) as other:
            assert other.path == tmp_path / "run2"
        with pytest.raises(
            RunFolderBusyError, match=rf"{run} is being written by another run \(pid {os.getpid()}\)"
        ):
            claim_run_dir(run, reuse=True)
    finally:
        held.release()
    with claim_run_dir(run, reuse=True) as again:  # released: free again
        assert again.path == run


def test_a_lock_of_another_process_is_released_when_it_dies(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    proc = _hold_lock(run)
    try:
        with pytest.raises(RunFolderBusyError, match=f"pid {proc.pid}"):
            claim_run_dir(run, reuse=True)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    with claim_run_dir(run, reuse=True) as folder:  # killed: the OS dropped its lock
        assert folder.path == run


def test_output_dir_under_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is under the file"):
        claim_run_dir(tmp_path / "f" / "run")
    assert (tmp_path / "f").read_text() == "x"


def test_lock_released_on_error(tmp_path):
    lock = FileLock(tmp_path / "l")
    with pytest.raises(ZeroDivisionError), lock:
        raise ZeroDivisionError
    assert lock.acquire(blocking=False)
    lock.release()


# ----------------------------------------------------------------------------- through train_det
def test_a_second_run_goes_to_the_next_folder_and_says_so(tmp_path, capsys):
    _tiny_data(tmp_path)
    train = _load_tool("train_det")
    assert train(_train_argv(tmp_path)) == 0
    run = tmp_path / "run"
    first = _hashes(run)
    assert any(k.endswith("best.pth") for k in first)
    capsys.readouterr()
    assert train(_train_argv(tmp_path, "--seed", "3")) == 0
    out = capsys.readouterr().out
    assert f"{run} holds a previous run" in out and f"writing to {tmp_path / 'run2'}" in out
    assert {k: v for k, v in _hashes(run).items() if not k.endswith("log.txt")} == {
        k: v for k, v in first.items() if not k.endswith("log.txt")
    }
    ckpt = torch.load(tmp_path / "run2" / "checkpoint.pth", weights_only=True)
    assert ckpt["config"]["seed"] == 3 and ckpt["config"]["output_dir"] == str(tmp_path / "run2")
    # --exist-ok: a fresh run in the old folder, nothing of the old run left beside it
    assert train(_train_argv(tmp_path, "--seed", "4", "--exist-ok")) == 0
    for name in ("checkpoint.pth", "best.pth"):
        assert torch.load(run / name, weights_only=True)["config"]["seed"] == 4
    assert "seed: 4" in (run / "config.yaml").read_text()


def test_a_refused_resume_leaves_config_yaml_alone(tmp_path, capsys):
    _tiny_data(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    _fake_checkpoint(run / "checkpoint.pth", num_classes=7)
    (run / "config.yaml").write_text("seed: 99\n")
    before = _hashes(run)
    assert _load_tool("train_det")(_train_argv(tmp_path, "--resume", "auto")) == 2
    _one_error_line(capsys.readouterr().err, "classes incl. background 7")
    after = _hashes(run)
    assert {k: v for k, v in after.items() if not k.endswith(("log.txt", LOCK_NAME))} == before


def test_a_run_folder_in_use_is_refused_for_resume_and_avoided_otherwise(tmp_path, capsys):
    _tiny_data(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    proc = _hold_lock(run)
    try:
        train = _load_tool("train_det")
        assert train(_train_argv(tmp_path, "--resume", "auto")) == 2
        _one_error_line(capsys.readouterr().err, "train_det.py: error: --output-dir", f"pid {proc.pid}")
        assert train(_train_argv(tmp_path)) == 0
        assert "is being written by another run" in capsys.readouterr().out
        assert (tmp_path / "run2" / "checkpoint.pth").is_file() and not (run / "checkpoint.pth").exists()
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_file_size_limit_during_a_checkpoint_write_is_one_line(tmp_path):
    """RLIMIT_FSIZE below the checkpoint's size: one line, the previous checkpoint intact."""
    _tiny_data(tmp_path)
    argv = _train_argv(tmp_path)
    assert _load_tool("train_det")(argv) == 0
    ckpt = tmp_path / "run" / "checkpoint.pth"
    before = ckpt.read_bytes()
    limit = len(before) // 2
    code = textwrap.dedent(
        f"""
        import resource, runpy, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        sys.argv = ["train_det.py", *{[*argv, "--resume", "auto", "--epochs", "2"]!r}]
        runpy.run_path({str(REPO / "tools" / "train_det.py")!r}, run_name="__main__")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 2, r.stderr[-3000:]
    _one_error_line(
        r.stderr, f"could not write {ckpt}", "file-size limit", f"the last checkpoint {ckpt} is intact"
    )
    assert ckpt.read_bytes() == before
    assert not list(ckpt.parent.glob(".*tmp*"))


@pytest.mark.slow
def test_two_runs_started_at_once_never_mix(tmp_path):
    _tiny_data(tmp_path)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tools" / "train_det.py"),
                *_train_argv(tmp_path, "--seed", str(seed)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        for seed in (11, 12)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    seeds = set()
    for folder in (tmp_path / "run", tmp_path / "run2"):
        docs = [torch.load(folder / n, weights_only=True)["config"] for n in ("checkpoint.pth", "best.pth")]
        yaml_seed = int(
            next(s for s in (folder / "config.yaml").read_text().splitlines() if s.startswith("seed:"))[5:]
        )
        assert docs[0]["seed"] == docs[1]["seed"] == yaml_seed
        assert json.loads((folder / "metrics.json").read_text())["final"]
        seeds.add(yaml_seed)
    assert seeds == {11, 12}
    assert sum("writing to" in o for o in outs) == 1


def test_a_failed_tensorboard_write_is_one_line(tmp_path):
    """The event writer thread fails on a file-size limit: one error naming the folder, no traceback."""
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from ghostdet.cli import run_tool
        from ghostdet.utils.distributed import DistInfo
        from ghostdet.engine.run import open_tensorboard
        import torch

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), distributed=False)
        out = Path({str(tmp_path)!r})

        def body():
            writer = open_tensorboard(out, info, 0)
            resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
            for i in range(2000):
                writer.add_scalar("x", float(i), i)
            writer.flush()
            writer.close()

        sys.exit(run_tool(body, "t.py"))
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2, r.stderr
    _one_error_line(
        r.stderr, f"could not write {tmp_path / 'tensorboard'}", "file-size limit", "no checkpoint"
    )


ABLATE_CASES = [
    ("output_under_a_file", "file/sweep", "is under the file"),
    ("foreign_ablation_csv", "foreign", "not an ablation table written by ghostdet"),
]


@pytest.mark.parametrize("case,out,expected", ABLATE_CASES, ids=[c[0] for c in ABLATE_CASES])
@pytest.mark.parametrize("debug", [False, True])
def test_ablate_tool_output_errors_are_one_line(tmp_path, capsys, case, out, expected, debug):
    (tmp_path / "file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "ablation.csv").write_text("name,score\nmine,1\n")
    before = _hashes(tmp_path)
    argv = ["--data-path", str(tmp_path / "no_data"), "--output-dir", str(tmp_path / out), "--resume", "auto"]
    assert _load_tool("ablate_ghost")([*argv, *(["--debug"] if debug else [])]) == 2
    err = capsys.readouterr().err
    if debug:  # --debug: the traceback, then the same line
        assert "Traceback" in err and err.strip().splitlines()[-1].startswith("ablate_ghost.py: error:")
    else:
        _one_error_line(err, "ablate_ghost.py: error: --output-dir", expected)
    assert {k: v for k, v in _hashes(tmp_path).items() if not k.endswith(LOCK_NAME)} == before
