"""Running a model where users deploy it: one entry point, :func:`compile`, over four runtimes.

=============== ==================================================================================
runtime         what runs
=============== ==================================================================================
``eager``       the eval model itself, in PyTorch
``torch``       :func:`ghostdet.deploy.fuse`: BatchNorm folded, channels_last, the native kernels
``onnxruntime`` the ONNX export (:func:`ghostdet.deploy.onnx.export_onnx`, portable form) in an
                onnxruntime session with ``intra_op_num_threads=threads``
``openvino``    the same ONNX file read and compiled by OpenVINO for the CPU
                (``PERFORMANCE_HINT=LATENCY``, ``NUM_STREAMS=1``, ``INFERENCE_NUM_THREADS=threads``)
=============== ==================================================================================

``runtime="auto"`` measures every runtime that is installed on the example input (the same
process, interleaved rounds, median) and keeps the fastest; on a CUDA model it keeps PyTorch. It
never falls back silently: the compiled model's ``repr`` and ``report`` say which runtime runs
and what each measured. A runtime that is asked for by name and is not installed is an
:class:`~ghostdet.errors.InputError` naming the extra that brings it.

``precision="int8"`` quantizes the ONNX export with onnxruntime's own post-training static
quantization (:mod:`ghostdet.deploy.quantize`: QDQ, per-channel int8 weights, activation ranges
calibrated on ``calibration``, every convolution int8) and runs it where it measured faster than
FP32 (:data:`INT8_RUNTIMES`): OpenVINO for every model, onnxruntime for detectors; the others are
FP32 only.

A detector exported to ONNX takes one image per call, so those runtimes run a list image by
image; PyTorch runs it as one batch, padded to one size as torchvision does (the same images one
by one give the per-image results).

The compiled model takes what the eval model takes (a ``(N, 3, H, W)`` tensor for classifiers
and backbones; a list of CHW tensors for detectors) and returns what it returns (logits; an
ordered dict of feature maps; a list of ``{boxes, labels, scores}`` dicts), within 1e-3 of the
output's scale (detections: the same count, and at least 98% of them matched by label and box
within 1e-3, the rule :func:`ghostdet.deploy.onnx.export_onnx` verifies with).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ghostdet.deploy import fuse
from ghostdet.deploy.onnx import _kind, export_onnx
from ghostdet.deploy.quantize import calibration_inputs, quantize_onnx
from ghostdet.errors import InputError

__all__ = [
    "INT8_RUNTIMES",
    "PRECISIONS",
    "RUNTIMES",
    "CompiledModel",
    "available_runtimes",
    "compile_model",
    "onnxruntime_runner",
    "openvino_runner",
]

#: The runtimes :func:`compile_model` knows, in the order ``auto`` tries them.
RUNTIMES = ("eager", "torch", "onnxruntime", "openvino")
_EXTRAS = {"onnxruntime": "export", "openvino": "openvino"}
_NAMES = {"onnxruntime": "onnxruntime", "openvino": "OpenVINO"}
#: The precisions :func:`compile_model` offers.
PRECISIONS = ("fp32", "int8")
#: Where int8 is offered, by kind of model: where it measured faster than FP32 within the
#: accuracy budget (docs/benchmarks.md, *INT8*; AVX-512 VM, 2026-12-07). OpenVINO: 0.59-0.87x
#: the FP32 time on every model. onnxruntime (1.32): 0.70-0.96x on the two 320 presets, but
#: 0.99-1.15x on the classifier trunk, so classifiers and backbones are not offered there.
INT8_RUNTIMES: dict[str, tuple[str, ...]] = {
    "classifier": ("openvino",),
    "backbone": ("openvino",),
    "detector": ("onnxruntime", "openvino"),
}


def _installed(name: str) -> bool:
    try:
        if name == "onnxruntime":
            import onnx
            import onnxruntime  # noqa: F401
        elif name == "openvino":
            import onnx  # noqa: F401 - the ONNX file is written by torch's exporter, checked with onnx
            import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def available_runtimes() -> list[str]:
    """The runtimes installed here, in :data:`RUNTIMES` order."""
    return [r for r in RUNTIMES if r in ("eager", "torch") or _installed(r)]


class CompiledModel:
    """A model compiled for one runtime; call it as the eval model.

    Attributes:
        runtime: the runtime that runs it.
        kind: ``classifier``, ``backbone`` or ``detector``.
        threads: CPU threads it was compiled for (``None``: the runtime's default).
        precision: ``fp32`` or ``int8``.
        report: how it was chosen: ``{"runtime", "measured_ms": {runtime: median ms}}`` with
            ``auto``, ``{"runtime"}`` otherwise; ``onnx`` holds the ONNX file's path where one was
            written.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        runtime: str,
        kind: str,
        threads: int | None,
        precision: str,
        report: dict[str, Any],
        keep: Any = None,
    ) -> None:
        self._fn = fn
        self.runtime = runtime
        self.kind = kind
        self.threads = threads
        self.precision = precision
        self.report = report
        self._keep = keep  # a temporary folder holding the ONNX file, kept alive with the model

    @torch.inference_mode()
    def __call__(self, inputs: Any) -> Any:
        return self._fn(inputs)

    def eval(self) -> CompiledModel:
        """Nothing to do (a compiled model only runs inference); returns self, like ``nn.Module.eval``."""
        return self

    def __repr__(self) -> str:
        return (
            f"CompiledModel(runtime={self.runtime!r}, kind={self.kind!r}, threads={self.threads}, "
            f"precision={self.precision!r})"
        )


