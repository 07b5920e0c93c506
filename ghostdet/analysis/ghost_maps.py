"""Intrinsic vs ghost feature maps of GhostModules (the paper's Figure 1 argument, measured).

A :class:`~ghostdet.models.ghostnet.GhostModule` makes ``m`` intrinsic maps with an ordinary
convolution (``primary_conv``) and ``m * (s - 1)`` ghost maps with a depthwise convolution
(``cheap_operation``, ``groups = m``), so ghost map ``c`` is a cheap transform of intrinsic map
``c // (s - 1)``. Forward hooks capture both outputs; :func:`ghost_cosine` measures how similar
each ghost map is to its source and :func:`save_ghost_grid` draws them side by side.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor, nn

from ghostdet.data.classification import IMAGENET_MEAN, IMAGENET_STD
from ghostdet.data.images import ImageReadError, read_rgb_tensor
from ghostdet.errors import ArgumentError, GhostdetError, InputError
from ghostdet.models import GhostModule, get_model, list_models, model_entry
from ghostdet.models.ghostnetv3 import GhostModuleV3, reparameterize
from ghostdet.models.loading import load_detector
from ghostdet.utils.devices import resolve_device
from ghostdet.utils.files import ProtectedFiles, atomic_write_bytes

# The Ghost modules drawn: V1's (and V2's, a subclass) and V3's in their re-parameterised form.
GHOST_MODULES = (GhostModule, GhostModuleV3)

__all__ = [
    "GhostMaps",
    "capture_ghost_maps",
    "ghost_cosine",
    "ghost_source_index",
    "list_ghost_modules",
    "nanmean",
    "resolve_module_name",
    "run_visualize",
    "save_ghost_grid",
]


def list_ghost_modules(model: nn.Module) -> list[str]:
    """Names of every GhostModule in ``model``, in forward (registration) order."""
    return [name for name, m in model.named_modules() if isinstance(m, GHOST_MODULES)]


def resolve_module_name(model: nn.Module, name: str) -> str:
    """An exact GhostModule name, or the unique one ending in ``"." + name`` (so ``blocks.6.0.ghost1``
    also finds ``backbone.body.blocks.6.0.ghost1`` in a detector).

    Raises:
        InputError: no (or more than one) GhostModule matches.
    """
    names = list_ghost_modules(model)
    if name in names:
        return name
    hits = [n for n in names if n.endswith("." + name)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise InputError(f"module name {name!r} is ambiguous: {', '.join(hits)}")
    raise InputError(
        f"no GhostModule named {name!r}; use --list to see the {len(names)} names (e.g. {names[0]})"
    )


def ghost_source_index(num_ghost: int, ratio: int) -> Tensor:
    """Intrinsic channel feeding each ghost channel: ``c // (ratio - 1)`` (depthwise, groups=m)."""
    return torch.arange(num_ghost) // (ratio - 1)


def ghost_cosine(intrinsic: Tensor, ghost: Tensor, ratio: int) -> Tensor:
    """Cosine similarity of every ghost map with its intrinsic source map.

    Args:
        intrinsic: primary conv output (N, m, H, W).
        ghost: cheap operation output (N, g, H, W), ``g <= m * (ratio - 1)``.
        ratio: the module's ``s``.

    Returns:
        (g,) float64 similarities, each averaged over the batch (a map is flattened over H x W).
        A pair where either map is all zero (e.g. dead after ReLU) has no direction: it is left
        out of the batch mean, and the result is ``nan`` if that happens for every image.
    """
    if intrinsic.shape[-2:] != ghost.shape[-2:]:
        raise ValueError(f"spatial sizes differ: {tuple(intrinsic.shape)} vs {tuple(ghost.shape)}")
    src = intrinsic[:, ghost_source_index(ghost.shape[1], ratio)].flatten(2).double()
    gh = ghost.flatten(2).double()
    norms = gh.norm(dim=2) * src.norm(dim=2)
    sim = (gh * src).sum(2) / norms
    sim[norms == 0] = math.nan
    return sim.nanmean(0)


def nanmean(values: Tensor) -> float:
    """Mean over the non-nan entries (``nan`` if there are none)."""
    return float(values.nanmean()) if values.numel() else math.nan


