"""torchvision Faster R-CNN / RetinaNet builders on the FPN backbone of any backbone family
(GhostNet by default; the backbone itself is :mod:`ghostdet.models.fpn`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import (
    ExtraFPNBlock,
    LastLevelMaxPool,
    LastLevelP6P7,
)

from ghostdet.errors import ArgumentError, CheckpointError
from ghostdet.models.arguments import check_builder_args
from ghostdet.models.atss import ATSSRetinaNet
from ghostdet.models.family import get_family
from ghostdet.models.fpn import ghostnet_fpn_backbone
from ghostdet.models.registry import register_model
from ghostdet.models.retinanet_head import NoExtraLevels, retinanet_anchors, retinanet_head
from ghostdet.models.weights import (
    argument_context,
    load_state_dict_file,
    load_strict,
    resolve_weights,
)

__all__ = [
    "fasterrcnn_ghostnet_320_fpn",
    "fasterrcnn_ghostnet_fpn",
    "fasterrcnn_ghostnetv2_320_fpn",
    "fasterrcnn_ghostnetv2_fpn",
    "fasterrcnn_ghostnetv3_320_fpn",
    "fasterrcnn_ghostnetv3_fpn",
    "retinanet_ghostnet_320_fpn",
    "retinanet_ghostnet_fpn",
    "retinanet_ghostnetv2_320_fpn",
    "retinanet_ghostnetv2_fpn",
    "retinanet_ghostnetv3_320_fpn",
    "retinanet_ghostnetv3_fpn",
]

# The state-dict keys whose first dimension gives the number of classes (per anchor for RetinaNet).
FASTERRCNN_CLASS_KEY = "roi_heads.box_predictor.cls_score.weight"
RETINANET_CLASS_KEY = "head.classification_head.cls_logits.weight"
RETINANET_BOX_KEY = "head.regression_head.bbox_reg.weight"  # 4 rows per anchor


def _load_detector_weights(
    weights: str | PathLike,
    progress: bool,
    num_classes: int | None,
    class_key: str,
    per_anchor: int,
    box_key: str | None = None,
) -> tuple[dict[str, Tensor], int]:
    """The checkpoint's state dict and class count; ``box_key``: the box predictor's weight, 4 rows
    per anchor, whose anchor count must be ``per_anchor``."""
    if str(weights).lower() == "imagenet":
        raise ArgumentError(
            "there are no published GhostNet detector weights: 'imagenet' is for weights_backbone (an "
            "ImageNet-pretrained trunk); weights takes a checkpoint written by tools/train_det.py",
            argument="weights",
        )
    state = load_state_dict_file(resolve_weights(weights, width=0.0, progress=progress))
    if class_key not in state:
        raise CheckpointError(f"{weights} is not a checkpoint of this detector (no '{class_key}' entry)")
    box = None if box_key is None else state.get(box_key)
    if box is not None and box.shape[0] != 4 * per_anchor:
        raise CheckpointError(
            f"the checkpoint {weights} predicts {box.shape[0] // 4} anchors per location, this model "
            f"{per_anchor}; a retinanet_ghostnet_320_fpn checkpoint from before its ATSS default (9 "
            "anchors) loads with anchor_scale=4, scales_per_octave=3, aspect_ratios=(0.5, 1.0, 2.0), "
            "matcher='iou'"
        )
    found = state[class_key].shape[0] // per_anchor
    if num_classes is not None and num_classes != found:
        raise CheckpointError(f"the checkpoint {weights} has {found} classes, not num_classes {num_classes}")
    return state, found


_DETECTOR_CHECKED = ("width", "num_classes", "weights", "weights_backbone", "trainable_backbone_layers",
                     "fpn_channels", "progress")  # fmt: skip


def _checked_detector(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Wrap a detector builder: nonsense arguments are one ``ValueError`` before anything is built,
    and a bad weights file is tagged with the argument it came from (``weights`` when given,
    which replaces ``weights_backbone``; see :func:`~ghostdet.models.weights.argument_context`)."""
    signature = inspect.signature(builder)

    @functools.wraps(builder)
    def wrapper(**kwargs: Any) -> nn.Module:
        args = signature.bind(**kwargs)
        args.apply_defaults()
        given = args.arguments
        family = given.get("backbone", "ghostnet")
        if not isinstance(family, str):
            raise ArgumentError(
                f"{builder.__name__}: backbone must be a family name (str), got {family!r}",
                argument="backbone",
            )
        checked = {k: given[k] for k in _DETECTOR_CHECKED if k in given}
        check_builder_args(builder.__name__, get_family(family).num_stages, **checked)
        source = "weights" if given.get("weights") is not None else "weights_backbone"
        with argument_context(source):
            return builder(**kwargs)

    return wrapper