# ----------------------------------------------------------------------------- the runtimes
def _torch_fn(model: nn.Module, threads: int | None) -> Callable[[Any], Any]:
    def run(inputs: Any) -> Any:
        if threads:
            torch.set_num_threads(threads)
        return model(inputs)

    return run


def _to_outputs(kind: str, names: Sequence[str], outs: Sequence[Any]) -> Any:
    tensors = [torch.from_numpy(o) if not isinstance(o, Tensor) else o for o in outs]
    if kind == "classifier":
        return tensors[0]
    if kind == "backbone":
        return OrderedDict((n.removeprefix("feat_"), t) for n, t in zip(names, tensors))
    return dict(zip(names, tensors))


def _session_fn(kind: str, names: Sequence[str], run_one: Callable[[Tensor], Sequence[Any]]) -> Callable:
    """A callable over a per-input ``run_one`` (detectors: one image per call, as exported)."""
    if kind == "detector":
        return lambda images: [_to_outputs(kind, names, run_one(img)) for img in images]
    return lambda x: _to_outputs(kind, names, run_one(x))


#: An input shape gets a session of its own (shapes fixed, so the engine plans every node once
#: and fuses what it can only prove for known shapes) on its ``SPECIALIZE_AFTER``-th call;
#: at most ``SPECIALIZED_SHAPES`` shapes per runner, other shapes run on the dynamic session.
#: Measured 2026-12-07 (AVX-512 VM, 2 threads, RetinaNet-320 preset at 480x640): onnxruntime
#: 25.8 -> 23.4 ms, OpenVINO 23.5 -> 20.2 ms; the MobileNetV3-L counterpart 38.9 -> 37.8 and
#: 35.0 -> 33.1 (``benchmarks/bench_engines.py`` measures both with it).
SPECIALIZE_AFTER = 2
SPECIALIZED_SHAPES = 4


class _ShapeSpecializing:
    """``run(array)`` on a dynamic-shape session, and on a session built for one input shape
    (``build(shape)``) once that shape has come :data:`SPECIALIZE_AFTER` times."""

    def __init__(
        self,
        dynamic: Callable[[Any], list[Any]],
        build: Callable[[tuple[int, ...]], Callable[[Any], list[Any]]],
    ) -> None:
        self.build = build
        self.dynamic = dynamic
        self.seen: dict[tuple[int, ...], int] = {}
        self.specialized: dict[tuple[int, ...], Callable[[Any], list[Any]]] = {}

    def __call__(self, x: Any) -> list[Any]:
        shape = tuple(x.shape)
        run = self.specialized.get(shape)
        if run is None:
            self.seen[shape] = self.seen.get(shape, 0) + 1
            if self.seen[shape] >= SPECIALIZE_AFTER and len(self.specialized) < SPECIALIZED_SHAPES:
                run = self.specialized[shape] = self.build(shape)
            else:
                run = self.dynamic
        return run(x)


def onnxruntime_runner(
    path: str | Path, threads: int | None = None
) -> tuple[Callable[[Any], list[Any]], list[str]]:
    """An onnxruntime CPU session on an ONNX file: ``(run, output names)``, ``run(array)`` giving
    the outputs as arrays. ``threads`` intra-op threads, one inter-op thread; the pool does not
    spin between calls (an idle spinning pool takes a core from whatever runs next, e.g. the
    other runtimes ``auto`` measures). An input shape that recurs gets its own session, with the
    input's named dimensions fixed (:data:`SPECIALIZE_AFTER`)."""
    import onnxruntime as ort

    def session(fixed: dict[str, int]) -> Any:
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for dim, size in fixed.items():
            opts.add_free_dimension_override_by_name(dim, size)
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def runner(sess: Any) -> Callable[[Any], list[Any]]:
        return lambda x: sess.run(None, {in_name: x})

    dynamic = session({})
    in_name, dims = dynamic.get_inputs()[0].name, dynamic.get_inputs()[0].shape
    names = [o.name for o in dynamic.get_outputs()]
    if not any(isinstance(d, str) for d in dims):  # nothing to fix: one session
        return runner(dynamic), names

    def build(shape: tuple[int, ...]) -> Callable[[Any], list[Any]]:
        return runner(session({d: int(n) for d, n in zip(dims, shape) if isinstance(d, str)}))

    return _ShapeSpecializing(runner(dynamic), build), names