@dataclass
class GhostMaps:
    """Captured maps of one GhostModule for one input.

    Attributes:
        name: module name.
        intrinsic: primary conv output (N, m, H, W).
        ghost: the cheap operation's ghost maps that reach the module output (N, oup - m, H, W).
        ratio: the module's ``s``.
    """

    name: str
    intrinsic: Tensor
    ghost: Tensor
    ratio: int

    def cosine(self) -> Tensor:
        """Per ghost map cosine similarity with its source (see :func:`ghost_cosine`)."""
        return ghost_cosine(self.intrinsic, self.ghost, self.ratio)


def _ratio(module: nn.Module) -> int:
    """The Ghost module's ``s`` (GhostNetV3's modules are always 2)."""
    return getattr(module, "ratio", 2)


@torch.no_grad()
def capture_ghost_maps(
    model: nn.Module, inputs: Any, names: Iterable[str] | None = None
) -> dict[str, GhostMaps]:
    """Run ``model(inputs)`` once with forward hooks on GhostModules and return their maps.

    Args:
        model: any module containing GhostModules (classifier, backbone or detector); put in eval
            mode. GhostNetV3 modules must be re-parameterised (``reparameterize``): their intrinsic
            and ghost maps are then the outputs of one primary and one cheap conv.
        inputs: what ``model`` is called with.
        names: GhostModule names to capture (default: all).

    Returns:
        name -> :class:`GhostMaps`, in forward order. Only ghost maps that the module keeps in its
        output (the first ``oup - m``) are returned.
    """
    modules = dict(model.named_modules())
    names = list_ghost_modules(model) if names is None else list(names)
    store: dict[str, dict[str, Tensor]] = {n: {} for n in names}
    handles = []
    for n in names:
        gm = modules[n]
        if not isinstance(gm, GHOST_MODULES):
            raise ArgumentError(f"{n} is a {type(gm).__name__}, not a GhostModule", argument="names")

        def keep(key: str, n: str = n):
            def hook(_m: nn.Module, _inp: Any, out: Tensor) -> None:
                store[n][key] = out.detach().cpu()

            return hook

        handles.append(gm.primary_conv.register_forward_hook(keep("intrinsic")))
        handles.append(gm.cheap_operation.register_forward_hook(keep("ghost")))
    try:
        model.eval()
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    out: dict[str, GhostMaps] = {}
    for n in names:
        if "intrinsic" not in store[n]:
            continue  # not reached by this forward pass (e.g. the classifier-only blocks.9)
        gm = modules[n]
        intrinsic = store[n]["intrinsic"]
        used = gm.oup - intrinsic.shape[1]
        out[n] = GhostMaps(n, intrinsic, store[n]["ghost"][:, :used], _ratio(gm))
    return out


def _normalise(maps: Tensor) -> Tensor:
    """Scale each (H, W) map to [0, 1] independently."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(maps)


def _colourise(maps: Tensor) -> Tensor:
    """(K, H, W) in [0, 1] -> (K, 3, H, W) with matplotlib's viridis when available, else grey."""
    try:
        from matplotlib import colormaps

        lut = torch.tensor(
            colormaps["viridis"](torch.linspace(0, 1, 256).numpy())[:, :3], dtype=torch.float32
        )
        return lut[(maps * 255).round().long()].permute(0, 3, 1, 2)
    except ImportError:
        return maps.unsqueeze(1).expand(-1, 3, -1, -1)


