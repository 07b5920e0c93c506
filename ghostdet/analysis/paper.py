"""The GhostNet paper's tables: our params/MACs counts next to the published figures.

The figures are data in :mod:`ghostdet.analysis.paper_figures`; this module builds the models,
counts them (:mod:`ghostdet.utils.counting`) and renders the comparison. Ghost models are
built with :func:`ghostdet.ghostify`, which itself counts with :mod:`ghostdet.analysis`, so
this module sits above both and is not re-exported by ``ghostdet.analysis``: import it as
``ghostdet.analysis.paper``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn

from ghostdet.analysis import paper_figures as paper
from ghostdet.analysis.backbones import BACKBONES, BackboneSpec
from ghostdet.models.cifar import resnet56_cifar, vgg16_cifar
from ghostdet.models.fpn import ghostnet_fpn_backbone
from ghostdet.models.ghostify import ghostify
from ghostdet.utils.counting import InputSize, count_macs, count_params, input_shape

__all__ = ["PaperRow", "fc_as_conv", "format_paper_tables", "paper_tables"]


@dataclass(frozen=True)
class PaperRow:
    """One measured model next to the paper's figures.

    Attributes:
        table: which table/ablation the row belongs to.
        model: display name.
        params: measured parameters.
        macs: measured paper-convention MACs.
        input_size: ``(N, C, H, W)`` the MACs are for.
        paper_params_m: the paper's params in millions (``None``: not given).
        paper_macs_m: the paper's MACs in millions (``None``: not given).
        note: how the model was built / why it is listed (what-if rows explain deviations).
    """

    table: str
    model: str
    params: int
    macs: int
    input_size: tuple[int, int, int, int]
    paper_params_m: float | None = None
    paper_macs_m: float | None = None
    note: str = ""

    @property
    def params_dev(self) -> float | None:
        """Relative deviation of the measured params from the paper (0.013 = +1.3%)."""
        return None if self.paper_params_m is None else self.params / (self.paper_params_m * 1e6) - 1

    @property
    def macs_dev(self) -> float | None:
        """Relative deviation of the measured MACs from the paper."""
        return None if self.paper_macs_m is None else self.macs / (self.paper_macs_m * 1e6) - 1


def fc_as_conv(linear: nn.Linear) -> nn.Sequential:
    """A ``Linear`` rewritten as an equivalent 1x1 conv on a 1x1 map (same weights/bias).

    Used by the "what-if" rows of :func:`paper_tables` to let :func:`ghostdet.ghostify` convert a
    classifier too.
    """
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(linear.weight[:, :, None, None])
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return nn.Sequential(nn.Unflatten(1, (linear.in_features, 1, 1)), conv, nn.Flatten(1))


def paper_tables(resnet50: bool = True, mobilenets: bool = True, what_if: bool = True) -> list[PaperRow]:
    """Count params/MACs of the models in the GhostNet paper's tables, next to its figures.

    Ghost models are built with :func:`ghostdet.ghostify` with everything replaced (the paper
    says it replaces all convolutional layers) and the paper's defaults ``s=2, d=3`` unless the
    row says otherwise. ``what_if`` rows are not the paper's models: they show which build
    choice would reproduce a figure that the faithful conversion does not.

    Args:
        resnet50: include ImageNet ResNet-50 and Ghost-ResNet-50 (a few seconds of CPU).
        mobilenets: include GhostNet 0.5/1.0/1.1/1.3 vs MobileNetV2/V3 at 224x224.
        what_if: include the explanatory variants.
    """
    rows = _vgg16_rows() + _resnet56_rows(what_if)
    if resnet50:
        rows += _resnet50_rows(what_if)
    if mobilenets:
        rows += _imagenet_backbone_rows(what_if)
    return rows


def _row(
    table: str, name: str, model: nn.Module, size: InputSize, figures: paper.Figures, note: str = ""
) -> PaperRow:
    """Count ``model`` at ``size`` into a row beside the paper's ``(params_m, macs_m)``."""
    shape = input_shape(size)
    macs = count_macs(model, shape)
    return PaperRow(table, name, count_params(model), macs, shape, figures[0], figures[1], note)