def openvino_runner(
    path: str | Path, threads: int | None = None
) -> tuple[Callable[[Any], list[Any]], list[str]]:
    """OpenVINO's CPU plugin on an ONNX file: ``(run, output names)``, ``run(array)`` giving the
    outputs as arrays (``PERFORMANCE_HINT=LATENCY``, ``NUM_STREAMS=1``, ``threads`` inference
    threads, and f32 inference precision: on CPUs with bf16 units OpenVINO would otherwise run
    FP32 models in bf16, about 1e-2 off; an int8 model's quantized ops still run in int8). An
    input shape that recurs gets a model reshaped to it (:data:`SPECIALIZE_AFTER`)."""
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)

    def runner(model: Any) -> Callable[[Any], list[Any]]:
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()

        def run(x: Any) -> list[Any]:
            result = request.infer({0: x})
            return [result[o].copy() for o in compiled.outputs]

        return run

    def build(shape: tuple[int, ...]) -> Callable[[Any], list[Any]]:
        model = core.read_model(str(path))
        model.reshape({0: list(shape)})
        return runner(model)

    model = core.read_model(str(path))
    names = [o.get_any_name() for o in model.outputs]
    if model.input(0).get_partial_shape().is_static:  # nothing to fix: one model
        return runner(model), names
    return _ShapeSpecializing(runner(model), build), names


def _onnxruntime_fn(path: Path, kind: str, threads: int | None) -> Callable[[Any], Any]:
    run, names = onnxruntime_runner(path, threads)
    return _session_fn(kind, names, lambda x: run(x.detach().contiguous().numpy()))


def _score_rule(model: nn.Module) -> tuple[float, bool]:
    """A detector's score threshold (its outputs score above it) and whether label 0 is its
    background (two-stage detectors never output it; RetinaNet's label 0 is a class)."""
    heads = getattr(model, "roi_heads", None)
    thresh = getattr(heads if heads is not None else model, "score_thresh", 0.0)
    return float(thresh), heads is not None


def _openvino_fn(
    path: Path, kind: str, threads: int | None, rule: tuple[float, bool] = (0.0, False)
) -> Callable[[Any], Any]:
    run, names = openvino_runner(path, threads)
    min_score, background = rule

    def run_one(x: Tensor) -> list[Any]:
        outs = run(x.detach().contiguous().numpy())
        if kind == "detector" and {"scores", "labels"} <= set(names):
            # OpenVINO returns an empty detection output as one row of uninitialised values
            # (label 0): a row with the background label, or scoring outside [threshold, 1],
            # is that row, not a detection
            scores, labels = outs[names.index("scores")], outs[names.index("labels")]
            if len(scores) == 1 and labels[0] == 0 and (background or not min_score <= scores[0] <= 1):
                outs = [o[:0] for o in outs]
        return outs

    return _session_fn(kind, names, run_one)


def _example_image(example: Any) -> Tensor:
    """The CHW image export_onnx traces with: the first image of the example input (a batch
    tensor or a list of images)."""
    return example[0]


