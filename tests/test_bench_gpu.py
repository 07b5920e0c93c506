"""benchmarks/bench_gpu.py plumbing: arguments, the no-GPU exit, the CPU dry run, JSON and markdown
output, the time budget. No timings are asserted (there is no GPU here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_gpu"]


def test_parse_args(gpu, capsys):
    args = gpu.parse_args([])
    assert args.case_list == list(gpu.CASES) and args.device == "cuda" and not args.dry_run
    assert gpu.parse_args(["--cases", "train,backbone"]).case_list == ["train", "backbone"]
    assert gpu.parse_args(["--dry-run", "--device", "cpu"]).dry_run
    for bad in (["--cases", "nope"], ["--budget-s", "0"], ["--reps", "0"], ["--device", "cpu"]):
        with pytest.raises(SystemExit):
            gpu.parse_args(bad)
    assert "use --dry-run for the CPU" in capsys.readouterr().err


def test_without_cuda_it_says_so_in_one_line_and_exits_2(gpu, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "no CUDA GPU" in captured.err


def test_time_pair_runs_both_interleaved(gpu):
    order: list[str] = []
    fns = {k: (lambda k=k: order.append(k)) for k in ("ghost", "mnv3")}
    ms = gpu.time_pair(fns, torch.device("cpu"), reps=2, warmup=1)
    assert set(ms) == {"ghost", "mnv3"} and len(order) == 6 and set(order[:2]) == {"ghost", "mnv3"}


def test_budget_skips_and_lists_late_cases(gpu, capsys):
    budget = gpu.Budget(1e-9)
    results: list[dict] = []
    gpu.run_compile(gpu.DRY_RUN, torch.device("cpu"), budget, results)
    assert results == [] and budget.skipped == [
        "backbone compile 64x64 batch 1",
        "backbone compile 64x64 batch 2",
    ]
    assert "skipped (time budget spent)" in capsys.readouterr().out
    assert gpu.Budget(60).allows("x")


def test_markdown_rows_ratios_and_failures(gpu):
    results: list[dict] = []
    gpu._record(results, {"name": "det"}, {"ghost": 6.0, "mnv3": 8.0, "retina": 10.0})
    gpu._record(results, {"name": "bb"}, {"ghost": 2.0, "mnv3": 4.0}, batch=4)
    assert results[0]["ratios"] == {"ghost / mnv3": 0.75, "retina / mnv3": 1.25}
    assert results[1]["images_per_s"] == {"ghost": 2000.0, "mnv3": 1000.0}
    results.append({"name": "compile 224", "errors": {"ghost": "RuntimeError: x"}})
    info = {"gpu": "Fake GPU", "torch": "t", "torchvision": "tv", "date_utc": "D", "cuda": "13"}
    lines = gpu.format_markdown(info, results, ["late case"]).splitlines()
    assert lines[0] == "GPU: Fake GPU; torch t, torchvision tv, CUDA 13, measured D."
    assert "| det | 6.00 | 8.00 | 0.750 | 167 | 125 |" in lines
    assert "| det (RetinaNet) | 10.00 | 8.00 | 1.250 | 100 | 125 |" in lines
    assert "| bb | 2.00 | 4.00 | 0.500 | 2000 | 1000 |" in lines
    assert any(line.startswith("| compile 224 | failed") for line in lines)
    assert lines[-1] == "Skipped (time budget): late case"


def test_dry_run_backbones_to_json(gpu, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--dry-run", "--cases", "backbone", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["info"]["device"] == "cpu" and doc["skipped"] == []
    cases = {(r["mode"], r["size"], r["batch"]) for r in doc["results"]}
    assert cases == {(m, 64, b) for m in gpu.BACKBONE_MODES for b in (1, 2)}
    for r in doc["results"]:
        assert r["ratios"]["ghost / mnv3"] == pytest.approx(r["ms"]["ghost"] / r["ms"]["mnv3"])
    assert "| backbone amp_fp16 64x64 batch 2 |" in capsys.readouterr().out


@pytest.mark.slow
def test_dry_run_detectors_train_step_and_compile(gpu, tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--dry-run", "--cases", "detector,train,compile", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    names = [r["name"] for r in doc["results"]]
    assert names[:4] == [
        "detector full size eager 64x96",
        "detector full size amp_bf16 64x96",
        "detector 320 presets eager 64x96",
        "detector 320 presets amp_bf16 64x96",
    ]
    assert set(doc["results"][0]["ms"]) == {"ghost", "mnv3", "retina"}
    assert names[4] == "train step float32 batch 2 of 64x96"
    assert [r["section"] for r in doc["results"][5:]] == ["compile", "compile"]
    assert all(r["ms"] and not r["errors"] for r in doc["results"][5:])
