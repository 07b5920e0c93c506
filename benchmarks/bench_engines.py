#!/usr/bin/env python
"""GhostNet against MobileNetV3 in every engine a CPU user deploys with.

For each thread count (a fresh process each: onnxruntime and OpenVINO keep their thread pools for
the life of a process), and each input size, the script times in one process, interleaved
(every round runs every model once, in turn), batch 1, random weights:

- ``backbones``: GhostNet 1.0x classifier against torchvision ``mobilenet_v3_large``;
- ``detectors``: the two 320 presets at 480x640 against torchvision
  ``fasterrcnn_mobilenet_v3_large_320_fpn`` and a RetinaNet on the same MobileNetV3-Large FPN;

each in PyTorch eager (MobileNetV3: fx-fused BatchNorm, channels_last), ghostdet's deploy mode,
onnxruntime and OpenVINO (FP32: ``INFERENCE_PRECISION_HINT=f32``, ``PERFORMANCE_HINT=LATENCY``,
``NUM_STREAMS=1``). ghostdet's ONNX file is the portable form of :func:`ghostdet.deploy.onnx.
export_onnx`; MobileNetV3's is torch's plain export. The summary row divides the fastest ghostdet
engine's median by the fastest MobileNetV3 engine's median, and gives each model's share of the
measured FP32 peak (``2 * MACs / time / peak``).

``--processes N`` repeats the whole measurement in N fresh processes and prints each cell's
median over them with its range. Run it on an otherwise idle machine.

Examples::

    python benchmarks/bench_engines.py --processes 5 --threads 1 2 --sizes 224 640
    python benchmarks/bench_engines.py --sections detectors --processes 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: ``deploy-onednn`` is the deploy mode with ghostdet's native kernels off
#: (``fuse(..., native_kernels=False)``): the row that says whether those kernels pay;
#: ``*-int8``: both models' ONNX files quantized alike by :func:`ghostdet.deploy.quantize.quantize_onnx`
#: (calibrated on ``--calibration``), in that engine
ENGINES = ("eager", "deploy", "deploy-onednn", "onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8")
INT8 = ("onnxruntime-int8", "openvino-int8")


def _torch_onnx(model: torch.nn.Module, example: object, path: Path, detector: bool) -> Path:
    """torch's plain export (no fusion, no portable form), with the box clipping ghostdet's export
    uses (the same graph after the heads: it runs on images with an empty pyramid level)."""
    from ghostdet.deploy.onnx import torchvision_export_fixes

    args = (example,)
    dyn = {"x": {1: "h", 2: "w"}} if detector else {"x": {2: "h", 3: "w"}}
    with torchvision_export_fixes():
        torch.onnx.export(
            model, args, str(path), opset_version=17, input_names=["x"], dynamic_axes=dyn, dynamo=False
        )
    return path


def _ort(path: Path, threads: int) -> Callable[[object], object]:
    from ghostdet.deploy.runtimes import onnxruntime_runner

    run, _ = onnxruntime_runner(path, threads)
    return lambda x: run(x.numpy())


def _openvino(path: Path, threads: int) -> Callable[[object], object]:
    from ghostdet.deploy.runtimes import openvino_runner

    run, _ = openvino_runner(path, threads)
    return lambda x: run(x.numpy())


def _have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _generic(model: torch.nn.Module) -> torch.nn.Module:
    from torch.fx.experimental.optimization import fuse as fx_fuse

    return fx_fuse(model.eval()).to(memory_format=torch.channels_last)


def backbone_cases(
    size: int, threads: int, tmp: Path, engines: tuple[str, ...] = ENGINES, int8: Int8 | None = None
) -> dict[str, dict[str, Callable[[], object]]]:
    """model -> engine -> a call on a 1x3xSxS input, for the given engines (``int8``: how the
    ``*-int8`` engines' models are quantized)."""
    from torchvision.models import mobilenet_v3_large

    from ghostdet.deploy import fuse
    from ghostdet.deploy.onnx import export_onnx
    from ghostdet.models import ghostnet

    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size)
    g = ghostnet(1.0).eval()
    m = mobilenet_v3_large().eval()
    generic = _generic(m)
    xc = x.contiguous(memory_format=torch.channels_last)
    cases: dict[str, dict[str, Callable[[], object]]] = {
        "GhostNet 1.0x": {"eager": lambda: g(x)},
        "MobileNetV3-L": {"eager": lambda: generic(xc)},
    }
    if "deploy" in engines:
        fused = fuse(g)
        cases["GhostNet 1.0x"]["deploy"] = lambda: fused(x)
    if "deploy-onednn" in engines:
        plain = fuse(g, native_kernels=False)
        cases["GhostNet 1.0x"]["deploy-onednn"] = lambda: plain(x)
    if {"onnxruntime", "openvino", *INT8} & set(engines):
        g_onnx = tmp / f"ghostnet_{size}.onnx"
        export_onnx(g, g_onnx, image=torch.rand(3, 224, 224), verify=False)
        m_onnx = _torch_onnx(m, x, tmp / f"mnv3_{size}.onnx", detector=False)
        for name, path in (("GhostNet 1.0x", g_onnx), ("MobileNetV3-L", m_onnx)):
            cases[name].update(_engine_calls(path, threads, engines, x, int8, "classifier"))
    return _only(cases, engines)


