"""Parameter, multiply-add (MAC) and CPU latency accounting for backbones.

Two MAC conventions are reported, because they disagree:

* **paper convention** (:func:`count_macs`): only the multiply-adds of convolutions and fully
  connected layers, the way the GhostNet paper, the MobileNet papers and torchvision's weight
  metadata count "FLOPs". ``Conv2d``: ``output elements * (in_channels / groups) * kh * kw``;
  ``Linear``: ``output elements * in_features``. Bias adds, BatchNorm, activations, pooling,
  SE gating products and residual additions are not counted.
* **thop** (:func:`thop_macs`): the ``thop`` package counts the same conv/linear MACs plus
  BatchNorm (2 ops per element), average pooling and a few others, so its number is higher.
  thop registers ``total_ops``/``total_params`` buffers on the modules it profiles and does not
  remove all of them; it is therefore always run on a deep copy, and the caller's model (and
  its ``state_dict``) is left untouched.

Counts are for one forward pass of an input of the given size (batch included; the default
batch is 1). Operations called through ``torch.nn.functional`` instead of a module are not seen
by the hooks and are not counted.

FLOPs are not latency: :func:`measure_latency` times models on the CPU, interleaving them so
that background load affects every model alike, and :func:`compare_backbones` puts both side by
side (see ``tools/compare_backbones.py``).
"""

from __future__ import annotations

import copy
import csv
import math
import statistics
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from os import PathLike
from typing import Any, Union

import torch
from torch import Tensor, nn

__all__ = [
    "BACKBONES",
    "DETECTION_BACKBONES",
    "BackboneSpec",
    "ComparisonRow",
    "PaperRow",
    "Profile",
    "compare_backbones",
    "count_macs",
    "count_params",
    "fc_as_conv",
    "format_markdown",
    "format_paper_tables",
    "input_shape",
    "layer_macs",
    "measure_latency",
    "paper_tables",
    "plot_macs_latency",
    "profile",
    "split_macs",
    "thop_macs",
    "write_csv",
]

InputSize = Union[int, Sequence[int]]


