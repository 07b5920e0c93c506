#!/usr/bin/env python
"""Where the time goes, per operator type and per part of the model: GhostNet against
MobileNetV3-Large in onnxruntime (its profiler) and OpenVINO (``PERF_COUNT``), batch 1, FP32, one
thread count. ``--model backbone`` (default): GhostNet 1.0x against ``mobilenet_v3_large`` on a
square input; ``--model retinanet_320`` / ``fasterrcnn_320``: a 320 preset against its
MobileNetV3-Large FPN counterpart (:func:`benchmarks.bench_engines.detector_models`) on one
480x640 image.

Both models are exported as :mod:`benchmarks.bench_engines` exports them (GhostNet: ghostdet's
portable form; MobileNetV3: torch's plain export); each engine runs ``--reps`` inferences after
a warm-up on a session for the input's shape (as :func:`ghostdet.deploy.runtimes.onnxruntime_runner`
and ``openvino_runner`` run a recurring shape). The per-node times are summed by operator type
(OpenVINO: the node type after its graph fusions, with its kernel; onnxruntime: the op type after
its fusions) and by part, the first component of the node's name (``backbone/body``,
``backbone/fpn``, ``head``, ``rpn``, ``roi_heads``, ``transform``; ``(top)``: what is written at
the top level, such as the post-processing), and divided by the repetitions. The tables give ms
per inference and the share of the summed node time; the sum is below the wall time by the
engine's own overhead.

Example::

    python benchmarks/profile_engines.py --size 224 --threads 1
    python benchmarks/profile_engines.py --model retinanet_320 --threads 2
    python benchmarks/profile_engines.py --size 640 --int8 ../shared/data/coco128/train2017
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def openvino_profile(path: Path, x: torch.Tensor, threads: int, reps: int) -> dict[str, float]:
    """ms per inference by OpenVINO node type (``type/kernel``)."""
    import openvino as ov

    core = ov.Core()
    cfg = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": threads}
    cfg.update({"INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": "YES"})
    model = core.read_model(str(path))
    model.reshape({0: list(x.shape)})  # as the runner runs a recurring shape
    request = core.compile_model(model, "CPU", cfg).create_infer_request()
    totals: collections.Counter = collections.Counter()
    for i in range(reps + 3):
        request.infer({0: x.numpy()})
        if i < 3:
            continue
        for p in request.get_profiling_info():
            if p.status == p.Status.EXECUTED:
                kernel = p.exec_type.split("_")[0]
                ms = p.real_time.total_seconds() * 1e3
                totals[f"{p.node_type}/{kernel}"] += ms
                totals[_part(p.node_name)] += ms
    return {k: v / reps for k, v in totals.items()}


def onnxruntime_profile(path: Path, x: torch.Tensor, threads: int, reps: int) -> dict[str, float]:
    """ms per inference by onnxruntime op type."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    for dim, size in zip(dims, x.shape):
        if dim.dim_param:  # fixed, as the runner runs a recurring shape
            opts.add_free_dimension_override_by_name(dim.dim_param, int(size))
    with tempfile.TemporaryDirectory() as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for _ in range(reps + 3):
            sess.run(None, {name: x.numpy()})
        events = json.loads(Path(sess.end_profiling()).read_text())
    totals: collections.Counter = collections.Counter()
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = runs[3]["ts"] if len(runs) > 3 else 0  # after the warm-up runs
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            totals[e["args"]["op_name"]] += e["dur"] / 1e3
            totals[_part(e["name"].removesuffix("_kernel_time"))] += e["dur"] / 1e3
            kind, macs = _conv_kind(e["args"])
            if kind is not None:  # also by conv class, with its multiply-adds
                totals[f"{kind} (MMACs)"] += macs / 1e6
                totals[kind] += e["dur"] / 1e3
    return {k: v / reps for k, v in totals.items()}


def _part(node_name: str) -> str:
    """``part: X``, X the first component of an exported node's scoped name (the first two
    under ``backbone``: its trunk and its FPN)."""
    parts = node_name.strip("/").split("/")
    if len(parts) < 2:
        return "part: (top)"
    return f"part: {'/'.join(parts[:2]) if parts[0] == 'backbone' and len(parts) > 2 else parts[0]}"