def _ghost(model: nn.Module, **kw: Any) -> tuple[nn.Module, str]:
    """``ghostify(model, **kw)`` and a note saying what it replaced."""
    converted, summary = ghostify(model, **kw)
    kept = f", {len(summary.skipped)} kept dense" if summary.skipped else ""
    return converted, f"{summary.num_replaced} convs replaced{kept}"


def _vgg16_rows() -> list[PaperRow]:
    """CIFAR-10 VGG-16 vs Ghost-VGG-16, and the ratio (s) and kernel (d) ablations."""
    t = "CIFAR-10 VGG-16 (32x32)"
    vgg = vgg16_cifar()
    ghost_vgg, note = _ghost(vgg)
    rows = [
        _row(t, "VGG-16", vgg, 32, paper.VGG16_CIFAR, "13 convs + Linear-BN-ReLU-Linear"),
        _row(t, "Ghost-VGG-16 (s=2, d=3)", ghost_vgg, 32, paper.GHOST_VGG16_BY_RATIO[2], note),
    ]
    t = "Ghost-VGG-16, ratio s (d=3)"
    for s, figures in paper.GHOST_VGG16_BY_RATIO.items():
        rows.append(_row(t, f"Ghost-VGG-16 s={s}", _ghost(vgg, ratio=s)[0], 32, figures))
    t = "Ghost-VGG-16, kernel d (s=2)"
    for d, figures in paper.GHOST_VGG16_BY_KERNEL.items():
        rows.append(_row(t, f"Ghost-VGG-16 d={d}", _ghost(vgg, dw_size=d)[0], 32, figures))
    return rows


def _resnet56_rows(what_if: bool) -> list[PaperRow]:
    """CIFAR-10 ResNet-56 vs Ghost-ResNet-56 (and, as a what-if, 1x1 cheap ops)."""
    t = "CIFAR-10 ResNet-56 (32x32)"
    r56 = resnet56_cifar()
    ghost_r56, note = _ghost(r56)
    rows = [
        _row(t, "ResNet-56", r56, 32, paper.RESNET56_CIFAR, "option A (parameter-free) shortcuts"),
        _row(t, "Ghost-ResNet-56 (s=2, d=3)", ghost_r56, 32, paper.GHOST_RESNET56_CIFAR, note),
    ]
    if what_if:
        m, note = _ghost(r56, dw_size=1)
        name = "what-if: Ghost-ResNet-56 d=1"
        rows.append(_row(t, name, m, 32, paper.GHOST_RESNET56_CIFAR, note + "; 1x1 cheap ops"))
    return rows


_RESNET50_TABLE = "ImageNet ResNet-50 (224x224)"


def _resnet50_rows(what_if: bool) -> list[PaperRow]:
    """ImageNet ResNet-50 vs Ghost-ResNet-50 at s=2 and s=4, every conv replaced, fc dense."""
    t = _RESNET50_TABLE
    r50 = torchvision.models.resnet50(weights=None)
    rows = [_row(t, "ResNet-50", r50, 224, paper.RESNET50, "torchvision model")]
    for s, figures in paper.GHOST_RESNET50_BY_RATIO.items():
        m, note = _ghost(r50, ratio=s)
        rows.append(_row(t, f"Ghost-ResNet-50 (s={s})", m, 224, figures, note + ", fc dense"))
    if what_if:
        rows += _resnet50_what_if_rows(r50)
    return rows


def _resnet50_what_if_rows(r50: nn.Module) -> list[PaperRow]:
    """Ghost-ResNet-50 with the 7x7 stem dense and the fc ghosted (as a 1x1 conv)."""
    r50_fc = copy.deepcopy(r50)
    r50_fc.fc = fc_as_conv(r50.fc)
    rows = []
    for s, figures in paper.GHOST_RESNET50_BY_RATIO.items():
        m, note = _ghost(r50_fc, ratio=s, skip="conv1")
        name = f"what-if: Ghost-ResNet-50 (s={s}), stem dense, fc ghosted"
        note += "; 7x7 stem dense, fc as a Ghost 1x1 conv"
        rows.append(_row(_RESNET50_TABLE, name, m, 224, figures, note))
    return rows