class Int8(NamedTuple):
    """How the ``*-int8`` engines' models are quantized: calibration images, depthwise convs in
    float or (the library's default) int8 too."""

    calibration: str
    float_depthwise: bool = False


def _engine_calls(
    path: Path,
    threads: int,
    engines: tuple[str, ...],
    arg: object,
    int8: Int8 | None = None,
    kind: str = "classifier",
) -> dict[str, Callable[[], object]]:
    """The ONNX file's calls on ``arg`` in the installed engines among ``engines``; the
    ``*-int8`` engines run the file quantized as ``int8`` says (skipped without it)."""
    calls: dict[str, Callable[[], object]] = {}
    files = {"": path}
    if int8 is not None and set(INT8) & set(engines):
        from ghostdet.deploy.quantize import calibration_inputs, quantize_onnx

        inputs = calibration_inputs(int8.calibration, kind, arg if kind != "detector" else [arg])
        files["-int8"] = quantize_onnx(path, path.with_suffix(".int8.onnx"), inputs, int8.float_depthwise)
    for suffix, file in files.items():
        for engine, build in (("onnxruntime", _ort), ("openvino", _openvino)):
            if engine + suffix in engines and _have(engine):
                fn = build(file, threads)
                calls[engine + suffix] = lambda fn=fn: fn(arg)
    return calls


def _only(
    cases: dict[str, dict[str, Callable[[], object]]], engines: tuple[str, ...]
) -> dict[str, dict[str, Callable[[], object]]]:
    """The cases of the given engines (a model with none of them keeps its eager call)."""
    out = {}
    for name, by_engine in cases.items():
        kept = {e: fn for e, fn in by_engine.items() if e in engines}
        out[name] = kept or {"eager": by_engine["eager"]}
    return out


def detector_models() -> dict[str, torch.nn.Module]:
    """The two 320 presets (random weights, 91 classes) and their MobileNetV3-Large
    counterparts, in eval mode, by name."""
    from torchvision.models.detection import RetinaNet, fasterrcnn_mobilenet_v3_large_320_fpn
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import mobilenet_backbone

    from ghostdet.models import get_model

    torch.manual_seed(0)
    models = {
        "FRCNN-320 GhostNet": get_model("fasterrcnn_ghostnet_320_fpn", num_classes=91).eval(),
        "RetinaNet-320 GhostNet": get_model("retinanet_ghostnet_320_fpn", num_classes=91).eval(),
        "FRCNN-320 MobileNetV3-L": fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=91
        ).eval(),
    }
    # torchvision's MobileNetV3-Large FPN (two levels + a pooled one) under a RetinaNet head, with the
    # anchors and input size of its Faster R-CNN 320 preset
    bb = mobilenet_backbone(backbone_name="mobilenet_v3_large", fpn=True, weights=None, trainable_layers=6)
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
    retina = RetinaNet(bb, num_classes=91, anchor_generator=anchors, min_size=320, max_size=640)
    models["RetinaNet-320 MobileNetV3-L"] = retina.eval()
    return models


def detector_macs() -> dict[str, int]:
    """Paper-convention MACs (conv + linear) of each of :func:`detector_models` on the benchmark's
    480x640 image, as the eager model runs it (resized by its transform; the Faster R-CNN heads
    on the proposals that image gives)."""
    from ghostdet.utils.counting import count_macs

    torch.manual_seed(0)
    img = torch.rand(3, 480, 640)
    return {name: count_macs(model, inputs=[img]) for name, model in detector_models().items()}


