"""INT8 post-training static quantization of the ONNX export, with onnxruntime's own tool.

:func:`quantize_onnx` runs ``onnxruntime.quantization.quantize_static`` on the FP32 export: QDQ
format (QuantizeLinear/DequantizeLinear pairs around each quantized op, the form onnxruntime and
OpenVINO both execute in int8), per-channel int8 weights, uint8 activations whose ranges come from
running the FP32 model on the calibration inputs (MinMax). Convolutions and matrix products are
quantized; the detector's pre- and post-processing (resize, anchors, NMS) stay in float.

``float_depthwise=True`` keeps the depthwise convolutions (one input channel per group) in float,
the advice users get for GhostNet (their 9 or 25 weights per channel quantize coarsely). Measured
on 2026-12-07 (AVX-512 VM, ``benchmarks/bench_engines.py`` and ``benchmarks/int8_accuracy.py``,
docs/benchmarks.md) it lost speed and gained no measurable accuracy: OpenVINO ran GhostNet 1.0x
at 640x640 in 34.3 ms with float depthwise convs against 28.4 ms all-int8 (FP32: 41.9), and the
trained classifiers' top-1 moved by one image of 40, and of 224, either way. So the default
quantizes every convolution.

:func:`calibration_inputs` turns what a user has into the model's inputs: a folder of images (or
a list of image files) is read with :func:`ghostdet.data.images.read_rgb_tensor`; detectors take
the ``[0, 1]`` images as they are (their transform resizes and normalises), classifiers and
backbones the images through ghostdet's ImageNet evaluation transform
(:func:`ghostdet.data.classification.build_classification_transforms`: resize, centre crop to the
example's shorter side, ImageNet mean and std). Tensors are taken as given.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ghostdet.data.classification import build_classification_transforms
from ghostdet.data.images import IMAGE_EXTENSIONS, open_rgb, read_rgb_tensor
from ghostdet.errors import InputError

__all__ = [
    "MAX_CALIBRATION_IMAGES",
    "calibration_inputs",
    "depthwise_conv_nodes",
    "own_parameters",
    "quantize_onnx",
]

#: images read from a calibration folder (the first ones in name order)
MAX_CALIBRATION_IMAGES = 64


def _image_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise InputError(f"calibration folder {folder} does not exist", argument="calibration")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise InputError(f"calibration folder {folder} holds no image", argument="calibration")
        return files[:MAX_CALIBRATION_IMAGES]
    return [Path(p) for p in source]


def calibration_inputs(calibration: Any, kind: str, example: Any) -> list[Tensor]:
    """The model inputs to calibrate with (see the module doc).

    Args:
        calibration: a folder of images, a list of image files, or a list of input tensors
            (detector: CHW images in ``[0, 1]``; classifier/backbone: ``(N, 3, H, W)`` batches or
            ``(3, H, W)`` images, already normalised).
        kind: ``classifier``, ``backbone`` or ``detector``.
        example: the example input of :func:`ghostdet.deploy.compile` (its shorter side is the
            classifier's and backbone's calibration size).

    Raises:
        InputError: no calibration given, an empty or missing folder, an unreadable image.
    """
    if calibration is None:
        raise InputError(
            "int8 needs calibration: a folder of images or a list of inputs", argument="calibration"
        )
    items = list(calibration) if not isinstance(calibration, (str, os.PathLike)) else []
    if items and all(isinstance(t, Tensor) for t in items):
        tensors = items
    else:
        files = _image_files(calibration)
        if kind == "detector":
            tensors = [read_rgb_tensor(p) for p in files]
        else:  # the ImageNet evaluation transform, at the example's (shorter) side
            tf = build_classification_transforms(False, "imagefolder", min(example.shape[-2:]))
            tensors = [tf(open_rgb(p)) for p in files]
    if not tensors:
        raise InputError("calibration holds no input", argument="calibration")
    if kind != "detector":
        tensors = [t if t.dim() == 4 else t[None] for t in tensors]
    return [t.detach().float().contiguous() for t in tensors]


def depthwise_conv_nodes(model: Any) -> list[str]:
    """Names of the depthwise Conv nodes of an ONNX model (``group`` equal to the input channels,
    one input channel per group), naming unnamed nodes first (``dwconv_<i>``)."""
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    names = []
    for i, node in enumerate(model.graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        shape = weights[node.input[1]]
        if group > 1 and len(shape) == 4 and shape[1] == 1 and shape[0] == group:
            if not node.name:
                node.name = f"dwconv_{i}"
            names.append(node.name)
    return names


class _Reader:
    """onnxruntime's CalibrationDataReader over a list of tensors (one model call each)."""

    def __init__(self, name: str, inputs: Sequence[Tensor]) -> None:
        self._items: Iterator[dict[str, Any]] = iter([{name: t.numpy()} for t in inputs])

    def get_next(self) -> dict[str, Any] | None:
        return next(self._items, None)


def own_parameters(model: Any) -> int:
    """Give every Conv, Gemm and MatMul its own weight and bias initializers, in place; returns
    how many it copied.

    torch's exporter stores equal tensors once and feeds the other users through ``Identity``
    nodes (untrained BatchNorm folds to many equal biases, all zeros). onnxruntime's quantizer
    quantizes only a bias that is an initializer of its own, and left every other convolution in
    float around DequantizeLinear/QuantizeLinear pairs: in onnxruntime GhostNet's int8 graph took
    83 ms of node time at 640x640 against 34 in FP32 (depthwise convs at 3.7 GMAC/s on the
    dequantized tensors, against 24.5 in FP32; ``benchmarks/profile_engines.py --int8``,
    2026-12-07); with its own initializers, 35."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    aliases = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in inits}
    uses: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            uses[aliases.get(name, name)] = uses.get(aliases.get(name, name), 0) + 1
    copied = 0
    for n in graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        for k in range(1, len(n.input)):
            source = aliases.get(n.input[k], n.input[k])
            if source not in inits or (source == n.input[k] and uses[source] == 1):
                continue
            name = f"{n.name or n.output[0]}.param{k}"
            graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[source]), name))
            uses[source] -= 1
            n.input[k] = name
            copied += 1
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    for n in [n for n in graph.node if n.op_type == "Identity" and n.output[0] in aliases]:
        if n.output[0] not in used:
            graph.node.remove(n)
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    used |= {i.name for i in graph.input}  # an initializer that is also an input stays
    for init in [i for i in graph.initializer if i.name in uses and i.name not in used]:
        graph.initializer.remove(init)  # every user has its own copy now
    return copied


def quantize_onnx(
    src: str | os.PathLike, dst: str | os.PathLike, inputs: Sequence[Tensor], float_depthwise: bool = False
) -> Path:
    """Write ``src`` (an FP32 ONNX model) quantized to int8 at ``dst`` (see the module doc).

    Args:
        src: the FP32 ONNX file.
        dst: where the int8 (QDQ) model is written.
        inputs: the calibration inputs, one model call each (:func:`calibration_inputs`).
        float_depthwise: keep depthwise convolutions in float.

    Returns:
        ``dst``, written whole or not at all (a temporary file in its folder, renamed).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(src))
    own_parameters(model)
    exclude = depthwise_conv_nodes(model) if float_depthwise else []
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".ghostdet-quantize-") as tmp:
        named, out = Path(tmp) / "named.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(named))  # the nodes named, so they can be excluded by name
        quantize_static(
            str(named),
            str(out),
            _Reader(model.graph.input[0].name, inputs),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
        )
        os.replace(out, dst)
    return dst