_IMAGENET_TABLE = "ImageNet GhostNet vs MobileNets (224x224)"
# GhostNet 1.1x: the paper's only figure for it is in its COCO table (the MACs of the trunk).
_GHOSTNET_110 = ("ghostnet", 1.1)
_IMAGENET_NOTES = {
    _GHOSTNET_110: "full classifier; the paper's 164M is from its COCO table",
    "mobilenet_v2": "torchvision model",
    "mobilenet_v3_large": "torchvision model",
    "mobilenet_v3_small": "torchvision model; paper figures from the MobileNetV3 paper",
}


def _imagenet_backbone_rows(what_if: bool) -> list[PaperRow]:
    """GhostNet widths vs MobileNetV2/V3, the classifiers of :data:`BACKBONES`, at 224x224."""
    rows = []
    for name, spec in BACKBONES.items():
        model = spec.build()
        figures = (spec.paper_params_m, spec.paper_macs_m)
        key = (spec.family, spec.width) if spec.family is not None else name
        rows.append(_row(_IMAGENET_TABLE, spec.label, model, 224, figures, _IMAGENET_NOTES.get(key, "")))
        if what_if and key == _GHOSTNET_110:
            rows += _ghostnet_110_what_if_rows(spec, model)
    return rows


def _ghostnet_110_what_if_rows(spec: BackboneSpec, model: nn.Module) -> list[PaperRow]:
    """Which part of GhostNet 1.1x (``model``, built by ``spec``) the paper's MACs figure counts:
    the trunk without the head, and the body that ghostdet's detectors run."""
    headless = copy.deepcopy(model)
    del headless.conv_head, headless.classifier
    macs_only = (None, spec.paper_macs_m)
    return [
        _row(
            _IMAGENET_TABLE,
            "what-if: GhostNet 1.1x without conv_head/classifier",
            spec.trunk(headless),
            224,
            macs_only,
            "stem + blocks 0-9 (up to the 1x1 conv to 1056 channels)",
        ),
        _row(
            _IMAGENET_TABLE,
            "what-if: GhostNet 1.1x detector body (no FPN)",
            ghostnet_fpn_backbone(width=1.1).body,
            224,
            macs_only,
            "stem + blocks 0-8, what ghostdet's detectors run",
        ),
    ]


def _dev(v: float | None) -> str:
    return "" if v is None else f" ({v * 100:+.1f}%)"


def _paper_cells(r: PaperRow) -> tuple[str, str, str, str]:
    big = r.macs >= 1e9
    macs = f"{r.macs / 1e9:.2f}G" if big else f"{r.macs / 1e6:.1f}M"
    if r.paper_macs_m is None:
        paper_macs = "-"
    else:
        paper_macs = f"{r.paper_macs_m / 1e3:g}G" if big else f"{r.paper_macs_m:g}M"
    paper_params = "-" if r.paper_params_m is None else f"{r.paper_params_m:g}M"
    return (
        f"{r.params / 1e6:.3f}M{_dev(r.params_dev)}",
        paper_params,
        f"{macs}{_dev(r.macs_dev)}",
        paper_macs,
    )


def format_paper_tables(rows: Sequence[PaperRow], markdown: bool = True) -> str:
    """Render :func:`paper_tables` rows grouped by table, with each cell's deviation from the paper.

    Args:
        rows: the rows.
        markdown: GitHub markdown tables (otherwise aligned plain text).
    """
    header = ("model", "params", "paper params", "MACs", "paper MACs", "note")
    out: list[str] = []
    tables: dict[str, list[PaperRow]] = {}
    for r in rows:
        tables.setdefault(r.table, []).append(r)
    for title, group in tables.items():
        body = [(r.model, *_paper_cells(r), r.note) for r in group]
        if markdown:
            out.append(f"### {title}\n")
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join(["---"] + ["---:"] * 4 + ["---"]) + "|")
            out += ["| " + " | ".join(cells) + " |" for cells in body]
        else:
            widths = [max(len(str(c[i])) for c in [header, *body]) for i in range(len(header))]
            out.append(title)
            out += [
                "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
                for cells in [header, *body]
            ]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