def _conv_kind(args: dict) -> tuple[str | None, int]:
    """A Conv node's class (depthwise / 1x1 by output channels / other) and multiply-adds, from
    onnxruntime's recorded shapes (the weight: output channels, input channels per group, kernel)."""
    if args.get("op_name") != "Conv":
        return None, 0
    shapes = [next(iter(d.values())) for d in args.get("input_type_shape", [])]
    out = [next(iter(d.values())) for d in args.get("output_type_shape", [])]
    if len(shapes) < 2 or not out or len(shapes[1]) != 4 or len(out[0]) < 4:
        return None, 0
    cout, cin_g, kh, kw = shapes[1]
    y = out[0]
    macs = y[0] * y[2] * y[3] * cout * cin_g * kh * kw
    if cin_g == 1:
        return "conv: depthwise", macs
    if kh == kw == 1:
        return f"conv: 1x1, {'<= 64' if cout <= 64 else '> 64'} out channels", macs
    return "conv: other", macs


def _exports(args: argparse.Namespace, tmp: Path) -> tuple[object, dict[str, Path]]:
    """The profiled input and ``{model name: ONNX file}``, exported as bench_engines does."""
    from benchmarks.bench_engines import _torch_onnx, detector_models
    from ghostdet.deploy.onnx import export_onnx

    torch.manual_seed(0)
    if args.model == "backbone":
        from torchvision.models import mobilenet_v3_large

        from ghostdet.models import ghostnet

        x = torch.rand(1, 3, args.size, args.size)
        paths = {"GhostNet 1.0x": tmp / "ghostnet.onnx", "MobileNetV3-L": tmp / "mnv3.onnx"}
        export_onnx(ghostnet(1.0).eval(), paths["GhostNet 1.0x"], image=torch.rand(3, 224, 224), verify=False)
        _torch_onnx(mobilenet_v3_large().eval(), x, paths["MobileNetV3-L"], detector=False)
        return x, paths
    x = torch.rand(3, 480, 640)
    prefix = {"retinanet_320": "RetinaNet-320", "fasterrcnn_320": "FRCNN-320"}[args.model]
    paths = {}
    for name, model in detector_models().items():
        if name.startswith(prefix):
            paths[name] = tmp / f"{name.replace(' ', '_')}.onnx"
            if "GhostNet" in name:
                export_onnx(model, paths[name], image=x, verify=False)
            else:
                _torch_onnx(model, [x], paths[name], detector=True)
    return x, paths


def _table(rows: dict[str, float], total: float, head: str, top: int) -> None:
    print(f"| {head} | ms | share |\n|---|---|---|")
    for op, v in sorted(rows.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {op} | {v:.3f} | {100 * v / total:.0f}% |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("backbone", "retinanet_320", "fasterrcnn_320"), default="backbone")
    p.add_argument("--size", type=int, default=224, help="backbone input side (detectors: one 480x640 image)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--top", type=int, default=10, help="operator types listed per model and engine")
    p.add_argument(
        "--int8",
        type=Path,
        default=None,
        metavar="DIR",
        help="profile both files int8 (as bench_engines' *-int8 engines), calibrated on this image folder",
    )
    args = p.parse_args(argv)
    from benchmarks.bench_engines import _have

    torch.set_num_threads(args.threads)
    engines = {
        n: fn for n, fn in (("onnxruntime", onnxruntime_profile), ("openvino", openvino_profile)) if _have(n)
    }
    size = f"{args.size}²" if args.model == "backbone" else "480x640"
    with tempfile.TemporaryDirectory() as tmp:
        x, paths = _exports(args, Path(tmp))
        if args.int8 is not None:
            from ghostdet.deploy.quantize import calibration_inputs, quantize_onnx

            kind = "classifier" if args.model == "backbone" else "detector"
            inputs = calibration_inputs(args.int8, kind, x if kind == "classifier" else [x])
            paths = {
                f"{m} int8": quantize_onnx(f, f.with_suffix(".int8.onnx"), inputs) for m, f in paths.items()
            }
        for engine, profile in engines.items():
            for model, path in paths.items():
                ms = profile(path, x, args.threads, args.reps)
                convs = {k: ms.pop(k) for k in [k for k in ms if k.startswith("conv: ")]}
                parts = {
                    k.removeprefix("part: "): ms.pop(k) for k in [k for k in ms if k.startswith("part: ")]
                }
                total = sum(ms.values())
                print(f"\n### {engine}, {model}, {size}, {args.threads} thread(s): {total:.2f} ms in nodes\n")
                _table(ms, total, "operator", args.top)
                if len(parts) > 1:
                    print()
                    _table(parts, total, "part", len(parts))
                rows = sorted(k for k in convs if not k.endswith("(MMACs)"))
                if rows:
                    print("\n| conv class | ms | MMACs | GMAC/s |\n|---|---|---|---|")
                    for k in rows:
                        t, m = convs[k], convs[f"{k} (MMACs)"]
                        print(f"| {k.removeprefix('conv: ')} | {t:.3f} | {m:.1f} | {m / t:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
