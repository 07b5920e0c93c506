"""benchmarks/bench_cpu.py and benchmarks/spread.py plumbing (argument checks, interleaving, model
wrappers, per-layer scaling, spread statistics over processes) — no timings asserted."""

from __future__ import annotations

import argparse
import importlib.util
import json
import textwrap
from pathlib import Path

import pytest
import torch

from ghostdet.models import ghostnet

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("bench_cpu")


@pytest.fixture(scope="module")
def spread():
    return _load("spread")


def test_parse_args_sections_and_errors(bench, capsys):
    args = bench.parse_args(["--quick"])
    assert args.reps == 8 and args.warmup == 2
    assert "compile" not in args.section_list and "backbone" in args.section_list
    assert "engines" not in args.section_list and "engines" in bench.parse_args([]).section_list
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


def test_several_thread_counts_and_sizes(bench, capsys):
    args = bench.parse_args(["--threads", "1", "2", "4", "2", "--sizes", "96", "128"])
    assert args.thread_list == [1, 2, 4] and args.threads == 1  # in order, repeats dropped
    assert args.sizes == [96, 128]
    assert bench.parse_args(["--threads", "3"]).thread_list == [3]
    assert bench.scaling_threads([4]) == (1, 2, 4) and bench.scaling_threads([2, 1]) == (1, 2)
    for bad in (["--threads", "2", "0"], ["--sizes", "16"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    assert "--sizes must be >= 32" in capsys.readouterr().err


def test_share_of_peak_and_measured_peak(bench):
    # 1 GMAC in 100 ms = 20 GFLOP/s; of a 100 GFLOP/s peak that is a fifth
    assert bench.share_of_peak(10**9, 100.0, 100.0) == pytest.approx(0.2)
    assert bench.peak_fp32_gflops(1, n=64, reps=1) > 0


def test_backbone_macs_match_the_published_counts(bench):
    macs = bench.backbone_macs(224)
    # GhostNet 1.0 is ~141 M MACs, MobileNetV3-Large ~217 M (both incl. their heads, which the
    # trunks lack: 960->1280 1x1 conv and the classifier, ~1.2 M + 1.3 M)
    assert 120e6 < macs["ghost"] < 141e6 and 190e6 < macs["mnv3"] < 217e6
    assert bench.backbone_macs(224, batch=2)["ghost"] == 2 * macs["ghost"]
    with pytest.raises(ValueError, match="unknown backbone"):
        bench.backbone_models(("ghost_deploy", "nope"))


def test_v2_v3_trunk_macs_and_model_keys(bench):
    macs = bench.backbone_macs(224, trunks=bench.TRUNKS)
    # GhostNetV2 1.0x is ~167 M MACs with its head (~2.5 M): the DFC gates add ~26 M to V1's trunk;
    # GhostNetV3 re-parameterised has V2's layers
    assert 160e6 < macs["ghostv2"] < 167e6 and macs["ghostv3"] == macs["ghostv2"] > macs["ghost"]
    assert [bench.trunk_of(k) for k in ("ghostv2_deploy", "ghost_deploy_onednn", "mnv3_generic")] == [
        "ghostv2",
        "ghost",
        "mnv3",
    ]
    with pytest.raises(ValueError, match="unknown trunk"):
        bench.backbone_macs(224, trunks=("ghostv4",))
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        shapes = {
            k: tuple(m(x).shape)
            for k, m in bench.backbone_models(("ghostv2_deploy", "ghostv3_deploy")).items()
        }
    assert shapes == {"ghostv2_deploy": (1, 960, 2, 2), "ghostv3_deploy": (1, 960, 2, 2)}


def test_throughput_section_reports_images_per_second(bench, capsys):
    args = argparse.Namespace(reps=1, warmup=0, throughput_cases=((64, 2),), peak_gflops=50.0)
    out = bench.section_throughput(args)["64x2"]
    assert set(out["ms"]) == {"ghost_deploy", "mnv3_generic"}
    for k, ms in out["ms"].items():
        assert out["images_per_s"][k] == pytest.approx(2 / (ms / 1e3))
        assert out["share_of_peak"][k] > 0
    ratio = out["ratios"]["ghost deploy / mnv3 generic, time per batch  [target]"]
    assert ratio == pytest.approx(out["ms"]["ghost_deploy"] / out["ms"]["mnv3_generic"])
    assert "throughput 64x64, batch 2" in capsys.readouterr().out


def test_layer_scaling_covers_every_trunk_layer(bench):
    rows = bench.layer_scaling(64, threads=(1, 2), reps=1, warmup=0, width=0.5)
    names = [r["layer"] for r in rows]
    assert names[0] == "stem" and names[-1] == "total" and len(rows) == 1 + 16 + 1 + 1
    assert rows[0]["input"] == "3x64x64" and rows[-2]["output"] == "480x2x2"  # 960 * 0.5 channels
    for r in rows:
        assert set(r["ms"]) == {"native", "onednn", "conv2d"}
        for key, by_threads in r["ms"].items():
            assert by_threads[1] > 0 and r["speedup"][key][2] == pytest.approx(by_threads[1] / by_threads[2])
    total = rows[-1]["ms"]["native"][1]
    assert total == pytest.approx(sum(r["ms"]["native"][1] for r in rows[:-1]))
    table = bench.format_scaling(rows, (1, 2))
    assert table.splitlines()[0].count("1->2T") == 3 and len(table.splitlines()) == 2 + len(rows)


def test_kernel_calls_time_each_native_call_against_onednn(bench):
    rows = bench.kernel_calls(64, threads=(1, 2), reps=1, warmup=0, width=0.5)
    kinds = {r["kind"] for r in rows}  # 0.5x: blocks that fit no block kernel run their depthwise convs
    assert rows[0]["layer"] == "stem" and rows[0]["input"] == "3x64x64"
    # 1.0x at 160 px: maps above THRESHOLDS.small_block_max_pixels (the band kernels) and below (whole blocks)
    large = bench.kernel_calls(160, threads=(1,), reps=1, warmup=0, width=1.0)
    assert {"stem", "block s1", "block s2", "block se", "block small", "dw k3 s1"} <= kinds | {
        r["kind"] for r in large
    }
    assert not any(r["layer"].startswith("blocks.0.0.") for r in rows)  # inside a fused block
    for r in rows:
        assert set(r["ms"]) == {"native", "onednn"} and all(
            r["ms"][v][t] > 0 for v in r["ms"] for t in (1, 2)
        )
    lines = bench.format_kernel_calls(rows, (1, 2)).splitlines()
    assert len(lines) == 2 + len(rows) + len(kinds) and lines[0].count("ratio") == 2
    stem_sum = next(ln for ln in lines if ln.startswith("| **sum (stem)**"))
    assert "1 calls" in stem_sum


def test_deploy_trunk_layers_walk_containers_in_order(bench):
    net = torch.nn.Module()
    net.stem = torch.nn.Identity()
    net.blocks = torch.nn.Sequential(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh()))
    net.classifier = torch.nn.Linear(2, 2)
    assert [n for n, _ in bench._deploy_trunk_layers(net)] == ["stem", "blocks.0.0", "blocks.0.1"]


# ---- benchmarks/spread.py -----------------------------------------------------------------


def test_spread_statistics(spread):
    assert spread.spread([3.0, 1.0, 2.0, 10.0]) == {"n": 4, "min": 1.0, "median": 2.5, "max": 10.0}
    with pytest.raises(ValueError):
        spread.spread([])


def _fake_results(ratio: float, with_detector: bool = True) -> dict:
    run = {
        "peak_fp32_gflops": 40.0,
        "backbone": {
            "224": {
                "ms": {"ghost_deploy": 10 * ratio, "mnv3_generic": 10.0},
                "share_of_peak": {"ghost_deploy": 0.1, "mnv3_generic": 0.2},
                "ratios": {"ghost deploy / mnv3 generic": ratio},
                "page_faults_per_call": {"ghost_deploy": 3.0},
            }
        },
    }
    if with_detector:
        run["detector"] = {"ratios": {"det": 2 * ratio}}
    scaling = [
        {"layer": "stem", "input": "3x8x8", "ms": {"native": {"1": 1.0}}, "speedup": {"native": {"2": 1.5}}}
    ]
    profile = {"224": {"ghost": {"Conv 1x1 @ pooled": {"nodes": 28, "ms@1": 1.0, "speedup": {"2": ratio}}}}}
    return {
        "info": {"torch": "9.9", "cpu_model": "Fake CPU", "threads": [2]},
        "runs": {"2": run},
        "scaling": {"224": scaling},
        "onnxprofile_scaling": profile,
    }


def test_flatten_and_summarise(spread):
    flat = spread.flatten(_fake_results(0.7))
    assert flat[("runs", "2", "backbone", "224", "ratios", "ghost deploy / mnv3 generic")] == 0.7
    assert flat[("scaling", "224", "stem", "speedup", "native", "2")] == 1.5
    assert not any(p[0] == "info" or "page_faults_per_call" in p for p in flat)
    runs = [_fake_results(r) for r in (0.7, 0.5, 0.9)] + [_fake_results(0.6, with_detector=False)]
    summary = spread.summarise(runs)
    s = summary[("runs", "2", "backbone", "224", "ratios", "ghost deploy / mnv3 generic")]
    assert (s["n"], s["min"], s["median"], s["max"]) == (4, 0.5, pytest.approx(0.65), 0.9)
    assert summary[("runs", "2", "detector", "ratios", "det")]["n"] == 3
    md = spread.format_markdown(summary, {**runs[0]["info"], "date_utc": "D", "command": "bench_cpu.py -x"})
    lines = md.splitlines()
    assert lines[0].startswith("Measured D: 4 separate processes of `bench_cpu.py -x`; torch 9.9")
    assert "Fake CPU" in lines[0]
    assert "| 2 | backbone 224 | ghost deploy / mnv3 generic | 0.500 | 0.650 | 0.900 | 4 |" in lines
    assert "| 2 | detector | det | 1.000 | 1.400 | 1.800 | 3 |" in lines
    assert "| 2 | backbone 224 | ghost_deploy | 5.00 | 6.50 | 9.00 | 10.0% |" in lines
    assert not any(line.startswith("| - | scaling") for line in lines)  # scaling lives in the JSON
    assert "| - | onnxprofile_scaling 224 ghost Conv 1x1 @ pooled | 2 | 0.50 | 0.65 | 0.90 | 4 |" in lines


FAKE_BENCH = """
    import json, sys
    out = sys.argv[sys.argv.index("--json") + 1]
    calls = sys.argv[sys.argv.index("--calls") + 1]
    with open(calls, "a") as f:
        f.write(" ".join(sys.argv[1:sys.argv.index("--json")]) + "\\n")
    n = sum(1 for _ in open(calls))
    json.dump({"info": {"torch": "t"}, "runs": {"1": {"x": {"ratios": {"r": float(n)}}}}}, open(out, "w"))
"""


def test_runner_starts_one_process_each_with_the_same_arguments(spread, tmp_path, capsys):
    script = tmp_path / "fake_bench.py"
    script.write_text(textwrap.dedent(FAKE_BENCH))
    calls, out = tmp_path / "calls.txt", tmp_path / "spread.json"
    argv = ["--processes", "3", "--script", str(script), "--json", str(out), "--", "--calls", str(calls)]
    assert spread.main(argv) == 0
    assert calls.read_text().splitlines() == [f"--calls {calls}"] * 3
    doc = json.loads(out.read_text())
    assert doc["processes"] == 3 and doc["info"]["torch"] == "t"
    (fig,) = doc["figures"]
    assert fig["path"] == ["runs", "1", "x", "ratios", "r"] and fig["samples"] == [1.0, 2.0, 3.0]
    assert (fig["min"], fig["median"], fig["max"]) == (1.0, 2.0, 3.0)
    assert "| 1 | x | r | 1.000 | 2.000 | 3.000 | 3 |" in capsys.readouterr().out


def test_runner_arguments_and_failures(spread, tmp_path, capsys):
    args, bench_args = spread.parse_args(
        ["--processes", "2", "--", "--sections", "backbone", "--threads", "2"]
    )
    assert args.processes == 2 and bench_args == ["--sections", "backbone", "--threads", "2"]
    assert spread.parse_args([])[0].script.name == "bench_cpu.py"
    for bad in (["--processes", "0"], ["--", "--json", "x.json"], ["--script", str(tmp_path / "nope.py")]):
        with pytest.raises(SystemExit):
            spread.parse_args(bad)
    assert "runner's job" in capsys.readouterr().err
    failing = tmp_path / "fail.py"
    failing.write_text("import sys\nsys.exit('benchmark broke')\n")
    with pytest.raises(RuntimeError, match=r"process 1 .* failed .*benchmark broke"):
        spread.run_processes(failing, [], 2)


def test_onnx_node_profile_counts_the_graphs_nodes(bench, tmp_path):
    """onnxruntime's per-node profile: per op type, the nodes of one run (counted independently in
    the optimised graph onnxruntime saves) and their time, the timed runs only; with that graph,
    convs split by kind."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
        torch.nn.Conv2d(8, 4, 1),
        torch.nn.Sigmoid(),
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    sess = bench.ort_session(model, x, tmp_path / "m", True, 1, profile=True)
    prof = bench.ort_node_profile(sess, x, reps=3, warmup=2, split_convs=False)
    # the graph onnxruntime runs (after its fusions), saved by a second session on the same file
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(tmp_path / "m_1x3x16x16.onnx"), opts, providers=["CPUExecutionProvider"])
    want: dict[str, int] = {}
    for node in onnx.load(str(tmp_path / "opt.onnx")).graph.node:
        want[node.op_type] = want.get(node.op_type, 0) + 1
    assert {op: round(r["nodes"]) for op, r in prof.items()} == want
    assert all(r["ms"] > 0 for r in prof.values())
    sess = bench.ort_session(model, x, tmp_path / "p", True, 1, profile=True)
    split = bench.ort_node_profile(sess, x, 3, 1)
    assert {op for op in split if op.startswith("Conv")} == {"Conv 3x3", "Conv depthwise", "Conv 1x1"}
    assert sum(r["nodes"] for r in split.values()) == pytest.approx(sum(want.values()))
    sess = bench.ort_session(model, x, tmp_path / "q", True, 1, profile=True)
    mapped = bench.ort_node_profile(sess, x, 3, 1, by_map=True)
    assert {op.split(" @ ")[1] for op in mapped} == {"stride <=8"}  # every node keeps the 16x16 map
    merged = bench.merge_map_classes(mapped)
    assert {op: round(r["nodes"]) for op, r in merged.items()} == {
        op: round(r["nodes"]) for op, r in split.items()
    }
    table = bench.format_node_profile({"a": prof, "b": prof}).splitlines()
    assert table[0] == "| op type | a nodes | a ms | b nodes | b ms |"
    assert len(table) == 2 + len(prof) + 1 and table[-1].startswith("| total |")
    assert "onnxprofile" in bench.parse_args(["--sections", "onnxprofile"]).section_list


def test_node_profile_by_maps_and_its_thread_speedups(bench):
    """Profile rows split by the maps a node runs on (by stride, so the same layers at any size),
    summed back per op type, and each row's speed-up from 1 to 2 threads (1-thread ms / 2-thread
    ms, the totals over all rows) in a table."""
    at = {"float": [1, 32, 7, 7]}
    assert bench._map_class([at], 224) == "stride >=16" == bench._map_class([{"float": [1, 32, 20, 20]}], 640)
    assert bench._map_class([{"float": [1, 16, 56, 56]}], 224) == "stride <=8"
    assert bench._map_class([{"float": [1, 16, 1, 1]}], 224) == "pooled"
    assert bench._map_class(None, 224) == bench._map_class([{}], 224) == "other"
    one = {"Conv 1x1 @ pooled": {"nodes": 4, "ms": 1.0}, "Conv 1x1 @ stride >=16": {"nodes": 2, "ms": 3.0},
           "Mul @ stride >=16": {"nodes": 1, "ms": 0.5}}  # fmt: skip
    two = {"Conv 1x1 @ pooled": {"nodes": 4, "ms": 1.25}, "Conv 1x1 @ stride >=16": {"nodes": 2, "ms": 1.5},
           "Mul @ stride >=16": {"nodes": 1, "ms": 1.0}}  # fmt: skip
    assert bench.merge_map_classes(one) == {
        "Conv 1x1": {"nodes": 6, "ms": 4.0},
        "Mul": {"nodes": 1, "ms": 0.5},
    }
    # in this process sizes are ints; from the 2-thread child's JSON they come back as strings
    runs = {
        "1": {"onnxprofile": {224: {"by_map": {"g": one}}}},
        "2": {"onnxprofile": {"224": {"by_map": {"g": two}}}},
    }
    scaling = bench.profile_scaling(runs, [1, 2])
    rows = scaling["224"]["g"]
    assert rows["Conv 1x1 @ pooled"]["speedup"]["2"] == pytest.approx(0.8)
    assert rows["Conv 1x1 @ stride >=16"]["speedup"]["2"] == pytest.approx(2.0)
    assert rows["total"] == {"nodes": 7, "ms@1": 4.5, "ms@2": 3.75, "speedup": {"2": pytest.approx(1.2)}}
    table = bench.format_profile_scaling(scaling, [1, 2]).strip().splitlines()
    assert table[1] == "| op type @ maps | g nodes | g ms 1T | g ms 2T | g 1T/2T |"
    assert table[3] == "| Conv 1x1 @ stride >=16 | 2 | 3.000 | 1.500 | 2.00 |"  # the most expensive first
    assert table[-1] == "| total | 7 | 4.500 | 3.750 | 1.20 |"


def test_main_tabulates_the_profiles_speedups_from_the_fewest_threads(bench, monkeypatch, tmp_path, capsys):
    """With onnxprofile at two thread counts (given in any order), main adds each row's speed-up
    from the fewer threads to the more to the results and prints it."""
    ms = {1: 2.0, 2: 1.6}

    def fake_section(args):
        return {224: {"by_map": {"g": {"Conv 1x1 @ pooled": {"nodes": 3, "ms": ms[args.threads]}}}}}

    monkeypatch.setattr(bench, "section_onnxprofile", fake_section)
    threads = torch.get_num_threads()
    try:
        assert (
            bench.main(
                ["--sections", "onnxprofile", "--threads", "2", "1", "--json", str(tmp_path / "r.json")]
            )
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    rows = json.loads((tmp_path / "r.json").read_text())["onnxprofile_scaling"]["224"]["g"]
    assert rows["total"]["speedup"] == {"2": pytest.approx(1.25)}
    assert "| Conv 1x1 @ pooled | 3 | 2.000 | 1.600 | 1.25 |" in capsys.readouterr().out


def test_onnxruntime_threads_share_one_pool_per_process(bench, monkeypatch):
    """Above 1 thread, sessions use the process-wide pool (made once, of that size); a process
    that has one refuses other thread counts instead of timing them wrongly."""
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    monkeypatch.setattr(bench, "_ORT_POOL", {})
    bench._ort_threads(opts, 1)
    assert opts.intra_op_num_threads == 1 and opts.use_per_session_threads
    monkeypatch.setattr(bench, "_ORT_POOL", {"threads": 2})  # as if made: nothing global is touched
    opts = ort.SessionOptions()
    bench._ort_threads(opts, 2)
    assert not opts.use_per_session_threads
    for other in (1, 4):
        with pytest.raises(RuntimeError, match=f"has 2 threads; time {other} .*another process"):
            bench._ort_threads(ort.SessionOptions(), other)


def test_onnx_sections_above_one_thread_run_in_their_own_process(bench, monkeypatch, capsys):
    args = bench.parse_args(["--sections", "onnx", "--threads", "2", "--reps", "3", "--sizes", "64"])
    assert bench._ort_section(bench.parse_args(["--threads", "1"]), "onnx") is None
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        out = Path(cmd[cmd.index("--json") + 1])
        out.write_text(json.dumps({"runs": {"2": {"onnx": {"64": {"ratio": 0.9}}}}}))
        stdout = "# ghostdet CPU benchmark\n  torch: x\n\n# 2 thread(s)\n\n## onnx table\n  row\n"
        stdout += "\n  load average at end: 0\n"
        return bench.subprocess.CompletedProcess(cmd, 0, stdout, "")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    assert bench._ort_section(args, "onnx") == {"64": {"ratio": 0.9}}
    cmd = seen["cmd"]
    assert "--_ort-child" in cmd and cmd[cmd.index("--threads") + 1] == "2"
    assert cmd[cmd.index("--sections") + 1] == "onnx" and cmd[cmd.index("--sizes") + 1] == "64"
    assert capsys.readouterr().out == "\n## onnx table\n  row\n"  # the child's section, not its header
    # in the child itself the section runs there (with torch on 1 thread beside onnxruntime's pool)
    child = bench.parse_args(["--_ort-child", "--sections", "onnx", "--threads", "2"])
    threads = torch.get_num_threads()
    try:
        assert bench._ort_section(child, "onnx") is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)

    def failing(cmd, **kwargs):
        return bench.subprocess.CompletedProcess(cmd, 1, "", "Traceback\nValueError: broke\n")

    monkeypatch.setattr(bench.subprocess, "run", failing)
    with pytest.raises(RuntimeError, match="onnx section's process at 2 threads failed: ValueError: broke"):
        bench._ort_section(args, "onnx")


@pytest.mark.slow
def test_onnx_section_at_two_threads_end_to_end(tmp_path):
    pytest.importorskip("onnxruntime")
    import subprocess
    import sys

    out = tmp_path / "r.json"
    cmd = [sys.executable, str(BENCHMARKS / "bench_cpu.py"), "--sections", "onnx", "--threads", "2", "1"]
    cmd += ["--quick", "--sizes", "64", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    runs = json.loads(out.read_text())["runs"]
    for t in ("2", "1"):
        ratio = runs[t]["onnx"]["64"]["ratios"]
        assert all(v > 0 for v in ratio.values()), ratio
    assert proc.stdout.count("portable form aligned to") == 2
