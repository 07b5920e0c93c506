"""benchmarks/bench_engines.py: the summary ratio, and (slow) a whole run on tiny settings."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_engines", REPO / "benchmarks" / "bench_engines.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_summary_is_the_fastest_ghostdet_engine_over_the_counterparts_fastest():
    cell = {
        "GhostNet 1.0x": {"eager": 30.0, "deploy": 12.0, "onnxruntime": 9.0},
        "MobileNetV3-L": {"eager": 20.0, "onnxruntime": 10.0, "openvino": 12.0},
        "FRCNN-320 GhostNet": {"eager": 200.0},
    }
    assert _bench()._summary(cell) == {"GhostNet 1.0x": pytest.approx(0.9)}  # no counterpart: no ratio


@pytest.mark.slow
def test_a_tiny_run_prints_every_engine_row(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_engines.py"), "--threads", "1", "--sizes", "64"]
    cmd += ["--sections", "backbones", "--reps", "1", "--warmup", "0", "--json", str(tmp_path / "r.json")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| GhostNet 1.0x |" in r.stdout and "| MobileNetV3-L |" in r.stdout and "share of peak" in r.stdout
    assert (tmp_path / "r.json").is_file()