def _time(fn: Callable[[Any], Any], example: Any, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(example)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def compile_model(
    model: nn.Module,
    example: Any,
    runtime: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    calibration: Any = None,
    rounds: int = 5,
    log: Callable[[str], None] | None = None,
) -> CompiledModel:
    """Compile an eval-mode GhostNet classifier, backbone or detector for a runtime.

    Args:
        model: the eval model (a ghostdet classifier, GhostNet-FPN backbone or detector).
        example: an input it takes: a ``(N, 3, H, W)`` tensor (classifier, backbone) or a list of
            CHW tensors (detector); the ONNX export traces with it and ``auto`` times on it.
        runtime: ``eager``, ``torch``, ``onnxruntime``, ``openvino`` or ``auto`` (the fastest
            installed runtime on ``example``; PyTorch for a model on a CUDA device).
        threads: CPU threads of the runtime (``None``: its default).
        precision: ``fp32`` or ``int8`` (OpenVINO, and onnxruntime for detectors:
            :data:`INT8_RUNTIMES`; see the module doc).
        calibration: for int8, the calibration inputs: a folder of images, a list of image
            files or a list of input tensors (:func:`ghostdet.deploy.quantize.calibration_inputs`).
        rounds: timed rounds per runtime for ``auto`` (after :data:`SPECIALIZE_AFTER` warm-up calls).
        log: called with one line saying which runtime was picked and why.

    Returns:
        the :class:`CompiledModel`.

    Raises:
        InputError: an unknown runtime (``argument="runtime"``), one that is not installed
            (naming the extra to install); a precision other than ``fp32`` or ``int8``
            (``argument="precision"``), int8 in a runtime :data:`INT8_RUNTIMES` does not offer
            for the model or without one installed,
            int8 without calibration or with an unreadable one (``argument="calibration"``).
    """
    if runtime not in (*RUNTIMES, "auto"):
        raise InputError(
            f"unknown runtime {runtime!r}; choose from auto, {', '.join(RUNTIMES)}", argument="runtime"
        )
    if precision not in PRECISIONS:
        raise InputError(
            f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}", argument="precision"
        )
    int8 = precision == "int8"
    if int8 and runtime in ("eager", "torch"):
        raise InputError(
            f"int8 runs in OpenVINO or onnxruntime (an exported model), not in the {runtime!r} runtime",
            argument="runtime",
        )
    if not int8 and calibration is not None:
        raise InputError("calibration is for precision='int8'", argument="calibration")
    if runtime not in ("auto", "eager", "torch") and not _installed(runtime):
        raise InputError(
            f"runtime {runtime!r} is not installed: pip install 'ghostdet[{_EXTRAS[runtime]}]'",
            argument="runtime",
        )
    model = model.eval()
    kind = _kind(model)
    if int8 and runtime != "auto" and runtime not in INT8_RUNTIMES[kind]:
        raise InputError(
            f"int8 {kind}s run in {' or '.join(_NAMES[r] for r in INT8_RUNTIMES[kind])}, not in "
            f"{runtime!r}: there the "
            f"quantized {kind} ran no faster than FP32 (docs/benchmarks.md, INT8)",
            argument="runtime",
        )
    on_cuda = any(p.is_cuda for p in model.parameters())
    candidates = [runtime] if runtime != "auto" else (["eager"] if on_cuda else available_runtimes())
    if int8:
        candidates = [c for c in candidates if c in INT8_RUNTIMES[kind]]
        if not candidates:
            need = "OpenVINO: pip install 'ghostdet[openvino]'"
            if kind == "detector":
                need = "OpenVINO or onnxruntime: pip install 'ghostdet[openvino]' or 'ghostdet[export]'"
            raise InputError(f"int8 {kind}s run in {need}", argument="precision")
        if not _installed("onnxruntime"):  # its quantization tool writes the int8 model
            raise InputError(
                "int8 quantizes with onnxruntime: pip install 'ghostdet[export]'", argument="precision"
            )
        inputs = calibration_inputs(calibration, kind, example)
    tmp: tempfile.TemporaryDirectory | None = None
    onnx_path: Path | None = None
    fns: dict[str, Callable[[Any], Any]] = {}
    for name in candidates:
        if name == "eager":
            fns[name] = _torch_fn(model, threads)
        elif name == "torch":
            fns[name] = _torch_fn(fuse(model), threads)
        else:
            if onnx_path is None:
                tmp = tempfile.TemporaryDirectory(prefix="ghostdet-compile-")
                onnx_path = Path(tmp.name) / "model.onnx"
                export_onnx(model, onnx_path, image=_example_image(example), verify=False)
                if int8:
                    onnx_path = quantize_onnx(onnx_path, onnx_path.with_name("model-int8.onnx"), inputs)
            if name == "onnxruntime":
                fns[name] = _onnxruntime_fn(onnx_path, kind, threads)
            else:
                fns[name] = _openvino_fn(onnx_path, kind, threads, _score_rule(model))
    report: dict[str, Any] = {"runtime": candidates[0]}
    if len(fns) > 1:
        with torch.inference_mode():
            for fn in fns.values():
                for _ in range(SPECIALIZE_AFTER):  # warm-up, up to the example's own session
                    fn(example)
            samples: dict[str, list[float]] = {n: [] for n in fns}
            for _ in range(rounds):  # interleaved rounds: each runtime sees the same machine state
                for n, fn in fns.items():
                    samples[n] += _time(fn, example, 1)
        measured = {n: statistics.median(v) for n, v in samples.items()}
        best = min(measured, key=measured.__getitem__)
        report = {"runtime": best, "measured_ms": measured}
        if log is not None:
            others = ", ".join(f"{n} {ms:.1f}" for n, ms in sorted(measured.items(), key=lambda kv: kv[1]))
            log(f"runtime auto: {best} is the fastest here on the example input (median ms: {others})")
    chosen = report["runtime"]
    if onnx_path is not None and chosen in ("onnxruntime", "openvino"):
        report["onnx"] = str(onnx_path)
    keep = tmp if chosen in ("onnxruntime", "openvino") else None
    if tmp is not None and keep is None:
        tmp.cleanup()
    return CompiledModel(fns[chosen], chosen, kind, threads, precision, report, keep)
