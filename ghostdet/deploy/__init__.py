"""Running GhostNet classifiers, backbones and detectors where users deploy them.

:func:`compile` is the entry point: it returns the model compiled for one runtime -- PyTorch
eager, the fused deploy mode below, or the ONNX export (:mod:`ghostdet.deploy.onnx`, in the
portable form of :mod:`ghostdet.deploy.portable`) in onnxruntime or OpenVINO -- and with
``runtime="auto"`` picks the fastest of those installed, by measurement
(:mod:`ghostdet.deploy.runtimes`).

The fused deploy mode:

:func:`fuse` turns an eval-mode model into an inference-only copy that computes the same function
with fewer and cheaper operations on CPU:

* every BatchNorm (``BatchNorm2d`` and ``FrozenBatchNorm2d``) is folded into the convolution
  before it: GhostModule primary and cheap convs, the strided depthwise conv, both shortcut
  convs, the stem and the final 1x1 ``ConvBnAct``;
* each convolution runs as ONE oneDNN primitive with its ReLU (and, for the shortcut's 1x1 conv,
  the residual addition) fused in, on weights that are reordered into oneDNN's blocked layout once
  instead of on every call (``torch.ops.mkldnn._convolution_pointwise``, the kernel PyTorch's own
  compiler emits); activations stay ``channels_last`` so depthwise convs need no layout change;
* 1x1 convolutions on small maps (at most ``THRESHOLDS.gemm_max_pixels`` output pixels, 56x56 for
  one image) run as one BLAS GEMM on the channels_last data instead: a oneDNN call has a fixed set-up
  cost of ~25 us, which dominates on 7x7-28x28 maps, a GEMM call costs a few us, and a GEMM can
  write its result into a channel slice of a wider tensor (see the Ghost module below);
* depthwise convolutions (3x3 / 5x5 / 7x7, channels a multiple of 4) run on ghostdet's own
  vectorised C kernel (``csrc/dwconv.c``, compiled for this CPU on first use, see
  :mod:`ghostdet.deploy.native`): it has no per-call set-up, where a oneDNN depthwise call costs
  30-50 us even on a 7x7 map, and it writes the Ghost module's cheap half straight into the
  module's output; on small maps the primary half is written there by its GEMM, so no
  concatenation copy is left. Without a C compiler, oneDNN runs them (``fuse(...,
  native_kernels=False)`` or ``GHOSTDET_NATIVE=0`` choose that on purpose);
* bottlenecks with at most ``THRESHOLDS.fused_block_max_channels`` output channels (GhostNet's
  memory-bound blocks on the large maps), and wider ones on maps of at least
  ``THRESHOLDS.fused_wide_min_pixels`` pixels,
  run fused on native kernels (``csrc/ghostblock.c``): without SE, one
  call per block, row bands streaming through per-thread scratch so only the block's input is
  read and its output written; with SE (whose gate needs the whole map's mean) or a DFC gate, a
  front call (ghost1, the strided depthwise conv, channel sums) and a back call (ghost2, residual)
  around the gate;
* on maps of at most ``THRESHOLDS.small_block_max_pixels`` pixels (32x32), and for wide
  bottlenecks up to ``THRESHOLDS.wide_small_block_max_pixels`` (64x64), every bottleneck
  runs whole in one native call (``csrc/smallblock.c``): on the 7x7-14x14 maps its ~20 separate
  ops cost more in per-call overhead than in arithmetic, and up to those limits the whole-map
  stages measured faster than the band kernels;
* the stem (3 input channels) runs on a native direct convolution (``csrc/stemconv.c``);
* whether the fast kernels may be used is decided once per model call, not once per convolution;
* the squeeze-excite block runs its two 1x1 convs on the pooled vector as matrix products, and
  its hard-sigmoid's ``+3`` and ``/6`` are folded into the expand weights (one clamp remains);
  the gate never multiplies a feature map: it scales the input columns of ghost2's 1x1 weight
  instead (``W @ (g * z) = (W * g) @ z``, a few thousand numbers instead of the map);
* the Ghost module's ``[:, :oup]`` slice is skipped when it is a no-op, and the residual is added
  in place into the freshly concatenated output instead of allocating another tensor;
* GhostNetV2/V3's DFC attention gate (:class:`DeployDFCGate`) runs with its three BatchNorms
  folded, as one native call (``csrc/dfcgate.c``: pool, projection, 1x5 and 5x1 depthwise convs,
  sigmoid, at half resolution; on the small maps its five torch ops were mostly per-call cost).
  The narrow gated bottlenecks run on the two-pass fused kernels, whose front call multiplies
  ghost1's output by the gate as it computes it (before the strided conv); the wide ones gate
  ghost1's output in one native pass (``gate_mul``: nearest upsampling and product in place).
  Without the native kernels the gate runs as torch ops (GEMMs / prepacked oneDNN calls);
* GhostNetV3's parallel branches are re-parameterised into one conv per op, after which the
  model has V1's shape and takes V1's path (native kernels included);
* for torchvision detectors, the remaining convolutions (FPN, RPN / RetinaNet heads) get the
  same prepacked fused treatment; everything else (transform, anchors, RoI heads) is untouched.

When oneDNN cannot be used (another device or dtype, autograd recording, ``torch.jit`` tracing,
ONNX export, ``torch.compile``), every fused convolution falls back to plain ``F.conv2d`` (+ add,
+ ReLU), so deploy models also export to ONNX and run under ``torch.compile``.

The package, one concept per module: :mod:`~ghostdet.deploy.convert` (:func:`fuse`, walking the
model), :mod:`~ghostdet.deploy.conversions` (which modules the backbone families declare
convertible, and into what), :mod:`~ghostdet.deploy.backend` (:class:`FusedConv2d`, BatchNorm folding),
:mod:`~ghostdet.deploy.ghost` (the Ghost deploy modules), :mod:`~ghostdet.deploy.convfuse`
(generic torchvision conv fusion), :mod:`~ghostdet.deploy.plan` (the measured thresholds
:data:`THRESHOLDS` and the planner that names each bottleneck's path, :class:`BlockPlan`) and
:mod:`~ghostdet.deploy.native` (building and calling the C kernels in ``csrc/``).
``tune_malloc`` lives in :mod:`ghostdet.utils.runtime` and is re-exported here.

Example::

    model = ghostdet.get_model("fasterrcnn_ghostnet_320_fpn").eval()
    fast = ghostdet.deploy.fuse(model)   # new model; ``model`` itself is unchanged
"""