def save_ghost_grid(
    maps: GhostMaps,
    path: str | PathLike,
    num_maps: int = 16,
    columns: int = 4,
    cell: int | None = None,
    note: str = "",
) -> Path:
    """Save a PNG grid: each tile is an intrinsic map followed by the ghost map(s) made from it.

    Each map is min-max scaled on its own; the cosine similarity of every ghost map with its
    source is written above the tile.

    Args:
        maps: from :func:`capture_ghost_maps` (first image of the batch is drawn).
        path: output PNG.
        num_maps: intrinsic maps shown (the first ones).
        columns: tiles per row.
        cell: pixel height of one map (nearest-neighbour resampling); default: the map's own
            height clamped to [72, 128].
        note: extra text for the header (e.g. which weights).
    """
    from torchvision.utils import make_grid

    s = maps.ratio
    m = maps.intrinsic.shape[1]
    if cell is None:
        cell = min(max(int(maps.intrinsic.shape[-2]), 72), 128)
    k = max(1, min(num_maps, m))
    sims = maps.cosine()
    src = ghost_source_index(maps.ghost.shape[1], s)
    tiles, captions = [], []
    for j in range(k):
        ghost_ids = (src == j).nonzero().flatten().tolist()
        stack = torch.cat([maps.intrinsic[0, j : j + 1], maps.ghost[0, ghost_ids]])
        pics = _colourise(_normalise(stack))
        pics = F.interpolate(
            pics, size=(cell, cell * pics.shape[-1] // pics.shape[-2] or cell), mode="nearest"
        )
        row = torch.cat(
            [pics[0], *[torch.cat([torch.ones(3, pics.shape[-2], 2), p], 2) for p in pics[1:]]], 2
        )
        if not ghost_ids:  # odd oup: the last intrinsic map has no kept ghost
            row = torch.cat([row, torch.ones(3, row.shape[1], row.shape[2] * (s - 1) + 2 * (s - 1))], 2)
        tiles.append(row)
        captions.append(" ".join(f"{sims[g]:+.2f}" for g in ghost_ids) or "-")
    width = max(t.shape[2] for t in tiles)
    tiles = [F.pad(t, (0, width - t.shape[2], 14, 0), value=1.0) for t in tiles]
    grid = make_grid(torch.stack(tiles), nrow=columns, padding=6, pad_value=1.0)
    header = 34
    canvas = F.pad(grid, (0, 0, header, 0), value=1.0)
    img = Image.fromarray((canvas.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(img)
    h, w = maps.intrinsic.shape[-2:]
    draw.text(
        (6, 4),
        f"{maps.name}: intrinsic map (left) | ghost map{'s' if s > 2 else ''} made from it, {h}x{w}, s={s}",
        fill=(0, 0, 0),
    )
    draw.text(
        (6, 18),
        f"mean cosine(ghost, source) = {nanmean(sims):.3f}; per ghost map above each tile. {note}",
        fill=(0, 0, 0),
    )
    tile_h, tile_w = tiles[0].shape[1], width
    for idx, cap in enumerate(captions):
        r, c = divmod(idx, columns)
        draw.text(
            (6 + c * (tile_w + 6) + 2, header + 6 + r * (tile_h + 6)), f"#{idx} cos {cap}", fill=(0, 0, 0)
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def _prepare_classifier_input(
    image: Tensor, size: int, mean: Any = IMAGENET_MEAN, std: Any = IMAGENET_STD
) -> Tensor:
    """Resize the shorter side to ``size``, centre-crop ``size x size``, normalise (ImageNet default)."""
    from torchvision.transforms.functional import center_crop, normalize, resize

    x = center_crop(resize(image, [size], antialias=True), [size, size])
    return normalize(x, list(mean), list(std)).unsqueeze(0)


def _checkpoint_task(path: str | PathLike) -> str | None:
    """The ``task`` entry of a training checkpoint (``"classification"`` for ``train_cls``), if any."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint file not found: {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        return None  # load_detector reports unreadable files
    return ckpt.get("task") if isinstance(ckpt, dict) else None


def run_visualize(
    image: str | PathLike | None,
    module: str | None = None,
    *,
    model: str = "ghostnet_100",
    width: float | None = None,
    weights: str | PathLike | None = None,
    checkpoint: str | PathLike | None = None,
    size: int = 224,
    num_maps: int = 16,
    columns: int = 4,
    output: str | PathLike = "ghost_maps.png",
    list_only: bool = False,
    seed: int = 0,
    device: str | None = "cpu",
    log: Any = print,
) -> dict[str, Any]:
    """Everything ``tools/visualize_ghost_maps.py`` does.

    Args:
        image: input image file (not needed with ``list_only``).
        module: GhostModule to draw (full name or unique suffix, e.g. ``blocks.6.0.ghost1``);
            default: the first GhostModule.
        model: a GhostNet-family classifier name (``ghostnet_100``, ``ghostnetv2_130``,
            ``ghostnetv3_100``, ...); ignored with ``checkpoint``.
        width: override the classifier's width.
        weights: classifier weights: ``"imagenet"``, URL or file (default: random init with ``seed``).
        checkpoint: a ``tools/train_det.py`` detector checkpoint or a ``tools/train_cls.py``
            classifier checkpoint (any model with GhostModules, e.g. a ghostified ResNet-56)
            instead of ``model``/``weights``.
        size: classifier input size (shorter side resize + centre crop); detectors use their own,
            ``train_cls`` checkpoints the image size and normalisation they were trained with.
        num_maps: intrinsic maps drawn.
        columns: tiles per grid row.
        output: PNG path.
        list_only: print the GhostModule names and stop.
        seed: torch seed for random weights.
        device: run device.
        log: printer.

    Returns:
        ``{"modules": names, "cosine": {name: mean}, "output": path or None}``.
    """
    torch.manual_seed(seed)
    dev = resolve_device(device)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if checkpoint is not None and _checkpoint_task(checkpoint) == "classification":
        from ghostdet.engine.train_cls import load_classifier

        try:
            net, ckpt = load_classifier(checkpoint, device=dev)
        except GhostdetError as e:
            raise InputError(str(e), argument="checkpoint") from None
        prepare, mean, std = int(ckpt["image_size"]), ckpt["mean"], ckpt["std"]
    elif checkpoint is not None:
        net = load_detector(checkpoint, device=dev).model
        prepare = None
    else:
        choices = [m for m in list_models("classifier") if model_entry(m).family is not None]
        if model not in choices:
            raise InputError(f"model must be one of {', '.join(choices)}, got {model!r}", argument="model")
        kw: dict[str, Any] = {"width": width} if width is not None else {}
        try:
            net = get_model(model, weights=weights, progress=False, **kw)
        except GhostdetError as e:
            raise InputError(
                f"could not load weights {weights} into {model}: {e}".splitlines()[0][:400],
                argument="weights",
            ) from None
        net = net.to(dev).eval()
        prepare = size
    reparameterize(net)  # GhostNetV3: one primary and one cheap conv per module (same eval outputs)
    names = list_ghost_modules(net)
    if not names:
        raise InputError(
            "the model has no GhostModule (a train_cls checkpoint needs --ghostify or a GhostNet)"
        )
    if list_only:
        for n in names:
            gm = net.get_submodule(n)
            conv = gm.primary_conv[0]
            log(f"{n}  in={conv.in_channels} out={gm.oup} intrinsic={conv.out_channels} s={_ratio(gm)}")
        return {"modules": names, "cosine": {}, "output": None}
    if image is None:
        raise InputError("give an IMAGE (or --list)")
    target = resolve_module_name(net, module) if module else names[0]
    try:
        img = read_rgb_tensor(image)  # the tools' one reader: EXIF orientation applied, pixel limit
    except ImageReadError as e:  # unreadable or above the pixel limit: one line naming the file
        raise InputError(str(e)) from None
    inputs = _prepare_classifier_input(img, prepare, mean, std).to(dev) if prepare else [img.to(dev)]
    captured = capture_ghost_maps(net, inputs)
    if target not in captured:
        raise InputError(f"{target} is not used by this model's forward pass")
    width_col = max(len(n) for n in captured)
    log(f"{'GhostModule':<{width_col}}  {'maps':>9}  {'size':>9}  mean cos(ghost, intrinsic source)")
    cos: dict[str, float] = {}
    for n, gmaps in captured.items():
        c = nanmean(gmaps.cosine())
        cos[n] = c
        hw = "x".join(map(str, gmaps.intrinsic.shape[-2:]))
        maps_txt = f"{gmaps.intrinsic.shape[1]}+{gmaps.ghost.shape[1]}"
        log(f"{n:<{width_col}}  {maps_txt:>9}  {hw:>9}  {c:.3f}")
    valid = [v for v in cos.values() if not math.isnan(v)]
    log(f"mean over {len(valid)} GhostModules: {sum(valid) / len(valid):.3f}")
    if checkpoint is not None:
        note = f"weights: {Path(checkpoint).name}"
    else:
        note = f"{model}, " + (f"weights: {weights}" if weights else f"random init (seed {seed})")
    ProtectedFiles([p for p in (image, weights, checkpoint) if p is not None]).check(output)
    path = save_ghost_grid(captured[target], output, num_maps=num_maps, columns=columns, note=note)
    log(f"wrote {path} ({target})")
    return {"modules": names, "cosine": cos, "output": str(path), "module": target}
