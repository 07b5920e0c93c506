"""benchmarks/bench_cpu.py plumbing (argument checks, interleaving, model wrappers) — no timings asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ghostdet.models import ghostnet

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_cpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_args_sections_and_errors(bench, capsys):
    args = bench.parse_args(["--quick"])
    assert args.reps == 8 and args.warmup == 2
    assert "compile" not in args.section_list and "backbone" in args.section_list
    assert bench.parse_args(["--sections", "onnx,backbone"]).section_list == ["onnx", "backbone"]
    for bad in (["--sections", "backbone,nope"], ["--threads", "0"], ["--reps", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    assert "nope" in capsys.readouterr().err


def test_interleaved_runs_every_function_in_turn(bench):
    order: list[str] = []
    fns = {k: (lambda k=k: order.append(k)) for k in ("a", "b")}
    med = bench.interleaved(fns, reps=3, warmup=2)
    assert set(med) == {"a", "b"} and all(v >= 0 for v in med.values())
    assert order == ["a", "b"] * 5  # warm-up then timed repetitions, alternating


def test_interleaved_counts_page_faults_of_fresh_memory(bench):
    """The per-call page-fault count sees a callable that touches new pages and one that does not."""
    import mmap

    def touch_new_pages() -> None:
        buf = mmap.mmap(-1, 64 * 4096)  # fresh anonymous pages: each first write faults
        for i in range(0, len(buf), 4096):
            buf[i] = 1
        buf.close()

    faults: dict[str, float] = {}
    bench.interleaved({"touch": touch_new_pages, "idle": lambda: None}, reps=4, warmup=1, faults=faults)
    assert faults["touch"] >= 64 and faults["idle"] < 8


def test_malloc_option(bench, capsys):
    assert bench.parse_args([]).malloc == "tuned"
    assert bench.parse_args(["--malloc", "default"]).malloc == "default"
    with pytest.raises(SystemExit):
        bench.parse_args(["--malloc", "jemalloc"])


def test_feature_wrapper_keeps_eval_mode_through_onnx_export(bench, tmp_path):
    torch.manual_seed(0)
    net = ghostnet(0.5).eval()
    wrapped = bench._Features(net)
    assert not wrapped.training
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        before = wrapped(x)
    torch.onnx.export(wrapped, (x,), str(tmp_path / "f.onnx"), opset_version=17, dynamo=False)
    assert not net.training  # an exporter restoring "training" must not flip BatchNorm on
    with torch.inference_mode():
        assert torch.equal(before, wrapped(x))