def _frcnn_anchors(n_levels: int) -> AnchorGenerator:
    sizes = tuple((32 * 2**i, 64 * 2**i) for i in range(n_levels))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * n_levels)


@register_model(
    "fasterrcnn_ghostnet_fpn",
    kind="detector",
    aliases=("fasterrcnn",),
    class_key=FASTERRCNN_CLASS_KEY,
    family="ghostnet",
)
@_checked_detector
def fasterrcnn_ghostnet_fpn(
    *,
    weights: str | PathLike | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: str | PathLike | None = None,
    trainable_backbone_layers: int | None = None,
    width: float = 1.0,
    returned_layers: Sequence[int] | None = None,
    fpn_channels: int = 256,
    backbone: str = "ghostnet",
    representation_size: int = 1024,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN with a GhostNet-FPN backbone (the paper's detection setup uses width 1.1).

    Args:
        weights: a full detector checkpoint (local file or URL), loaded strictly.
        progress: show download progress bars.
        num_classes: number of classes including background (default 91, torchvision's COCO
            convention; inferred from ``weights`` when given).
        weights_backbone: ImageNet weights for the GhostNet trunk (``"imagenet"``, URL, file).
        trainable_backbone_layers: trainable trunk stages counted from the top (0-5).
        width: GhostNet width multiplier.
        returned_layers: trunk stages feeding the FPN (default strides 8/16/32 + a pooled level).
        fpn_channels: channels of the FPN levels (and of the RPN head).
        backbone: backbone family of the trunk.
        representation_size: width of the box head's two fully connected layers (torchvision:
            1024); its first layer, ``fpn_channels * 7 * 7`` inputs per sampled RoI, is most of
            a training step at small inputs. Ignored where ``box_head`` is given.
        **kwargs: passed to :class:`torchvision.models.detection.FasterRCNN`.
    """
    state = None
    if weights is not None:
        state, num_classes = _load_detector_weights(weights, progress, num_classes, FASTERRCNN_CLASS_KEY, 1)
        weights_backbone = None
    if num_classes is None:
        num_classes = 91
    backbone = ghostnet_fpn_backbone(
        width,
        weights_backbone,
        trainable_backbone_layers,
        returned_layers,
        progress=progress,
        out_channels=fpn_channels,
        family=backbone,
    )
    n_maps = len(backbone.body.returned_layers)
    kwargs.setdefault("rpn_anchor_generator", _frcnn_anchors(n_maps + 1))
    kwargs.setdefault(
        "box_roi_pool",
        MultiScaleRoIAlign([str(i) for i in range(n_maps)], output_size=7, sampling_ratio=2),
    )
    if representation_size < 1:
        raise ArgumentError(
            f"representation_size must be >= 1, got {representation_size}", argument="representation_size"
        )
    if "box_head" not in kwargs:
        side = kwargs["box_roi_pool"].output_size[0]
        kwargs["box_head"] = TwoMLPHead(fpn_channels * side * side, representation_size)
        if "box_predictor" not in kwargs:
            kwargs["box_predictor"] = FastRCNNPredictor(representation_size, num_classes)
            num_classes = None  # FasterRCNN takes the classes from the predictor
    model = FasterRCNN(backbone, num_classes=num_classes, **kwargs)
    if state is not None:
        load_strict(model, state)
    return model


# Anchor sizes of the low-resolution preset's three levels (strides 16, 32 and the pooled 64):
# two sizes x three ratios per level, covering 32-512 px like torchvision's 320 preset.
LOWRES_ANCHOR_SIZES = ((32, 64), (96, 192), (256, 512))


@register_model(
    "fasterrcnn_ghostnet_320_fpn",
    kind="detector",
    aliases=("fasterrcnn_320",),
    class_key=FASTERRCNN_CLASS_KEY,
    family="ghostnet",
)
def fasterrcnn_ghostnet_320_fpn(**kwargs: Any) -> FasterRCNN:
    """Low-resolution Faster R-CNN preset (like torchvision's ``*_320_fpn``), built for CPU speed.

    ``min_size=320``, ``max_size=640``, 150 RPN proposals per image at test time (pre and
    post NMS), ``box_score_thresh=0.05``, a light box head (128 sampled RoIs per image in
    training, ``box_batch_size_per_image=128``, and ``representation_size=256``: with
    torchvision's 512 and 1024 the box head's first layer and RoIAlign's backward were ~3/4 of a
    training step), and a light FPN: stage ends at strides 16 and 32
    (``returned_layers=[4, 5]``, plus the pooled stride-64 level) with 128 channels
    (``fpn_channels=128``), anchors of 32-512 px (:data:`LOWRES_ANCHOR_SIZES`). At 320 px a
    stride-8 level and 256 channels cost more than the whole trunk: the 3x3 FPN/RPN convs scale
    with channels squared and the box head's first layer with the channels. Pass
    ``returned_layers=[3, 4, 5], fpn_channels=256`` for the full pyramid. Every argument of
    :func:`fasterrcnn_ghostnet_fpn` is accepted and overrides these defaults.

    Args:
        **kwargs: as for :func:`fasterrcnn_ghostnet_fpn`.
    """
    defaults: dict[str, Any] = {
        "min_size": 320,
        "max_size": 640,
        "rpn_pre_nms_top_n_test": 150,
        "rpn_post_nms_top_n_test": 150,
        "rpn_score_thresh": 0.05,
        "box_score_thresh": 0.05,
        "fpn_channels": 128,
        "box_batch_size_per_image": 128,
        "representation_size": 256,
    }
    if "returned_layers" not in kwargs:
        defaults["returned_layers"] = [4, 5]
        if "rpn_anchor_generator" not in kwargs:
            defaults["rpn_anchor_generator"] = AnchorGenerator(
                LOWRES_ANCHOR_SIZES, ((0.5, 1.0, 2.0),) * len(LOWRES_ANCHOR_SIZES)
            )
    return fasterrcnn_ghostnet_fpn(**{**defaults, **kwargs})


@register_model(
    "retinanet_ghostnet_fpn",
    kind="detector",
    aliases=("retinanet",),
    class_key=RETINANET_CLASS_KEY,
    family="ghostnet",
)
@_checked_detector
def retinanet_ghostnet_fpn(
    *,
    weights: str | PathLike | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: str | PathLike | None = None,
    trainable_backbone_layers: int | None = None,
    width: float = 1.0,
    fpn_channels: int = 256,
    backbone: str = "ghostnet",
    **kwargs: Any,
) -> RetinaNet:
    """RetinaNet with a GhostNet-FPN backbone: P3-P5 (the trunk's last three stages), P6/P7 from P5.

    Anchors: sizes 32-512 (one per level) x 3 octave scales x 3 aspect ratios. The head is the
    paper's (four 3x3 convs per branch, shared by the levels) with torchvision's v2 changes:
    GroupNorm(32) after each conv and a GIoU box loss (``group_norm=None, box_loss="l1"`` gives
    the original head; checkpoints of it load as they are).

    Args:
        weights: a full detector checkpoint (local file or URL), loaded strictly.
        progress: show download progress bars.
        num_classes: number of classes (default 91; inferred from ``weights`` when given).
        weights_backbone: ImageNet weights for the GhostNet trunk.
        trainable_backbone_layers: trainable trunk stages counted from the top (0-5).
        width: GhostNet width multiplier.
        fpn_channels: channels of the FPN levels and thus of the shared RetinaNet head (256 as in
            the paper; 128 cuts the head, most of RetinaNet's compute at small inputs, by ~4x).
        backbone: backbone family of the trunk.
        **kwargs: the structure, the rest to :class:`torchvision.models.detection.RetinaNet`:
            ``returned_layers=(3, 4, 5)``; ``extra_levels``: ``"p6p7"``, ``"pool"`` (one
            max-pooled level) or ``"none"``; ``anchor_sizes`` per level, default
            ``anchor_scale=4`` times its stride; ``scales_per_octave=3``;
            ``aspect_ratios=(0.5, 1.0, 2.0)``; ``head_convs=4``; ``group_norm=32`` groups or
            ``None``; ``separable_head=False`` and ``separable_kernel=3`` (depthwise + 1x1 head
            convs, see :func:`~ghostdet.models.retinanet_head.retinanet_head`); ``box_loss``, one
            of :data:`ghostdet.models.retinanet_head.BOX_LOSSES`; ``cls_loss="focal"`` or
            ``"qfl"`` (:data:`~ghostdet.models.retinanet_head.CLS_LOSSES`); ``prior_probability=0.01``;
            ``matcher``, one of :data:`MATCHERS` (``"iou"``: torchvision's ``fg_iou_thresh`` /
            ``bg_iou_thresh``; ``"atss"``: :class:`~ghostdet.models.atss.ATSSRetinaNet`) and
            ``atss_topk=9``.
    """
    return _retinanet_ghostnet(
        weights=weights,
        progress=progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        width=width,
        fpn_channels=fpn_channels,
        family=backbone,
        **kwargs,
    )


#: extra pyramid levels after the trunk's taps, and how many each adds: ``p6p7`` two strided 3x3
#: convs on the top level (the paper's P6/P7), ``pool`` one max-pooled level, ``none`` nothing.
EXTRA_LEVELS = {"p6p7": 2, "pool": 1, "none": 0}

#: anchor assignment in training: ``iou`` torchvision's fixed IoU thresholds (``fg_iou_thresh``,
#: ``bg_iou_thresh``), ``atss`` adaptive training sample selection (:mod:`ghostdet.models.atss`).
MATCHERS = ("iou", "atss")


def _retinanet_ghostnet(
    *,
    weights: str | PathLike | None,
    progress: bool,
    num_classes: int | None,
    weights_backbone: str | PathLike | None,
    trainable_backbone_layers: int | None,
    width: float,
    family: str = "ghostnet",
    returned_layers: Sequence[int] = (3, 4, 5),
    extra_levels: str = "p6p7",
    fpn_channels: int = 256,
    anchor_sizes: Sequence[int] | None = None,
    anchor_scale: float = 4.0,
    scales_per_octave: int = 3,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    head_convs: int = 4,
    group_norm: int | None = 32,
    box_loss: str = "giou",
    cls_loss: str = "focal",
    prior_probability: float = 0.01,
    separable_head: bool = False,
    separable_kernel: int = 3,
    matcher: str = "iou",
    atss_topk: int = 9,
    **kwargs: Any,
) -> RetinaNet:
    """RetinaNet on GhostNet-FPN, every structural choice explicit (see :func:`retinanet_ghostnet_fpn`)."""
    if extra_levels not in EXTRA_LEVELS:
        raise ArgumentError(
            f"extra_levels must be one of {', '.join(EXTRA_LEVELS)}, got {extra_levels!r}",
            argument="extra_levels",
        )
    if matcher not in MATCHERS:
        raise ArgumentError(
            f"matcher must be one of {', '.join(MATCHERS)}, got {matcher!r}", argument="matcher"
        )
    anchor_gen: AnchorGenerator | None = kwargs.pop("anchor_generator", None)
    if anchor_gen is not None:
        per_anchor = anchor_gen.num_anchors_per_location()[0]
    else:
        per_anchor = scales_per_octave * len(aspect_ratios)
    state = None
    if weights is not None:
        state, num_classes = _load_detector_weights(
            weights, progress, num_classes, RETINANET_CLASS_KEY, per_anchor, RETINANET_BOX_KEY
        )
        norm_index = 2 if separable_head else 1  # where a GroupNorm sits in a head layer
        if head_convs and f"head.classification_head.conv.0.{norm_index}.weight" not in state:
            group_norm = None  # a checkpoint of the original head (no GroupNorm)
        weights_backbone = None
    if num_classes is None:
        num_classes = 91
    extra: ExtraFPNBlock = {
        "p6p7": lambda: LastLevelP6P7(fpn_channels, fpn_channels),
        "pool": LastLevelMaxPool,
        "none": NoExtraLevels,
    }[extra_levels]()
    backbone = ghostnet_fpn_backbone(
        width,
        weights_backbone,
        trainable_backbone_layers,
        returned_layers=returned_layers,
        extra_blocks=extra,
        progress=progress,
        out_channels=fpn_channels,
        family=family,
    )
    if anchor_gen is None:
        strides = backbone.body.strides
        strides = strides + [strides[-1] * 2**i for i in range(1, EXTRA_LEVELS[extra_levels] + 1)]
        if anchor_scale <= 0:
            raise ArgumentError(f"anchor_scale must be > 0, got {anchor_scale}", argument="anchor_scale")
        if anchor_sizes is None:
            anchor_sizes = [round(anchor_scale * s) for s in strides]  # 4: 32-512 for P3-P7, the paper
        if len(anchor_sizes) != len(strides):
            raise ArgumentError(
                f"{len(anchor_sizes)} anchor_sizes for the {len(strides)} levels (strides {strides})",
                argument="anchor_sizes",
            )
        anchor_gen = retinanet_anchors(anchor_sizes, scales_per_octave, aspect_ratios)
    if "head" not in kwargs:
        kwargs["head"] = retinanet_head(
            fpn_channels, per_anchor, num_classes, head_convs, group_norm, box_loss, prior_probability,
            separable_head, separable_kernel, cls_loss,
        )  # fmt: skip
    if matcher == "atss":
        model = ATSSRetinaNet(
            backbone, num_classes=num_classes, anchor_generator=anchor_gen, atss_topk=atss_topk, **kwargs
        )
    else:
        model = RetinaNet(backbone, num_classes=num_classes, anchor_generator=anchor_gen, **kwargs)
    if state is not None:
        load_strict(model, state)
    return model


#: What :func:`retinanet_ghostnet_320_fpn` changes in :func:`retinanet_ghostnet_fpn`.
RETINANET_320_DEFAULTS: dict[str, Any] = {
    "min_size": 320,
    "max_size": 640,
    "returned_layers": (3, 4, 5),
    "extra_levels": "pool",
    "fpn_channels": 128,
    "head_convs": 2,
    "separable_head": True,
    "group_norm": 32,
    "box_loss": "giou",
    "cls_loss": "qfl",
    "matcher": "atss",
    "anchor_scale": 8.0,
    "scales_per_octave": 1,
    "aspect_ratios": (1.0,),
    "fg_iou_thresh": 0.4,
    "bg_iou_thresh": 0.3,
}


@register_model(
    "retinanet_ghostnet_320_fpn",
    kind="detector",
    aliases=("retinanet_320",),
    class_key=RETINANET_CLASS_KEY,
    family="ghostnet",
)
def retinanet_ghostnet_320_fpn(**kwargs: Any) -> RetinaNet:
    """Low-resolution RetinaNet preset for CPUs (like :func:`fasterrcnn_ghostnet_320_fpn`).

    The paper's RetinaNet runs four 256-channel 3x3 convs per branch on five levels: at 128-320
    px inputs that shared head is ~85% of the compute, several times the GhostNet trunk. The
    preset keeps the stride-8 level (small objects need it) but runs a 128-channel pyramid of
    P3-P5 plus one max-pooled level (``extra_levels="pool"``), two depthwise-separable convs per
    branch (``separable_head=True``: a depthwise 3x3 and a 1x1 conv, ~1/8 of a 3x3 conv's
    multiply-adds) with GroupNorm(32), a GIoU box loss, ``min_size=320``, ``max_size=640``.
    Training assigns anchors by ATSS (``matcher="atss"``, :mod:`ghostdet.models.atss`) instead
    of fixed IoU thresholds, with one square anchor per location, 8x the stride (64-512 px), as
    in the ATSS paper; the classification prior is 0.01, and the classification loss is the
    quality focal loss (``cls_loss="qfl"``: the foreground class's target is the IoU of the
    predicted box, as in GFL; ``"focal"`` is the paper's). ``matcher="iou"`` falls back to IoU
    matching at foreground >= 0.4, background < 0.3 (the paper: 0.5 / 0.4), best with the
    paper's anchors (``anchor_scale=4, scales_per_octave=3, aspect_ratios=(0.5, 1.0, 2.0)``).
    What each choice did on a same-budget run is in the README (*RetinaNet on a CPU budget*).

    Args:
        **kwargs: as for :func:`retinanet_ghostnet_fpn`; they override
            :data:`RETINANET_320_DEFAULTS`.
    """
    return retinanet_ghostnet_fpn(**{**RETINANET_320_DEFAULTS, **kwargs})


# ----------------------------------------------------------------------------- GhostNetV2 trunks
@register_model(
    "fasterrcnn_ghostnetv2_fpn", kind="detector", class_key=FASTERRCNN_CLASS_KEY, family="ghostnetv2"
)
def fasterrcnn_ghostnetv2_fpn(**kwargs: Any) -> FasterRCNN:
    """Faster R-CNN on GhostNetV2-FPN: :func:`~ghostdet.models.fasterrcnn_ghostnet_fpn` with
    ``backbone="ghostnetv2"``; the same arguments (``weights``, ``progress``, ``num_classes``,
    ``weights_backbone``: ``"imagenet"`` or a GhostNetV2 classifier file, ``trainable_backbone_layers``,
    ``width``, ...)."""
    return fasterrcnn_ghostnet_fpn(**kwargs, backbone="ghostnetv2")


@register_model(
    "fasterrcnn_ghostnetv2_320_fpn", kind="detector", class_key=FASTERRCNN_CLASS_KEY, family="ghostnetv2"
)
def fasterrcnn_ghostnetv2_320_fpn(**kwargs: Any) -> FasterRCNN:
    """The low-resolution CPU preset (:func:`~ghostdet.models.fasterrcnn_ghostnet_320_fpn`) on
    GhostNetV2-FPN; the same arguments."""
    return fasterrcnn_ghostnet_320_fpn(**kwargs, backbone="ghostnetv2")


@register_model(
    "retinanet_ghostnetv2_fpn", kind="detector", class_key=RETINANET_CLASS_KEY, family="ghostnetv2"
)
def retinanet_ghostnetv2_fpn(**kwargs: Any) -> RetinaNet:
    """RetinaNet on GhostNetV2-FPN (P3-P7): :func:`~ghostdet.models.retinanet_ghostnet_fpn` with
    ``backbone="ghostnetv2"``; the same arguments."""
    return retinanet_ghostnet_fpn(**kwargs, backbone="ghostnetv2")


@register_model(
    "retinanet_ghostnetv2_320_fpn", kind="detector", class_key=RETINANET_CLASS_KEY, family="ghostnetv2"
)
def retinanet_ghostnetv2_320_fpn(**kwargs: Any) -> RetinaNet:
    """The low-resolution RetinaNet CPU preset (:func:`~ghostdet.models.retinanet_ghostnet_320_fpn`)
    on GhostNetV2-FPN; the same arguments."""
    return retinanet_ghostnet_320_fpn(**kwargs, backbone="ghostnetv2")


# ----------------------------------------------------------------------------- GhostNetV3 trunks
@register_model(
    "fasterrcnn_ghostnetv3_fpn", kind="detector", class_key=FASTERRCNN_CLASS_KEY, family="ghostnetv3"
)
def fasterrcnn_ghostnetv3_fpn(**kwargs: Any) -> FasterRCNN:
    """Faster R-CNN on GhostNetV3-FPN, trained in the multi-branch form (``deploy.fuse``
    re-parameterises it): :func:`~ghostdet.models.fasterrcnn_ghostnet_fpn` with
    ``backbone="ghostnetv3"``; the same arguments."""
    return fasterrcnn_ghostnet_fpn(**kwargs, backbone="ghostnetv3")


@register_model(
    "fasterrcnn_ghostnetv3_320_fpn", kind="detector", class_key=FASTERRCNN_CLASS_KEY, family="ghostnetv3"
)
def fasterrcnn_ghostnetv3_320_fpn(**kwargs: Any) -> FasterRCNN:
    """The low-resolution CPU preset (:func:`~ghostdet.models.fasterrcnn_ghostnet_320_fpn`) on
    GhostNetV3-FPN; the same arguments."""
    return fasterrcnn_ghostnet_320_fpn(**kwargs, backbone="ghostnetv3")


@register_model(
    "retinanet_ghostnetv3_fpn", kind="detector", class_key=RETINANET_CLASS_KEY, family="ghostnetv3"
)
def retinanet_ghostnetv3_fpn(**kwargs: Any) -> RetinaNet:
    """RetinaNet on GhostNetV3-FPN (P3-P7), trained in the multi-branch form:
    :func:`~ghostdet.models.retinanet_ghostnet_fpn` with ``backbone="ghostnetv3"``; the same arguments."""
    return retinanet_ghostnet_fpn(**kwargs, backbone="ghostnetv3")


@register_model(
    "retinanet_ghostnetv3_320_fpn", kind="detector", class_key=RETINANET_CLASS_KEY, family="ghostnetv3"
)
def retinanet_ghostnetv3_320_fpn(**kwargs: Any) -> RetinaNet:
    """The low-resolution RetinaNet CPU preset (:func:`~ghostdet.models.retinanet_ghostnet_320_fpn`)
    on GhostNetV3-FPN, trained in the multi-branch form; the same arguments."""
    return retinanet_ghostnet_320_fpn(**kwargs, backbone="ghostnetv3")