from typing import Any

from ghostdet.deploy.backend import FusedConv2d, fold_bn
from ghostdet.deploy.convert import fuse, is_fused
from ghostdet.deploy.ghost import (
    DeployBottleneck,
    DeployDFCGate,
    DeployGhostModule,
    DeployGhostNet,
    DeployGhostNetFeatures,
    DeploySqueezeExcite,
)
from ghostdet.deploy.plan import THRESHOLDS, BlockPath, BlockPlan
from ghostdet.utils.runtime import tune_malloc

__all__ = [
    "THRESHOLDS",
    "BlockPath",
    "BlockPlan",
    "compile",
    "DeployBottleneck",
    "DeployDFCGate",
    "DeployGhostModule",
    "DeployGhostNet",
    "DeployGhostNetFeatures",
    "DeploySqueezeExcite",
    "FusedConv2d",
    "fold_bn",
    "fuse",
    "is_fused",
    "tune_malloc",
]


def compile(
    model: Any,
    example: Any,
    runtime: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    calibration: Any = None,
) -> Any:
    """Compile an eval-mode classifier, backbone or detector for the fastest (or a named) runtime.

    See :func:`ghostdet.deploy.runtimes.compile_model`, which this calls.

    Args:
        model: the eval model.
        example: an input it takes (a ``(N, 3, H, W)`` tensor, or a list of CHW images for a
            detector).
        runtime: ``auto``, ``eager``, ``torch``, ``onnxruntime`` or ``openvino``.
        threads: CPU threads of the runtime (``None``: its default).
        precision: ``fp32`` or ``int8`` (OpenVINO, post-training static quantization).
        calibration: for int8: a folder of images, a list of image files or of input tensors.

    Returns:
        a :class:`ghostdet.deploy.runtimes.CompiledModel`: call it as the eval model; its
        ``runtime`` (and ``repr``) says which runtime runs it.
    """
    from ghostdet.deploy.runtimes import compile_model

    return compile_model(model, example, runtime, threads, precision, calibration, log=print)