def detector_cases(
    threads: int, tmp: Path, engines: tuple[str, ...] = ENGINES, int8: Int8 | None = None
) -> dict[str, dict[str, Callable[[], object]]]:
    """model -> engine -> a call on one 480x640 image, for the given engines."""
    from ghostdet.deploy import fuse
    from ghostdet.deploy.onnx import export_onnx

    torch.manual_seed(0)
    img = torch.rand(3, 480, 640)
    models = detector_models()
    cases: dict[str, dict[str, Callable[[], object]]] = {}
    for name, model in models.items():
        ghost = "GhostNet" in name
        cases[name] = {"eager": lambda model=model: model([img])}
        if ghost and "deploy" in engines:
            fused = fuse(model)
            cases[name]["deploy"] = lambda fused=fused: fused([img])
        if ghost and "deploy-onednn" in engines:
            plain = fuse(model, native_kernels=False)
            cases[name]["deploy-onednn"] = lambda plain=plain: plain([img])
        if not {"onnxruntime", "openvino", *INT8} & set(engines):
            continue
        path = tmp / f"{name.replace(' ', '_')}.onnx"
        if ghost:
            export_onnx(model, path, image=img, verify=False)
        else:
            _torch_onnx(model, [img], path, detector=True)
        cases[name].update(_engine_calls(path, threads, engines, img, int8, "detector"))
    return _only(cases, engines)


def _interleaved(
    cases: dict[str, dict[str, Callable[[], object]]], reps: int, warmup: int
) -> dict[str, dict[str, float]]:
    flat = {(m, e): fn for m, engines in cases.items() for e, fn in engines.items()}
    times: dict[tuple[str, str], list[float]] = {k: [] for k in flat}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in flat.values():
                fn()
        for _ in range(reps):
            for k, fn in flat.items():
                t0 = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t0) * 1e3)
    out: dict[str, dict[str, float]] = {}
    for (m, e), v in times.items():
        out.setdefault(m, {})[e] = statistics.median(v)
    return out


def _int8(args: argparse.Namespace) -> Int8 | None:
    return Int8(args.calibration, args.float_depthwise) if args.calibration else None


