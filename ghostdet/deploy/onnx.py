"""ONNX export of GhostNet (V1/V2/V3) classifiers / backbones and detectors, verified with onnxruntime.

Models are exported in deploy mode (:func:`ghostdet.deploy.fuse`: BatchNorm folded; during export
the fused convolutions trace as plain ``Conv`` nodes) with the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``), which handles torchvision's detection post-processing.
Height and width are dynamic axes for every model (and batch for the classifier/backbone) unless
``static_shape=True``; torchvision detectors take ONE image per call in ONNX. GhostNet (V1)
trunks are exported in their portable form (:mod:`ghostdet.deploy.portable`: no concat, slice or
``ReduceMean``, channel parts padded to onnxruntime's block), which onnxruntime runs faster.

Needs the optional extra ``pip install 'ghostdet[export]'`` (onnx, onnxruntime).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator, Sequence
from fractions import Fraction
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import transform as _tv_transform

from ghostdet.deploy import fuse, is_fused
from ghostdet.deploy.portable import PortableGhostNet, _resolve_align, portable_model
from ghostdet.errors import ArgumentError, GhostdetError
from ghostdet.utils.files import ProtectedFiles

__all__ = [
    "TRUNK_KINDS",
    "ExportError",
    "build_for_export",
    "export_names",
    "export_onnx",
    "load_image",
    "match_detections",
    "matched_fraction",
    "calibrate_bn",
    "randomize_heads",
    "require_onnx",
    "run_onnx",
    "supported_opsets",
    "torchvision_export_fixes",
]

EXTRA_MESSAGE = "ONNX export needs the optional extra: pip install 'ghostdet[export]' (onnx, onnxruntime)"


class ExportError(GhostdetError, RuntimeError):
    """Export or verification failed (missing extra, mismatching outputs, ...)."""


#: The lowest opset the exports support (detectors need ONNX's RoiAlign / NonMaxSuppression of 11).
MIN_EXPORT_OPSET = 11


def supported_opsets() -> tuple[int, int]:
    """The opsets :func:`export_onnx` accepts: ``(11, the newest this torch's TorchScript exporter
    writes)`` (torch 2.x: 20; the export runs with ``dynamo=False``)."""
    try:
        from torch.onnx import _constants

        hi = int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET))
    except (ImportError, AttributeError):  # a torch without the table: the range torch 2.0-2.14 share
        hi = 17
    return MIN_EXPORT_OPSET, hi


def require_onnx() -> tuple[Any, Any]:
    """Import and return ``(onnx, onnxruntime)``, or raise :class:`ExportError` with a one-line hint."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ExportError(EXTRA_MESSAGE) from None
    return onnx, onnxruntime


def _kind(model: nn.Module) -> str:
    from torchvision.models.detection import FasterRCNN, RetinaNet

    if isinstance(model, (FasterRCNN, RetinaNet)):
        return "detector"
    if hasattr(model, "forward_features"):
        return "classifier"
    return "backbone"


def load_image(path: str | PathLike | None, size: tuple[int, int] = (480, 640)) -> Tensor:
    """An RGB image as a float CHW tensor in [0, 1]: read from ``path``, or a smooth generated one.

    Args:
        path: an image file, or ``None`` for a deterministic synthetic image of ``size``.
        size: ``(height, width)`` of the generated image.
    """
    if path is not None:
        from torchvision.io import ImageReadMode, decode_image

        return decode_image(str(path), mode=ImageReadMode.RGB).float() / 255.0
    h, w = size
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([xx, yy, (xx * 6).sin() * 0.5 + 0.5])
    img[:, h // 4 : h // 2, w // 4 : w // 2] = torch.tensor([0.9, 0.2, 0.1])[:, None, None]
    return img


def randomize_heads(model: nn.Module, std: float = 2.0, seed: int = 0) -> nn.Module:
    """Re-draw the last classification/regression layers of an UNTRAINED detector, in place.

    A randomly initialised torchvision detector gives every box nearly the same score (RetinaNet
    starts at the 0.01 prior), so which of the tied boxes survive top-k/NMS is arbitrary and
    PyTorch vs onnxruntime comparisons are meaningless. With spread-out logits the detections are
    distinct. Only for verifying exports of models without trained weights.

    Args:
        model: a torchvision FasterRCNN or RetinaNet.
        std: standard deviation of the new weights and biases.
        seed: random seed.
    """
    g = torch.Generator().manual_seed(seed)
    names = ("cls_logits", "cls_score", "bbox_pred", "bbox_reg", "box_predictor")
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and any(n in name for n in names):
                # RetinaNet's per-anchor sigmoid saturates (ties at ~1) with large logits
                s = std / 4 if isinstance(m, nn.Conv2d) else std
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * s / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * s)
    return model