def input_shape(input_size: InputSize) -> tuple[int, int, int, int]:
    """Normalise an input size to ``(N, C, H, W)``.

    Args:
        input_size: ``S`` (a 1x3xSxS image), ``(H, W)`` (1x3xHxW), ``(C, H, W)`` or
            ``(N, C, H, W)``. All entries must be positive integers.
    """
    if isinstance(input_size, bool):
        raise ValueError(f"input_size must be an int or a sequence of ints, got {input_size!r}")
    if isinstance(input_size, int):
        dims: tuple[int, ...] = (1, 3, input_size, input_size)
    else:
        try:
            dims = tuple(input_size)
        except TypeError:
            raise ValueError(f"input_size must be an int or a sequence of ints, got {input_size!r}") from None
        if len(dims) == 2:
            dims = (1, 3, *dims)
        elif len(dims) == 3:
            dims = (1, *dims)
        elif len(dims) != 4:
            raise ValueError(f"input_size must have 1, 2, 3 or 4 entries, got {input_size!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ValueError(f"input_size entries must be positive integers, got {input_size!r}")
    return dims  # type: ignore[return-value]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once; buffers are not parameters).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _module_macs(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    """Paper-convention multiply-adds of one call of a conv/linear module."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Every input element is multiplied with (out_channels / groups) * prod(kernel) weights.
        return inp.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    raise TypeError(f"no MAC rule for {type(module).__name__}")


_COUNTED = (nn.modules.conv._ConvNd, nn.Linear)


def _make_input(model: nn.Module, input_size: InputSize) -> Tensor:
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    return torch.randn(input_shape(input_size), generator=gen).to(device=device, dtype=dtype)


def _run_eval(model: nn.Module, x: Tensor) -> Any:
    """Forward ``x`` in eval mode without gradients, restoring every module's training flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for m, training in flags:
            m.training = training


def layer_macs(model: nn.Module, input_size: InputSize = (1, 3, 224, 224)) -> OrderedDict[str, int]:
    """Paper-convention MACs of every conv/linear module, keyed by module name.

    The model is run once in eval mode under ``torch.no_grad()`` (BatchNorm statistics are not
    updated; each module's training flag is restored afterwards). Forward hooks are removed
    before returning, so the model is unchanged. A module called several times is summed;
    modules that are never called are absent.

    Args:
        model: the network; its forward must accept one ``(N, C, H, W)`` tensor.
        input_size: see :func:`input_shape`.
    """
    counts: OrderedDict[str, int] = OrderedDict()
    handles = []

    def hook(name: str, module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        counts[name] = counts.get(name, 0) + _module_macs(module, args[0], out)

    for name, module in model.named_modules():
        if isinstance(module, _COUNTED):
            handles.append(module.register_forward_hook(partial(hook, name)))
    try:
        _run_eval(model, _make_input(model, input_size))
    finally:
        for h in handles:
            h.remove()
    return counts


def count_macs(model: nn.Module, input_size: InputSize = (1, 3, 224, 224)) -> int:
    """Paper-convention multiply-adds (conv + linear only) of one forward pass.

    Args:
        model: the network; its forward must accept one ``(N, C, H, W)`` tensor.
        input_size: see :func:`input_shape`; default one 224x224 RGB image.
    """
    return sum(layer_macs(model, input_size).values())


def split_macs(
    model: nn.Module, input_size: InputSize, parts: Sequence[str] = ("body", "fpn")
) -> dict[str, int]:
    """Paper-convention MACs split by top-level submodule, e.g. a detection backbone's body/fpn.

    Works for :class:`ghostdet.models.GhostNetFPN` and torchvision's ``BackboneWithFPN`` (both
    have ``.body`` and ``.fpn``).

    Args:
        model: the network.
        input_size: see :func:`input_shape`.
        parts: submodule names; MACs of layers outside them go to ``"other"``.

    Returns:
        ``{part: macs, ..., "other": macs, "total": macs}``.
    """
    for part in parts:
        if not isinstance(getattr(model, part, None), nn.Module):
            raise ValueError(f"{type(model).__name__} has no submodule {part!r}")
    result = dict.fromkeys(parts, 0)
    result["other"] = 0
    for name, macs in layer_macs(model, input_size).items():
        top = name.split(".", 1)[0]
        result[top if top in parts else "other"] += macs
    result["total"] = sum(result.values())
    return result


def thop_macs(model: nn.Module, input_size: InputSize = (1, 3, 224, 224)) -> int:
    """MACs as counted by ``thop.profile`` (conv/linear plus BatchNorm, pooling and a few more).

    thop is run on a deep copy, so the ``total_ops``/``total_params`` buffers it registers never
    reach ``model`` (or a ``state_dict`` saved from it).

    Args:
        model: the network (not modified).
        input_size: see :func:`input_shape`.
    """
    shadow = copy.deepcopy(model)
    x = _make_input(shadow, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # thop's own distutils deprecation warnings
        try:
            import thop
        except ImportError as e:  # pragma: no cover - thop is a hard dependency
            raise ImportError("thop is required for thop_macs: pip install thop") from e
        macs, _ = thop.profile(shadow, inputs=(x,), verbose=False)
    return round(float(macs))


@dataclass(frozen=True)
class Profile:
    """Static cost of a model for one input size.

    Attributes:
        input_size: ``(N, C, H, W)`` that was profiled.
        params: number of parameters.
        macs: paper-convention multiply-adds (conv + linear).
        thop_macs: thop's count (also BN, pooling, ...), or ``None`` if not computed.
    """

    input_size: tuple[int, int, int, int]
    params: int
    macs: int
    thop_macs: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile(model: nn.Module, input_size: InputSize = (1, 3, 224, 224), with_thop: bool = True) -> Profile:
    """Parameters, paper-convention MACs and (optionally) thop MACs of ``model``.

    Args:
        model: the network (not modified).
        input_size: see :func:`input_shape`.
        with_thop: also run thop (on a copy).
    """
    shape = input_shape(input_size)
    return Profile(
        input_size=shape,
        params=count_params(model),
        macs=count_macs(model, shape),
        thop_macs=thop_macs(model, shape) if with_thop else None,
    )


# ----------------------------------------------------------------------------------------------
# Latency


def measure_latency(
    models: Mapping[str, Callable[[Tensor], Any]],
    inputs: Mapping[str, Tensor] | Tensor,
    runs: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, float]:
    """Median wall-clock latency (seconds) of each model, measured interleaved.

    Each repetition runs every model once, in an order rotated by one per repetition, so that
    load changes on a shared machine affect all models alike. Models run under
    ``torch.no_grad()``; ``nn.Module`` models are put in eval mode (and restored afterwards).

    Args:
        models: name -> model (or any callable taking one tensor).
        inputs: one tensor for all models, or name -> tensor.
        runs: timed repetitions per model (>= 1); the median is reported.
        warmup: untimed repetitions per model before timing.
        threads: ``torch.set_num_threads`` value during the measurement (restored afterwards);
            ``None`` keeps the current setting.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    names = list(models)
    if not names:
        return {}
    per_model = inputs if isinstance(inputs, Mapping) else dict.fromkeys(names, inputs)
    missing = [n for n in names if n not in per_model]
    if missing:
        raise ValueError(f"no input for models {missing}")
    old_threads = torch.get_num_threads()
    flags = [
        (m, m.training) for model in models.values() if isinstance(model, nn.Module) for m in model.modules()
    ]
    times: dict[str, list[float]] = {n: [] for n in names}
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for model in models.values():
            if isinstance(model, nn.Module):
                model.eval()
        with torch.no_grad():
            for rep in range(warmup + runs):
                shift = rep % len(names)
                for name in names[shift:] + names[:shift]:
                    start = time.perf_counter()
                    models[name](per_model[name])
                    elapsed = time.perf_counter() - start
                    if rep >= warmup:
                        times[name].append(elapsed)
    finally:
        torch.set_num_threads(old_threads)
        for m, training in flags:
            m.training = training
    return {n: statistics.median(t) for n, t in times.items()}


# ----------------------------------------------------------------------------------------------
# Backbone registry and comparison table


class _Trunk(nn.Module):
    """Everything of a classifier before global pooling (``forward_features`` or ``features``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self.net, "forward_features"):
            return self.net.forward_features(x)
        return self.net.features(x)


@dataclass(frozen=True)
class BackboneSpec:
    """A row of the comparison table.

    Attributes:
        label: display name.
        build: builds the full model (random init, no downloads).
        detection: ``True`` for a detection backbone (body + FPN) that is its own trunk.
        paper_params_m: the paper's parameter count in millions (``None`` if none).
        paper_macs_m: the paper's MACs at 224x224 in millions (``None`` if none).
    """

    label: str
    build: Callable[[], nn.Module]
    detection: bool = False
    paper_params_m: float | None = None
    paper_macs_m: float | None = None

    def trunk(self, model: nn.Module) -> nn.Module:
        """The part run on detection-sized inputs: the model itself for detection backbones,
        otherwise everything before global pooling."""
        return model if self.detection else _Trunk(model)


def _ghostnet(width: float) -> nn.Module:
    from ghostdet.models.ghostnet import ghostnet

    return ghostnet(width=width)


def _torchvision(name: str) -> nn.Module:
    import torchvision

    return getattr(torchvision.models, name)(weights=None)


def _ghostnet_fpn(width: float) -> nn.Module:
    from ghostdet.models.detection import ghostnet_fpn_backbone

    return ghostnet_fpn_backbone(width=width, weights=None)


def _mobilenet_fpn(name: str) -> nn.Module:
    from torchvision.models.detection.backbone_utils import mobilenet_backbone

    # torchvision's fasterrcnn_mobilenet_v3_large_fpn backbone (FrozenBatchNorm2d by default).
    return mobilenet_backbone(backbone_name=name, weights=None, fpn=True, trainable_layers=6)


# Figures of the GhostNet paper (arXiv:1911.11907; ImageNet and COCO tables) at 224x224. The
# paper lists MobileNetV2 with 3.4M params; torchvision's model has 3.50M. MobileNetV3-Small's
# 2.5M/56M is from the MobileNetV3 paper.
BACKBONES: dict[str, BackboneSpec] = {
    "ghostnet_050": BackboneSpec("GhostNet 0.5x", partial(_ghostnet, 0.5), False, 2.6, 42),
    "ghostnet_100": BackboneSpec("GhostNet 1.0x", partial(_ghostnet, 1.0), False, 5.2, 141),
    "ghostnet_110": BackboneSpec("GhostNet 1.1x", partial(_ghostnet, 1.1), False, None, 164),
    "ghostnet_130": BackboneSpec("GhostNet 1.3x", partial(_ghostnet, 1.3), False, 7.3, 226),
    "mobilenet_v2": BackboneSpec("MobileNetV2 1.0x", partial(_torchvision, "mobilenet_v2"), False, 3.4, 300),
    "mobilenet_v3_large": BackboneSpec(
        "MobileNetV3-Large 1.0x", partial(_torchvision, "mobilenet_v3_large"), False, 5.4, 219
    ),
    "mobilenet_v3_small": BackboneSpec(
        "MobileNetV3-Small 1.0x", partial(_torchvision, "mobilenet_v3_small"), False, 2.5, 56
    ),
}

DETECTION_BACKBONES: dict[str, BackboneSpec] = {
    "ghostnet_100_fpn": BackboneSpec("GhostNet 1.0x FPN", partial(_ghostnet_fpn, 1.0), True),
    "ghostnet_110_fpn": BackboneSpec("GhostNet 1.1x FPN", partial(_ghostnet_fpn, 1.1), True),
    "mobilenet_v3_large_fpn": BackboneSpec(
        "MobileNetV3-Large FPN (torchvision)", partial(_mobilenet_fpn, "mobilenet_v3_large"), True
    ),
}


@dataclass
class ComparisonRow:
    """One row of :func:`compare_backbones`.

    ``macs_224``/``thop_macs_224`` are for the full model at ``cls_size``; ``det_macs`` and
    ``det_latency_ms`` are keyed by ``"HxW"`` and measure the trunk (see
    :meth:`BackboneSpec.trunk`); for detection backbones ``det_body_macs`` holds the part of
    ``det_macs`` spent in the body (the rest is the FPN). Latencies are medians in
    milliseconds (``None`` if skipped).
    """

    name: str
    label: str
    detection: bool
    params: int
    macs_224: int
    thop_macs_224: int
    det_macs: dict[str, int] = field(default_factory=dict)
    det_body_macs: dict[str, int] = field(default_factory=dict)
    latency_224_ms: float | None = None
    det_latency_ms: dict[str, float] = field(default_factory=dict)
    paper_params_m: float | None = None
    paper_macs_m: float | None = None


def _size_key(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def compare_backbones(
    names: Sequence[str] | None = None,
    det_sizes: Sequence[tuple[int, int]] = ((800, 1333), (320, 320)),
    cls_size: int = 224,
    latency: bool = True,
    runs: int = 20,
    warmup: int = 3,
    threads: int | None = 1,
    progress: Callable[[str], None] | None = None,
) -> list[ComparisonRow]:
    """Params, MACs (both conventions) and CPU latency of backbones, one row per name.

    Args:
        names: keys of :data:`BACKBONES` and/or :data:`DETECTION_BACKBONES`; default all of
            :data:`BACKBONES`.
        det_sizes: ``(H, W)`` detection input sizes at which the trunk is counted/timed.
        cls_size: square classification input size.
        latency: measure latency (otherwise only static counts).
        runs: timed repetitions per model and input size (median reported).
        warmup: untimed repetitions before timing.
        threads: ``torch.set_num_threads`` during timing (``None`` keeps the current value).
        progress: called with a short message before each step (e.g. ``print``).
    """
    specs = {**BACKBONES, **DETECTION_BACKBONES}
    names = list(BACKBONES) if names is None else list(names)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown backbone(s) {unknown}; available: {', '.join(specs)}")
    if not names:
        raise ValueError("no backbones selected")
    det_sizes = [tuple(int(v) for v in hw) for hw in det_sizes]
    for hw in det_sizes:
        input_shape(hw)  # validates
    say = progress or (lambda msg: None)
    rows: list[ComparisonRow] = []
    models: dict[str, nn.Module] = {}
    for name in names:
        spec = specs[name]
        say(f"counting {spec.label}")
        model = spec.build().eval()
        models[name] = model
        trunk = spec.trunk(model)
        prof = profile(model, cls_size)
        det_macs, body_macs = {}, {}
        for hw in det_sizes:
            if spec.detection:
                split = split_macs(trunk, hw)
                det_macs[_size_key(hw)], body_macs[_size_key(hw)] = split["total"], split["body"]
            else:
                det_macs[_size_key(hw)] = count_macs(trunk, hw)
        rows.append(
            ComparisonRow(
                name=name,
                label=spec.label,
                detection=spec.detection,
                params=prof.params,
                macs_224=prof.macs,
                thop_macs_224=prof.thop_macs or 0,
                det_macs=det_macs,
                det_body_macs=body_macs,
                paper_params_m=spec.paper_params_m,
                paper_macs_m=spec.paper_macs_m,
            )
        )
    if latency:
        say(f"timing at {cls_size}x{cls_size}")
        x = torch.randn(input_shape(cls_size))
        lat = measure_latency(models, x, runs=runs, warmup=warmup, threads=threads)
        for row in rows:
            row.latency_224_ms = lat[row.name] * 1e3
        trunks = {n: specs[n].trunk(m) for n, m in models.items()}
        for hw in det_sizes:
            say(f"timing trunks at {_size_key(hw)}")
            lat = measure_latency(
                trunks, torch.randn(input_shape(hw)), runs=runs, warmup=warmup, threads=threads
            )
            for row in rows:
                row.det_latency_ms[_size_key(hw)] = lat[row.name] * 1e3
    return rows


def _m(v: float | None, scale: float = 1e6, digits: int = 1) -> str:
    return "-" if v is None else f"{v / scale:.{digits}f}"


def _columns(
    rows: Sequence[ComparisonRow], cls_size: int = 224
) -> list[tuple[str, Callable[[ComparisonRow], str]]]:
    det_keys = list(rows[0].det_macs) if rows else []
    cols: list[tuple[str, Callable[[ComparisonRow], str]]] = [
        ("backbone", lambda r: r.label),
        ("params (M)", lambda r: _m(r.params, digits=2)),
        ("paper params (M)", lambda r: "-" if r.paper_params_m is None else f"{r.paper_params_m:g}"),
        (f"MACs@{cls_size} (M)", lambda r: _m(r.macs_224)),
        ("paper MACs (M)", lambda r: "-" if r.paper_macs_m is None else f"{r.paper_macs_m:g}"),
        (f"thop MACs@{cls_size} (M)", lambda r: _m(r.thop_macs_224)),
    ]
    for key in det_keys:
        cols.append((f"trunk MACs@{key} (G)", lambda r, k=key: _m(r.det_macs.get(k), 1e9, 2)))
    if det_keys and any(r.det_body_macs for r in rows):
        key = det_keys[0]
        cols.append((f"of which FPN@{key} (G)", lambda r, k=key: _fpn_part(r, k)))
    if any(r.latency_224_ms is not None for r in rows):
        cols.append((f"latency@{cls_size} (ms)", lambda r: _m(r.latency_224_ms, 1, 1)))
        for key in det_keys:
            cols.append((f"trunk latency@{key} (ms)", lambda r, k=key: _m(r.det_latency_ms.get(k), 1, 1)))
    return cols


def _fpn_part(row: ComparisonRow, key: str) -> str:
    if key not in row.det_body_macs:
        return "-"
    return _m(row.det_macs[key] - row.det_body_macs[key], 1e9, 2)


def format_markdown(rows: Sequence[ComparisonRow], cls_size: int = 224) -> str:
    """Render rows as a GitHub markdown table."""
    cols = _columns(rows, cls_size)
    lines = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r) for _, fmt in cols) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[ComparisonRow], path: str | PathLike) -> None:
    """Write rows as CSV with raw integers (params, MACs) and milliseconds."""
    det_keys = list(rows[0].det_macs) if rows else []
    header = ["name", "label", "detection", "params", "macs_224", "thop_macs_224"]
    header += [f"trunk_macs_{k}" for k in det_keys] + [f"body_macs_{k}" for k in det_keys]
    header += ["latency_224_ms"]
    header += [f"trunk_latency_{k}_ms" for k in det_keys] + ["paper_params_m", "paper_macs_m"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(
                [r.name, r.label, int(r.detection), r.params, r.macs_224, r.thop_macs_224]
                + [r.det_macs[k] for k in det_keys]
                + [r.det_body_macs.get(k, "") for k in det_keys]
                + [_blank(r.latency_224_ms)]
                + [_blank(r.det_latency_ms.get(k)) for k in det_keys]
                + [_blank(r.paper_params_m), _blank(r.paper_macs_m)]
            )


def _blank(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


def plot_macs_latency(
    rows: Sequence[ComparisonRow], path: str | PathLike, size_key: str | None = None
) -> None:
    """Scatter of MACs vs median CPU latency, one labelled point per row.

    Args:
        rows: rows with latency measured.
        path: output image (e.g. ``.png``).
        size_key: ``"HxW"`` of a detection size to plot the trunk numbers at; default the
            classification size (full models).

    Raises:
        ImportError: matplotlib is not installed (``pip install ghostdet[plot]``).
        ValueError: the rows have no latency for the requested size.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: pip install 'ghostdet[plot]' (or pip install matplotlib)"
        ) from None
    pts: list[tuple[str, float, float]] = []
    for r in rows:
        if size_key is None:
            macs, lat = r.macs_224, r.latency_224_ms
        else:
            macs, lat = r.det_macs.get(size_key), r.det_latency_ms.get(size_key)
        if macs is None or lat is None:
            raise ValueError(f"no latency measured for {r.label} at {size_key or 'the classification size'}")
        pts.append((r.label, macs / 1e6, lat))
    fig, ax = plt.subplots(figsize=(7, 5))
    for label, macs, lat in pts:
        ax.scatter(macs, lat, color="tab:green" if label.startswith("GhostNet") else "tab:blue")
        ax.annotate(label, (macs, lat), textcoords="offset points", xytext=(4, 4), fontsize=8)
    where = "224x224 classifier" if size_key is None else f"trunk at {size_key}"
    ax.set_xlabel(f"MACs (millions, conv+linear), {where}")
    ax.set_ylabel("median CPU latency (ms), batch 1")
    ax.set_title("MACs vs CPU latency")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# The paper's tables


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
    from ghostdet.ghostify import ghostify
    from ghostdet.models.cifar import resnet56_cifar, vgg16_cifar

    rows: list[PaperRow] = []

    def add(
        table: str,
        name: str,
        model: nn.Module,
        size: InputSize,
        paper: tuple[float | None, float | None],
        note: str = "",
    ) -> None:
        shape = input_shape(size)
        macs = count_macs(model, shape)
        rows.append(PaperRow(table, name, count_params(model), macs, shape, paper[0], paper[1], note))

    def ghost(model: nn.Module, **kw: Any) -> tuple[nn.Module, str]:
        converted, summary = ghostify(model, **kw)
        kept = f", {len(summary.skipped)} kept dense" if summary.skipped else ""
        return converted, f"{summary.num_replaced} convs replaced{kept}"

    t = "CIFAR-10 VGG-16 (32x32)"
    vgg = vgg16_cifar()
    add(t, "VGG-16", vgg, 32, (15, 313), "13 convs + Linear-BN-ReLU-Linear")
    m, note = ghost(vgg)
    add(t, "Ghost-VGG-16 (s=2, d=3)", m, 32, (7.7, 158), note)
    t = "Ghost-VGG-16, ratio s (d=3)"
    for s, pp, pm in ((2, 7.7, 158), (3, 5.2, 107), (4, 4.0, 80), (5, 3.3, 65)):
        add(t, f"Ghost-VGG-16 s={s}", ghost(vgg, ratio=s)[0], 32, (pp, pm))
    t = "Ghost-VGG-16, kernel d (s=2)"
    for d, pm in ((1, 157), (3, 158), (5, 160), (7, 163)):
        add(t, f"Ghost-VGG-16 d={d}", ghost(vgg, dw_size=d)[0], 32, (None, pm))

    t = "CIFAR-10 ResNet-56 (32x32)"
    r56 = resnet56_cifar()
    add(t, "ResNet-56", r56, 32, (0.85, 125), "option A (parameter-free) shortcuts")
    m, note = ghost(r56)
    add(t, "Ghost-ResNet-56 (s=2, d=3)", m, 32, (0.43, 63), note)
    if what_if:
        m, note = ghost(r56, dw_size=1)
        add(t, "what-if: Ghost-ResNet-56 d=1", m, 32, (0.43, 63), note + "; 1x1 cheap ops")

    if resnet50:
        import torchvision

        t = "ImageNet ResNet-50 (224x224)"
        r50 = torchvision.models.resnet50(weights=None)
        add(t, "ResNet-50", r50, 224, (25.6, 4100), "torchvision model")
        for s, pp, pm in ((2, 13.0, 2200), (4, 6.5, 1200)):
            m, note = ghost(r50, ratio=s)
            add(t, f"Ghost-ResNet-50 (s={s})", m, 224, (pp, pm), note + ", fc dense")
        if what_if:
            r50_fc = copy.deepcopy(r50)
            r50_fc.fc = fc_as_conv(r50.fc)
            for s, pp, pm in ((2, 13.0, 2200), (4, 6.5, 1200)):
                m, note = ghost(r50_fc, ratio=s, skip="conv1")
                name = f"what-if: Ghost-ResNet-50 (s={s}), stem dense, fc ghosted"
                add(t, name, m, 224, (pp, pm), note + "; 7x7 stem dense, fc as a Ghost 1x1 conv")

    if mobilenets:
        t = "ImageNet GhostNet vs MobileNets (224x224)"
        notes = {
            "ghostnet_110": "full classifier; the paper's 164M is from its COCO table",
            "mobilenet_v2": "torchvision model",
            "mobilenet_v3_large": "torchvision model",
            "mobilenet_v3_small": "torchvision model; paper figures from the MobileNetV3 paper",
        }
        for name, spec in BACKBONES.items():
            model = spec.build()
            paper = (spec.paper_params_m, spec.paper_macs_m)
            add(t, spec.label, model, 224, paper, notes.get(name, ""))
            if what_if and name == "ghostnet_110":
                from ghostdet.models.detection import ghostnet_fpn_backbone

                headless = copy.deepcopy(model)
                del headless.conv_head, headless.classifier
                add(
                    t,
                    "what-if: GhostNet 1.1x without conv_head/classifier",
                    spec.trunk(headless),
                    224,
                    (None, spec.paper_macs_m),
                    "stem + blocks 0-9 (up to the 1x1 conv to 1056 channels)",
                )
                add(
                    t,
                    "what-if: GhostNet 1.1x detector body (no FPN)",
                    ghostnet_fpn_backbone(width=1.1).body,
                    224,
                    (None, spec.paper_macs_m),
                    "stem + blocks 0-8, what ghostdet's detectors run",
                )
    return rows


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