def measure(args: argparse.Namespace) -> dict:
    """One process's measurement at ``args.threads[0]`` threads."""
    from benchmarks.bench_cpu import backbone_macs, peak_fp32_gflops

    threads = args.threads[0]
    torch.set_num_threads(threads)
    result: dict = {"threads": threads, "peak_gflops": peak_fp32_gflops(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        if "backbones" in args.sections:
            for size in args.sizes:
                cases = backbone_cases(size, threads, Path(tmp), tuple(args.engines), _int8(args))
                ms = _interleaved(cases, args.reps, args.warmup)
                macs = backbone_macs(size)
                result[f"backbones {size}"] = {
                    "ms": ms,
                    "macs": {"GhostNet 1.0x": macs["ghost"], "MobileNetV3-L": macs["mnv3"]},
                }
        if "detectors" in args.sections:
            cases = detector_cases(threads, Path(tmp), tuple(args.engines), _int8(args))
            result["detectors 480x640"] = {
                "ms": _interleaved(cases, args.reps, args.warmup),
                "macs": detector_macs(),
            }
    return result


#: each ghostdet model and its MobileNetV3 counterpart
PAIRS = {
    "GhostNet 1.0x": "MobileNetV3-L",
    "FRCNN-320 GhostNet": "FRCNN-320 MobileNetV3-L",
    "RetinaNet-320 GhostNet": "RetinaNet-320 MobileNetV3-L",
}


def _fastest_fp32(times: dict[str, float]) -> float:
    return min(v for e, v in times.items() if e not in INT8)


def _summary(cell: dict[str, dict[str, float]]) -> dict[str, float]:
    """The fastest ghostdet FP32 engine's time over the fastest FP32 engine's time of the counterpart."""
    return {
        g: _fastest_fp32(cell[g]) / _fastest_fp32(cell[m])
        for g, m in PAIRS.items()
        if g in cell and m in cell
    }


def _same_engine(cell: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """ghostdet's time over its counterpart's in each engine both ran (int8 against int8)."""
    return {
        g: {e: cell[g][e] / cell[m][e] for e in cell[g] if e in cell[m]}
        for g, m in PAIRS.items()
        if g in cell and m in cell
    }


def format_runs(runs: dict[int, list[dict]]) -> str:
    """Markdown tables of :func:`measure`'s results, per thread count (median and range over
    the processes), with the summary and same-engine ratios."""
    out: list[str] = []
    for threads, results in runs.items():
        peak = statistics.median(r["peak_gflops"] for r in results)
        head = f"{threads} thread(s), {len(results)} process(es), median (min-max) ms"
        out.append(f"\n## {head}; FP32 peak {peak:.0f} GFLOP/s")
        for key in [k for k in results[0] if k not in ("threads", "peak_gflops")]:
            models = results[0][key]["ms"]
            engines = [e for e in ENGINES if any(e in v for v in models.values())]
            out.append(
                f"\n### {key}\n\n| model | "
                + " | ".join(engines)
                + " | fastest / MobileNetV3's fastest | share of peak |"
            )
            out.append("|---|" + "---|" * (len(engines) + 2))
            ratios = [_summary(r[key]["ms"]) for r in results]
            for m in models:
                cells = []
                for e in engines:
                    v = [r[key]["ms"][m][e] for r in results if e in r[key]["ms"][m]]
                    cells.append(f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})" if v else "-")
                rv = [x[m] for x in ratios if m in x]
                ratio = f"**{statistics.median(rv):.2f}** ({min(rv):.2f}-{max(rv):.2f})" if rv else ""
                share = ""
                if "macs" in results[0][key]:
                    best = statistics.median(_fastest_fp32(r[key]["ms"][m]) for r in results)
                    share = f"{100 * 2 * results[0][key]['macs'][m] / (best / 1e3) / (peak * 1e9):.0f}%"
                out.append(f"| {m} | " + " | ".join(cells) + f" | {ratio} | {share} |")
            same = [_same_engine(r[key]["ms"]) for r in results]
            for g in [g for g in PAIRS if g in same[0] and same[0][g]]:
                parts = []
                for e in same[0][g]:
                    v = [x[g][e] for x in same if e in x[g]]
                    parts.append(f"{e} {statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})")
                out.append(f"\n{g} / {PAIRS[g]}, same engine: " + ", ".join(parts))
    return "\n".join(out)


def run_child(
    threads: int,
    reps: int,
    warmup: int,
    sizes: list[int],
    sections: list[str],
    engines: list[str],
    int8: Int8 | None = None,
) -> dict:
    """:func:`measure` in a fresh process at ``threads`` threads (onnxruntime and OpenVINO keep
    their thread pools for the life of a process); its result dict.

    Raises:
        RuntimeError: the process failed (its stderr's end is the message).
    """
    cmd = [sys.executable, __file__, "--_child", "--threads", str(threads), "--reps", str(reps)]
    cmd += [
        "--warmup",
        str(warmup),
        "--sizes",
        *map(str, sizes),
        "--sections",
        *sections,
        "--engines",
        *engines,
    ]
    if int8 is not None:
        cmd += ["--calibration", int8.calibration] + (["--float-depthwise"] if int8.float_depthwise else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 640])
    p.add_argument(
        "--sections", nargs="+", default=["backbones", "detectors"], choices=["backbones", "detectors"]
    )
    p.add_argument(
        "--engines", nargs="+", default=[e for e in ENGINES if e not in INT8], choices=ENGINES,
        help="engines to time (default: every FP32 one; the *-int8 ones need --calibration)",
    )  # fmt: skip
    p.add_argument("--calibration", default=None, help="image folder the *-int8 engines calibrate on")
    p.add_argument(
        "--float-depthwise",
        action="store_true",
        help="*-int8: leave depthwise convs in float (default: int8 too)",
    )
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--processes", type=int, default=1, help="fresh processes per thread count (default 1)")
    p.add_argument("--json", type=Path, default=None, help="write every process's results here")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if set(INT8) & set(args.engines) and not args.calibration:
        p.error("the *-int8 engines need --calibration DIR")
    if args._child:
        print(json.dumps(measure(args)))
        return 0
    runs: dict[int, list[dict]] = {}
    for threads in args.threads:
        for i in range(args.processes):
            try:
                result = run_child(
                    threads, args.reps, args.warmup, args.sizes, args.sections, args.engines, _int8(args)
                )
            except RuntimeError as e:
                print(e, file=sys.stderr)
                return 1
            runs.setdefault(threads, []).append(result)
            print(f"# {threads} thread(s), process {i + 1}/{args.processes} done", file=sys.stderr)
    print(format_runs(runs))
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in runs.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