def run_onnx(path: str | PathLike, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Run an exported model with onnxruntime (CPU) and return its outputs as tensors."""
    _, ort = require_onnx()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: t.detach().contiguous().numpy() for i, t in zip(sess.get_inputs(), inputs)}
    return [torch.from_numpy(o) for o in sess.run(None, feed)]


def match_detections(
    ref: dict[str, Tensor],
    got: dict[str, Tensor],
    box_tol: float = 1e-3,
    score_tol: float = 1e-3,
    box_atol: float = 1e-5,
) -> bool:
    """True when both hold the same detections, up to the order and the cut-off of tied scores.

    Same count; every detection scoring above the lowest kept score (+ ``score_tol``) has a
    partner in the other set with the same label, box coordinates within
    ``box_atol + box_tol * (largest |coordinate| of the box)`` and a score
    within ``score_tol``. Detections tied with the cut-off score may be swapped for other tied
    ones (top-k among equal scores is arbitrary).
    """
    if ref["boxes"].shape != got["boxes"].shape:
        return False
    if ref["boxes"].numel() == 0:
        return True
    match = (
        (
            (ref["boxes"][:, None] - got["boxes"][None]).abs()
            <= box_atol + box_tol * ref["boxes"].abs().amax(-1, keepdim=True)[:, None]
        ).all(-1)
        & (ref["labels"][:, None] == got["labels"][None])
        & ((ref["scores"][:, None] - got["scores"][None]).abs() <= score_tol)
    )
    cut = min(ref["scores"].min().item(), got["scores"].min().item()) + score_tol
    must_ref = ref["scores"] > cut
    must_got = got["scores"] > cut
    return bool(match.any(1)[must_ref].all() and match.any(0)[must_got].all())


def matched_fraction(ref: dict[str, Tensor], got: dict[str, Tensor], box_tol: float = 1e-3) -> float:
    """Fraction of reference detections with a same-label partner whose box is within ``box_tol``
    (relative to the box's largest coordinate, plus 1e-5 px)."""
    if ref["boxes"].numel() == 0:
        return 1.0 if got["boxes"].numel() == 0 else 0.0
    if got["boxes"].numel() == 0:
        return 0.0
    tol = 1e-5 + box_tol * ref["boxes"].abs().amax(-1, keepdim=True)
    close = ((ref["boxes"][:, None] - got["boxes"][None]).abs() <= tol[:, None]).all(-1)
    return (close & (ref["labels"][:, None] == got["labels"][None])).any(1).float().mean().item()


def _matched_box_err(ref: dict[str, Tensor], got: dict[str, Tensor]) -> float:
    """Largest distance from a reference box (above the cut-off score) to its closest same-label box."""
    if ref["boxes"].numel() == 0 or got["boxes"].numel() == 0:
        return 0.0 if ref["boxes"].numel() == got["boxes"].numel() else float("inf")
    d = (ref["boxes"][:, None] - got["boxes"][None]).abs().amax(-1)
    d = d.masked_fill(ref["labels"][:, None] != got["labels"][None], float("inf"))
    # detections tied with the cut-off score may legitimately be swapped (see match_detections)
    keep = ref["scores"] > min(ref["scores"].min().item(), got["scores"].min().item()) + 1e-4
    return d.amin(1)[keep].max().item() if keep.any() else 0.0


def export_onnx(
    model: nn.Module,
    path: str | PathLike,
    image: Tensor | None = None,
    opset: int = 17,
    verify: bool = True,
    rtol: float = 1e-4,
    box_tol: float = 1e-3,
    min_matched: float = 0.98,
    portable: bool = True,
    static_shape: bool = False,
    align: int | None = None,
) -> dict[str, Any]:
    """Export an eval-mode GhostNet classifier, GhostNetFPN backbone or detector to ONNX.

    Args:
        model: the model in eval mode; it is fused (a copy) unless it already is.
        path: output ``.onnx`` file (parent folders are created).
        image: CHW float image used for tracing and verification (default: a generated
            480x640 image; classifiers use a 224x224 crop of it).
        opset: ONNX opset, in :func:`supported_opsets` (11 to 20 with torch 2.x).
        verify: compare onnxruntime's outputs with PyTorch's on ``image`` and on a second input
            size (which checks the dynamic axes).
        rtol: classifier/backbone tolerance, max abs difference relative to the max abs output.
        box_tol: detector tolerance on box coordinates, relative (plus 1e-5 px absolute); labels
            must be identical.
        min_matched: detector check passes when the counts are equal and at least this fraction
            of PyTorch's detections has an ONNX partner (same label, box within ``box_tol``).
            Float differences of ~1e-6 can flip a top-k or NMS decision between nearly tied
            boxes, which replaces a detection by another one; that is not an export error.
        portable: export the V1 GhostNet parts (a classifier, or the trunk of a GhostNet-FPN
            backbone or detector) in their portable form (:func:`ghostdet.deploy.portable.portable_model`),
            the rest fused; models without V1 parts (GhostNetV2/V3) are exported fused.
        static_shape: classifier/backbone only: fix the input shape to the tracing input's
            (1x3x224x224) instead of dynamic batch, height and width. onnxruntime then knows every
            shape and fuses each residual addition into its convolution (with dynamic axes it
            wraps them in reshapes instead); the file only accepts that shape.
        align: the portable form's channel padding, onnxruntime's NCHWc block on the CPU that
            will run the file (16 with AVX-512, 8 with AVX2); ``None``: this machine's
            (:func:`ghostdet.deploy.portable.nchwc_block`).

    Returns:
        A report dict: ``path``, ``kind``, ``form`` (``"portable"`` or ``"fused"``), ``align``
        (portable form only), ``opset``, and
        per verified input size the measured error (``max_rel_err`` or ``max_box_err``,
        ``num_detections``).

    Raises:
        ExportError: missing extra, an opset outside :func:`supported_opsets`, or outputs that do
            not match within tolerance.
    """
    onnx, _ = require_onnx()
    if any(m.training for m in model.modules()):
        raise ExportError("export_onnx needs an eval-mode model: call model.eval() first")
    kind = _kind(model)
    lo, hi = supported_opsets()
    if isinstance(opset, bool) or not isinstance(opset, int) or not lo <= opset <= hi:
        raise ExportError(
            f"opset must be an integer in [{lo}, {hi}] (the range torch {torch.__version__}'s ONNX "
            f"exporter writes for these models), got {opset!r}"
        )
    if static_shape and kind == "detector":
        raise ExportError("static_shape is for classifiers and backbones; detectors take images of any size")
    form = "fused"
    fused = model
    align = _resolve_align(align)  # a bad value is an error whatever the model
    if portable and not is_fused(model):
        try:
            fused = portable_model(model, align)
            form = "portable"
        except ValueError:  # no V1 GhostNet part: the fused form
            pass
    if not isinstance(fused, PortableGhostNet) and not is_fused(fused):
        fused = fuse(fused)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image is None:
        image = load_image(None)
    args, input_names, output_names, dynamic_axes = _trace_spec(fused, kind, image)
    if static_shape:
        dynamic_axes = {}
    with warnings.catch_warnings(), torch.no_grad(), torchvision_export_fixes():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            fused,
            args,
            str(path),
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    report: dict[str, Any] = {"path": str(path), "kind": kind, "form": form, "opset": opset, "checks": []}
    if form == "portable":
        report["align"] = align
    if verify and kind == "detector":
        _verify_detector(fused, path, image, output_names, box_tol, min_matched, report["checks"])
    elif verify:
        _verify_tensors(fused, path, args[0], kind, rtol, report["checks"], other_size=not static_shape)
    return report


def _clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """torchvision's ``clip_boxes_to_image`` without its final ``reshape``: traced, that reshape
    becomes ``Reshape(boxes, [N, -1])``, which onnxruntime cannot run on an empty tensor (no box
    left in a pyramid level after the score threshold), so the exported detector failed on such
    an image. The same clamps, the coordinates stacked back instead."""
    height, width = size
    x0, y0, x1, y1 = boxes.unbind(-1)
    lo = torch.tensor(0, dtype=boxes.dtype, device=boxes.device)
    w = torch.tensor(width, dtype=boxes.dtype, device=boxes.device)
    h = torch.tensor(height, dtype=boxes.dtype, device=boxes.device)
    xs = [torch.min(torch.max(v, lo), w) for v in (x0, x1)]
    ys = [torch.min(torch.max(v, lo), h) for v in (y0, y1)]
    return torch.stack((xs[0], ys[0], xs[1], ys[1]), dim=-1)


#: torchvision's own resize, which :func:`torchvision_export_fixes` swaps out while tracing.
_TORCHVISION_RESIZE = _tv_transform._resize_image_and_masks


#: Longest image side (on the side whose size limit binds) for which the exported resize
#: reproduces eager's double rounding; beyond it the size is the exact quotient.
RESIZE_TABLE_SIDES = 8192


@functools.lru_cache(maxsize=8)
def _double_rounding_table(num: int) -> Tensor:
    """Per divisor ``d``, how far below ``num / d`` Python's double ``num / d`` lies, in units of
    2**-53 relative (0 where it is not below): what decides whether eager's
    ``floor(n * (num / d))`` falls a pixel short of an exact whole quotient."""
    table = [0.0]
    for d in range(1, RESIZE_TABLE_SIDES + 1):
        exact = Fraction(num, d)
        below = (exact - Fraction(num / d)) / exact
        table.append(float(max(below, Fraction(0)) * 2**53))
    return torch.tensor(table)  # built from Python numbers: one constant when traced


def _resize_like_eager(
    image: Tensor,
    self_min_size: int,
    self_max_size: int,
    target: dict[str, Tensor] | None = None,
    fixed_size: tuple[int, int] | None = None,
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """torchvision's ``_resize_image_and_masks`` for tracing, with the output size the eager model
    computes on every input, in every runtime.

    Eager, torchvision sizes a side ``floor(side * (limit / ref))`` in Python doubles (``limit /
    ref`` the binding one of ``min_size / shortest`` and ``max_size / longest``). Traced, that
    became float32 ``Reciprocal`` and ``Mul``, which sized a 200x320 image 319x511 instead of
    320x512 (one size in nine came out a pixel short), and OpenVINO runs doubles as float32. Here
    the size is the exact integer quotient, and where it is whole (where the double product can
    round below it) one pixel less when eager's does: the product ``k * (1 + e)`` of a whole
    ``k`` and the double quotient's relative error ``e < 0`` rounds below ``k`` exactly when
    ``k * |e| * 2**53`` exceeds the largest power of two below ``k`` (equal: a tie, kept), with
    ``|e| * 2**53`` from :func:`_double_rounding_table`. Integer and float32 operations only,
    so onnxruntime and OpenVINO agree with eager up to :data:`RESIZE_TABLE_SIDES`."""
    if target is not None or fixed_size is not None or not torch.jit.is_tracing():
        return _TORCHVISION_RESIZE(image, self_min_size, self_max_size, target, fixed_size)
    hw = torch.onnx.operators.shape_as_tensor(image)[-2:]
    lo, hi = hw.min(), hw.max()
    use_min = self_min_size * hi <= self_max_size * lo  # the shorter side's limit binds
    num = torch.where(use_min, self_min_size, self_max_size).reshape(1)
    den = torch.where(use_min, lo, hi).reshape(1)
    product = hw * num
    exact = product // den
    whole = product % den == 0
    index = den.clamp(max=RESIZE_TABLE_SIDES)
    below = torch.where(
        use_min,
        _double_rounding_table(self_min_size)[index],
        _double_rounding_table(self_max_size)[index],
    ) * (den <= RESIZE_TABLE_SIDES)
    k = exact.to(torch.float32)
    power = torch.pow(2.0, torch.floor(torch.log2(k - 0.5)))  # largest power of two below k
    # exactly at the power of two the double product ties and rounds to k (even): the margin
    # keeps float32 rounding of the table or of OpenVINO's pow and log from breaking that tie
    # (no case off a tie is within 1e-4 of it over sides up to 4,000 and limits 320..1,333)
    size = exact - (whole & (k * below > power * (1 + 2**-14))).to(exact.dtype)
    out = torch.nn.functional.interpolate(
        image[None], size=[size[0], size[1]], mode="bilinear", align_corners=False
    )[0]
    return out, target


@contextlib.contextmanager
def torchvision_export_fixes() -> Iterator[None]:
    """Export a torchvision detector inside this context and its graph computes what the eager
    model does on every input: boxes are clipped with :func:`_clip_boxes_to_image` (runs on an
    empty pyramid level) and images are resized with :func:`_resize_like_eager` (eager's output
    size). Both are looked up by torchvision at call time, so the context swaps them."""
    from torchvision.ops import boxes as box_ops

    clip = box_ops.clip_boxes_to_image
    box_ops.clip_boxes_to_image = _clip_boxes_to_image
    _tv_transform._resize_image_and_masks = _resize_like_eager
    try:
        yield
    finally:
        box_ops.clip_boxes_to_image = clip
        _tv_transform._resize_image_and_masks = _TORCHVISION_RESIZE


def _trace_spec(fused: nn.Module, kind: str, image: Tensor) -> tuple[tuple, list[str], list[str], dict]:
    """``(args, input_names, output_names, dynamic_axes)`` of the export of ``fused``."""
    if kind == "detector":
        with torch.inference_mode():
            output_names = list(fused([image])[0])  # FasterRCNN: boxes, labels, scores; RetinaNet: ...
        dynamic_axes = {"image": {1: "height", 2: "width"}, **{n: {0: "n"} for n in output_names}}
        return ([image],), ["image"], output_names, dynamic_axes
    x = image[:, :224, :224].unsqueeze(0)
    with torch.inference_mode():
        out = fused(x)
    output_names = ["logits"] if kind == "classifier" else [f"feat_{k}" for k in out]
    dynamic_axes = {"input": {0: "batch", 2: "height", 3: "width"}}
    dynamic_axes.update(
        {n: {0: "batch", 2: "h", 3: "w"} if kind == "backbone" else {0: "batch"} for n in output_names}
    )
    return (x,), ["input"], output_names, dynamic_axes


def _verify_detector(
    fused: nn.Module,
    path: Path,
    image: Tensor,
    output_names: list[str],
    box_tol: float,
    min_matched: float,
    checks: list[dict[str, Any]],
) -> None:
    """Compare onnxruntime's detections with PyTorch's on ``image`` and a 3/4-height copy."""
    h, w = image.shape[-2:]
    second = torch.nn.functional.interpolate(image[None], size=(h * 3 // 4, w), mode="bilinear")[0]
    for img in (image, second):
        with torch.inference_mode():
            ref = fused([img])[0]
        got = dict(zip(output_names, run_onnx(path, [img])))
        boxes = got["boxes"]
        frac = matched_fraction(ref, got, box_tol)
        check = {
            "matched": frac,
            "size": list(img.shape[-2:]),
            "num_detections": int(ref["boxes"].shape[0]),
            "onnx_detections": int(boxes.shape[0]),
            "max_box_err": _matched_box_err(ref, got),
        }
        checks.append(check)
        if boxes.shape != ref["boxes"].shape or frac < min_matched:
            raise ExportError(
                f"onnxruntime detections differ from PyTorch's at size {check['size']}: {check}"
            )


def _verify_tensors(
    fused: nn.Module,
    path: Path,
    x: Tensor,
    kind: str,
    rtol: float,
    checks: list[dict[str, Any]],
    other_size: bool = True,
) -> None:
    """Compare a classifier's or backbone's outputs on ``x`` and (``other_size``) on another batch
    and size, which checks the dynamic axes."""
    x2 = torch.cat([x, x.flip(-1)])[:, :, :160, :192]
    for inp in (x, x2) if other_size else (x,):
        with torch.inference_mode():
            ref = fused(inp)
        refs = [ref] if kind == "classifier" else list(ref.values())
        outs = run_onnx(path, [inp])
        err = max(((r - o).abs().max() / r.abs().max().clamp_min(1e-12)).item() for r, o in zip(refs, outs))
        checks.append({"size": list(inp.shape), "max_rel_err": err})
        if err > rtol:
            raise ExportError(f"onnxruntime output differs from PyTorch's by {err:.2e} (relative) > {rtol}")


def _default_image() -> Path | None:
    root = Path(__file__).resolve().parents[2] / "shared/data/coco128/train2017"
    images = sorted(root.glob("*.jpg")) if root.is_dir() else []
    return images[0] if images else None


def calibrate_bn(model: nn.Module, image: Tensor, steps: int = 3) -> nn.Module:
    """Set the BatchNorm running statistics of an UNTRAINED model from ``image`` (in place).

    With default statistics (mean 0, var 1) a randomly initialised deep network's eval-mode
    activations collapse to nearly constant maps, so every detection looks the same. A few
    train-mode passes (no gradients) give realistic statistics. Returns the model in eval mode.

    Args:
        model: classifier, backbone or torchvision detector.
        image: CHW float image.
        steps: forward passes.
    """
    from torchvision.models.detection import FasterRCNN, RetinaNet

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the passes
            m.reset_running_stats()
    with torch.no_grad():
        if isinstance(model, (FasterRCNN, RetinaNet)):
            model.eval()
            batch = model.transform([image])[0].tensors
            net: nn.Module = model.backbone
        else:
            batch, net = image[None], model
        net.train()
        for i in range(steps):
            net(batch.flip(-1) if i % 2 else batch)
    return model.eval()


#: The export tool's names of the two trunk exports; the detectors go by their registry aliases.
TRUNK_KINDS = ("classifier", "backbone")


def export_names() -> tuple[str, ...]:
    """What ``tools/export_onnx.py --model`` accepts: the trunk kinds, then the detector aliases."""
    from ghostdet.models.registry import detector_aliases

    return (*TRUNK_KINDS, *detector_aliases())


def build_for_export(
    name: str, weights: str | None, width: float, num_classes: int | None, family: str | None = None
) -> nn.Module:
    """Build ``classifier``, ``backbone`` or a detector (alias or registered name), in eval mode.

    Detectors without ``weights`` get :func:`randomize_heads` so that verification is meaningful.

    Args:
        name: one of :func:`export_names` or a registered detector name.
        weights: weights for the builder (``None``: random).
        width: width multiplier of the trunk.
        num_classes: classes (``None``: builder default / checkpoint).
        family: backbone family (its classifier is registered as ``<family>``, its FPN backbone
            as ``<family>_fpn``, a detector as its variant, e.g. ``fasterrcnn_ghostnetv2_fpn``).
            ``None``: ``ghostnet`` for the trunks; for a detector the family a ``tools/train_det.py``
            checkpoint in ``weights`` records, else the one the name gives.
    """
    model = _build(name, weights, width, num_classes, family)
    return model if weights is not None else randomize_heads(model)


def _checkpoint_model(weights: str | None) -> dict[str, Any]:
    """``backbone`` and ``width`` of a local ``tools/train_det.py`` checkpoint (``{}`` for any other
    file: the builder reads and reports it)."""
    from ghostdet.utils.checkpoint_io import CheckpointReadError, checkpoint_backbone, read_checkpoint

    if weights is None or not Path(weights).is_file() or Path(weights).suffix == ".safetensors":
        return {}
    try:
        ckpt = read_checkpoint(weights)
    except CheckpointReadError:
        return {}
    if not isinstance(ckpt, dict) or "detector" not in ckpt:
        return {}
    out: dict[str, Any] = {"backbone": checkpoint_backbone(ckpt)}
    if isinstance(ckpt.get("width"), (int, float)):
        out["width"] = float(ckpt["width"])
    return out


def _build(
    name: str, weights: str | None, width: float, num_classes: int | None, family: str | None
) -> nn.Module:
    from ghostdet.models.registry import family_variant, get_model, model_entry

    if name == "classifier":
        cls = family or "ghostnet"
        return get_model(cls, width=width, num_classes=num_classes or 1000, weights=weights).eval()
    if name == "backbone":
        return get_model(f"{family or 'ghostnet'}_fpn", width=width, weights=weights).eval()
    try:
        entry = model_entry(name)
    except ValueError:
        entry = None
    if entry is None or entry.kind != "detector":
        raise ArgumentError(
            f"unknown model {name!r}; choose from {', '.join(export_names())}", argument="models"
        )
    recorded = _checkpoint_model(weights)
    family = family or recorded.get("backbone")
    if family is not None:
        entry = model_entry(family_variant(entry.name, family))
    kw: dict[str, Any] = {"weights": weights, "num_classes": num_classes}
    if weights is None:
        kw["width"] = width
    elif "width" in recorded:  # a train_det checkpoint carries its width
        kw["width"] = recorded["width"]
    return entry.build(**kw).eval()


def _write_int8(model: nn.Module, path: Path, img: Tensor, calibration: str | PathLike, name: str) -> str:
    """Quantize the FP32 file at ``path`` to ``<stem>-int8.onnx`` beside it; its report line."""
    from ghostdet.deploy.quantize import calibration_inputs, quantize_onnx

    kind = _kind(model)
    # the calibration images at the size each kind is traced with (a classifier at 224x224)
    example = (
        [img] if kind == "detector" else torch.zeros(1, 3, 224, 224) if kind == "classifier" else img[None]
    )
    inputs = calibration_inputs(calibration, kind, example)
    dst = path.with_name(f"{path.stem}-int8.onnx")
    ProtectedFiles([path]).check(dst)
    quantize_onnx(path, dst, inputs)
    return f"{name}: wrote {dst} (int8 QDQ, calibrated on {len(inputs)} input(s) from {calibration})"


def export_models(
    models: Sequence[str],
    out: str | PathLike | None = None,
    out_dir: str | PathLike = "exports",
    weights: str | None = None,
    width: float = 1.0,
    num_classes: int | None = None,
    image: str | PathLike | None = None,
    opset: int = 17,
    verify: bool = True,
    backbone: str | None = None,
    static_shape: bool = False,
    align: int | None = None,
    int8_calibration: str | PathLike | None = None,
):
    """Export several models (see :func:`build_for_export`), yielding one report line per model.

    Args:
        models: model names.
        out: output file (one model only); otherwise ``out_dir/<name>.onnx``.
        out_dir: output folder.
        weights: weights passed to the builder (``None``: random weights).
        width: GhostNet width multiplier.
        num_classes: number of classes (``None``: builder default / checkpoint).
        image: image for tracing and verification (default: first coco128 image, else generated).
        opset: ONNX opset.
        verify: compare with onnxruntime.
        backbone: backbone family (see :func:`build_for_export`; ``None``: GhostNet, or the
            family a detector checkpoint records).
        static_shape: export the classifier and backbone for their tracing shape only (see
            :func:`export_onnx`); detectors keep their dynamic size.
        align: the portable form's channel padding (see :func:`export_onnx`; ``None``: this
            machine's NCHWc block).
        int8_calibration: also write each model quantized to int8 (``<file>-int8.onnx``, see
            :mod:`ghostdet.deploy.quantize`), calibrated on this folder of images.
    """
    require_onnx()
    img_path = Path(image) if image is not None else _default_image()
    img = load_image(img_path)
    source = str(img_path) if img_path is not None else "generated 480x640 image"
    for name in models:
        torch.manual_seed(0)  # reproducible random weights
        model = build_for_export(name, weights, width, num_classes, backbone)
        if weights is None:
            calibrate_bn(model, img)
        path = Path(out) if out is not None else Path(out_dir) / f"{name}.onnx"
        ProtectedFiles([p for p in (weights, img_path) if p is not None and Path(p).exists()]).check(path)
        static = static_shape and _kind(model) != "detector"
        rep = export_onnx(
            model, path, image=img, opset=opset, verify=verify, static_shape=static, align=align
        )
        form = f"{rep['form']} form" + (f", aligned to {rep['align']}" if "align" in rep else "")
        if not verify:
            yield f"{name}: wrote {path} ({form}, opset {opset}, not verified)"
            if int8_calibration is not None:
                yield _write_int8(model, path, img, int8_calibration, name)
            continue
        if rep["kind"] == "detector":
            checks = "; ".join(
                f"{c['size'][0]}x{c['size'][1]}: {c['num_detections']} detections, "
                f"{100 * c['matched']:.0f}% matched (label + box within 1e-3), max box diff "
                f"{c['max_box_err']:.1e} px"
                for c in rep["checks"]
            )
        else:
            checks = "; ".join(
                f"input {tuple(c['size'])}: max rel diff {c['max_rel_err']:.1e}" for c in rep["checks"]
            )
        yield (
            f"{name}: wrote {path} ({form}, opset {opset}); onnxruntime matches PyTorch on {source}: {checks}"
        )
        if int8_calibration is not None:
            yield _write_int8(model, path, img, int8_calibration, name)
