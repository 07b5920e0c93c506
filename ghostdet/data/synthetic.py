"""Embedded default data: a small, deterministic, COCO-format shapes dataset.

:func:`make_synthetic_coco` writes a real COCO-format detection dataset::

    root/
      train/000000000001.jpg ...          JPEG images of the train split
      val/000000100001.jpg ...            JPEG images of the val split
      annotations/instances_train.json    COCO instances JSON (bbox only, no segmentation)
      annotations/instances_val.json
      ghostdet_synthetic.json             manifest: the generation parameters (written last)

Each image has a textured background (smooth noise, two-colour gradient, sinusoidal stripes or
a checkerboard, always with mild pixel noise) and 0..``max_objects`` filled shapes in saturated
colours of random size, position and (for polygons) rotation. Shapes may overlap a little
(pairwise box IoU at most ``max_overlap_iou``); a few images (``empty_prob``) have no object, as
negatives. Boxes are the tight pixel extent of the whole shape, ``[x, y, w, h]`` with ``w = x1 -
x0 + 1`` (a shape covering pixel columns 4..9 has ``x = 4, w = 6``); ``area`` is the shape's pixel
count; ``iscrowd`` is 0. Category ids are deliberately non-contiguous (1, 3, 5, ...), so a model
that confuses labels with category ids fails evaluation.

Everything is drawn from ``numpy.random.default_rng((seed, split))``: the same arguments give the
same JPEG bytes and the same JSON. :func:`ensure_synthetic_coco` generates only when the manifest
at ``root`` is missing or records different parameters (the trainer calls it).

One concept, the generated dataset, hence ~500 lines: the private drawing helpers define what it
holds and are reached (and tested) only through the files it writes.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageDraw

from ghostdet.errors import ArgumentError, OutputError
from ghostdet.utils.files import atomic_write_text
from ghostdet.utils.locking import FileLock

__all__ = [
    "SHAPE_CATEGORIES",
    "ensure_synthetic_coco",
    "make_synthetic_coco",
    "synthetic_paths",
]

#: (category id, name) of every shape, in the order ``num_categories`` takes them.
SHAPE_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "circle"),
    (3, "square"),
    (5, "triangle"),
    (7, "cross"),
    (9, "ring"),
    (11, "star"),
)

MANIFEST_NAME = "ghostdet_synthetic.json"
_FORMAT_VERSION = 1
_SPLIT_ID_BASE = {"train": 1, "val": 100_001}

SizeLike = Union[int, Sequence[int]]

# keyword-only options of make_synthetic_coco and their defaults (also used by ensure_synthetic_coco)
_OPTION_DEFAULTS: dict[str, Any] = {
    "num_categories": 4,
    "object_size": (24, 64),
    "max_objects": 3,
    "empty_prob": 0.05,
    "max_overlap_iou": 0.2,
    "jpeg_quality": 92,
}


def _int(name: str, value: Any, low: int, why: str = "") -> int:
    """``value`` as an int, or a ValueError naming ``name`` when it is not an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ArgumentError(f"{name} must be an integer >= {low}{why}, got {value!r}", argument=name)
    return int(value)


def _hw(image_size: SizeLike) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        h = w = int(image_size)
    else:
        if not isinstance(image_size, Sequence) or len(image_size) != 2:
            raise ArgumentError(
                f"image_size must be an int or (H, W), got {image_size!r}", argument="image_size"
            )
        h, w = (_int("image_size", v, 32) for v in image_size)
    if h < 32 or w < 32:
        raise ArgumentError(f"image_size must be at least 32x32, got {(h, w)}", argument="image_size")
    return h, w


def synthetic_paths(root: str | PathLike) -> dict[str, str]:
    """The paths :func:`make_synthetic_coco` writes under ``root`` (whether or not they exist)."""
    root = Path(root)
    return {
        "root": str(root),
        "train_images": str(root / "train"),
        "train_ann": str(root / "annotations" / "instances_train.json"),
        "val_images": str(root / "val"),
        "val_ann": str(root / "annotations" / "instances_val.json"),
        "manifest": str(root / MANIFEST_NAME),
    }


# ----------------------------------------------------------------------------- backgrounds
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bilinearly to (h, w)."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    ys = np.linspace(0, cells, h, dtype=np.float32)
    xs = np.linspace(0, cells, w, dtype=np.float32)
    y0 = np.minimum(ys.astype(np.int64), cells - 1)
    x0 = np.minimum(xs.astype(np.int64), cells - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    g00 = grid[y0][:, x0]
    g01 = grid[y0][:, x0 + 1]
    g10 = grid[y0 + 1][:, x0]
    g11 = grid[y0 + 1][:, x0 + 1]
    return (g00 * (1 - fx) + g01 * fx) * (1 - fy) + (g10 * (1 - fx) + g11 * fx) * fy


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation background colour (grey-ish, any brightness)."""
    base = rng.uniform(40, 215)
    return np.clip(base + rng.uniform(-35, 35, size=3), 0, 255).astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = int(rng.integers(4))
    c0, c1 = _muted_colour(rng), _muted_colour(rng)
    if kind == 0:  # smooth noise blobs
        t = _smooth_noise(rng, h, w, int(rng.integers(3, 9)))
    elif kind == 1:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        p = xx * math.cos(a) + yy * math.sin(a)
        t = (p - p.min()) / max(float(np.ptp(p)), 1e-6)
    elif kind == 2:  # sinusoidal stripes
        a = rng.uniform(0, math.pi)
        period = rng.uniform(6, 24)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        p = xx * math.cos(a) + yy * math.sin(a)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * p / period)
    else:  # checkerboard
        cell = int(rng.integers(8, 28))
        yy, xx = np.mgrid[0:h, 0:w]
        t = (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    return img


def _vivid_colour(rng: np.random.Generator, avoid: np.ndarray) -> tuple[int, int, int]:
    """A saturated colour whose distance from ``avoid`` (RGB) is large enough to be visible."""
    best, best_d = None, -1.0
    for _ in range(16):
        hue = rng.uniform(0, 6)
        sat = rng.uniform(0.65, 1.0)
        val = rng.uniform(0.55, 1.0)
        i = int(hue) % 6
        f = hue - int(hue)
        p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
        rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
        c = np.array(rgb, dtype=np.float32) * 255
        d = float(np.linalg.norm(c - avoid))
        if d > best_d:
            best, best_d = c, d
        if d > 110:
            break
    return tuple(int(v) for v in best)  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- shapes
def _regular_polygon(cx: float, cy: float, r: float, n: int, rot: float) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(rot + 2 * math.pi * k / n), cy + r * math.sin(rot + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _rotate(points: list[tuple[float, float]], cx: float, cy: float, rot: float) -> list[tuple[float, float]]:
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _shape_mask(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of one shape drawn inside a ``size`` x ``size`` canvas."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    c = (size - 1) / 2.0
    r = (size - 1) / 2.0
    rot = rng.uniform(-math.pi / 6, math.pi / 6)
    if name == "circle":
        draw.ellipse([0, 0, size - 1, size - 1], fill=255)
    elif name == "ring":
        draw.ellipse([0, 0, size - 1, size - 1], fill=255)
        inner = r * rng.uniform(0.45, 0.6)
        draw.ellipse([c - inner, c - inner, c + inner, c + inner], fill=0)
    elif name == "square":
        # half-side chosen so the rotated square fits in the canvas
        half = r / (abs(math.cos(rot)) + abs(math.sin(rot)))
        pts = [(c - half, c - half), (c + half, c - half), (c + half, c + half), (c - half, c + half)]
        draw.polygon(_rotate(pts, c, c, rot), fill=255)
    elif name == "triangle":
        draw.polygon(_regular_polygon(c, c, r, 3, -math.pi / 2 + rot), fill=255)
    elif name == "cross":
        arm = r * rng.uniform(0.28, 0.38)
        # bar half-length so the rotated bar's extent L|cos| + arm|sin| stays within r
        half = (r - arm * abs(math.sin(rot))) / abs(math.cos(rot))
        bars = [
            [(c - half, c - arm), (c + half, c - arm), (c + half, c + arm), (c - half, c + arm)],
            [(c - arm, c - half), (c + arm, c - half), (c + arm, c + half), (c - arm, c + half)],
        ]
        for bar in bars:
            draw.polygon(_rotate(bar, c, c, rot), fill=255)
    elif name == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.42
            a = -math.pi / 2 + rot + math.pi * k / 5
            pts.append((c + rad * math.cos(a), c + rad * math.sin(a)))
        draw.polygon(pts, fill=255)
    else:  # pragma: no cover - guarded by SHAPE_CATEGORIES
        raise ValueError(f"unknown shape {name!r}")
    return np.asarray(canvas) > 127


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _render_image(rng: np.random.Generator, params: dict[str, Any]) -> tuple[np.ndarray, list[dict]]:
    """One image (H, W, 3 uint8) and its objects, drawn from ``rng`` with resolved ``params``."""
    h, w = params["image_size"]
    categories = SHAPE_CATEGORIES[: params["num_categories"]]
    img = _background(rng, h, w)
    mean_bg = img.reshape(-1, 3).mean(0)
    n = 0 if rng.random() < params["empty_prob"] else int(rng.integers(1, params["max_objects"] + 1))
    lo = min(params["object_size"][0], h, w)
    hi = min(params["object_size"][1], h, w)
    objects: list[dict[str, Any]] = []
    for _ in range(n):
        for _attempt in range(20):
            size = int(rng.integers(lo, hi + 1))
            x0 = int(rng.integers(0, w - size + 1))
            y0 = int(rng.integers(0, h - size + 1))
            cat_id, name = categories[int(rng.integers(len(categories)))]
            mask = _shape_mask(name, size, rng)
            ys, xs = np.nonzero(mask)
            if len(xs) == 0:
                continue
            bbox = [
                float(x0 + xs.min()),
                float(y0 + ys.min()),
                float(xs.max() - xs.min() + 1),
                float(ys.max() - ys.min() + 1),
            ]
            if any(_box_iou(bbox, o["bbox"]) > params["max_overlap_iou"] for o in objects):
                continue
            local_bg = img[y0 : y0 + size, x0 : x0 + size][mask].mean(0)
            colour = np.array(_vivid_colour(rng, 0.5 * (local_bg + mean_bg)), dtype=np.float32)
            # slight shading so shapes are not perfectly flat
            shade = 1.0 + rng.uniform(-0.12, 0.12) * (np.linspace(-1, 1, size, dtype=np.float32)[:, None])
            patch = np.broadcast_to(np.clip(colour * shade[..., None], 0, 255), (size, size, 3))
            region = img[y0 : y0 + size, x0 : x0 + size]
            region[mask] = patch[mask]
            objects.append({"category_id": cat_id, "bbox": bbox, "area": float(mask.sum())})
            break
    img = img + rng.normal(0.0, 6.0, size=img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), objects


def _write_split(root: Path, split: str, params: dict[str, Any]) -> dict[str, Any]:
    """Write the JPEGs of one split and return its COCO dict."""
    rng = np.random.default_rng((params["seed"], 0 if split == "train" else 1))
    h, w = params["image_size"]
    categories = SHAPE_CATEGORIES[: params["num_categories"]]
    num_images = params[f"num_{split}"]
    img_dir = root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = _SPLIT_ID_BASE[split]
    for i in range(num_images):
        image_id = _SPLIT_ID_BASE[split] + i
        file_name = f"{image_id:012d}.jpg"
        pixels, objects = _render_image(rng, params)
        quality = params["jpeg_quality"]
        Image.fromarray(pixels, "RGB").save(img_dir / file_name, format="JPEG", quality=quality)
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h, "license": 1})
        for obj in objects:
            annotations.append({"id": ann_id, "image_id": image_id, "iscrowd": 0, **obj})
            ann_id += 1
    return {
        "info": {
            "description": f"ghostdet synthetic shapes ({split})",
            "version": str(_FORMAT_VERSION),
            "year": 2026,
            "contributor": "ghostdet.data.synthetic",
            "date_created": "generated",
        },
        "licenses": [{"id": 1, "name": "CC0 1.0 (generated data)", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in categories],
    }


def _params(
    num_train: int,
    num_val: int,
    image_size: SizeLike,
    seed: int,
    num_categories: int,
    object_size: tuple[int, int],
    max_objects: int,
    empty_prob: float,
    max_overlap_iou: float,
    jpeg_quality: int,
) -> dict[str, Any]:
    empty = " (an empty split cannot be trained or evaluated)"
    num_train, num_val = _int("num_train", num_train, 1, empty), _int("num_val", num_val, 1, empty)
    h, w = _hw(image_size)
    seed = _int("seed", seed, 0)
    if _int("num_categories", num_categories, 1) > len(SHAPE_CATEGORIES):
        raise ArgumentError(
            f"num_categories must be in 1..{len(SHAPE_CATEGORIES)}, got {num_categories}",
            argument="num_categories",
        )
    if not isinstance(object_size, Sequence) or len(object_size) != 2:
        raise ArgumentError(f"object_size must be (min, max), got {object_size!r}", argument="object_size")
    lo, hi = (_int("object_size", v, 8) for v in object_size)
    if lo > hi:
        raise ArgumentError(
            f"object_size must be (min, max) with 8 <= min <= max, got {object_size!r}",
            argument="object_size",
        )
    max_objects = _int("max_objects", max_objects, 1)
    for name, p in (("empty_prob", empty_prob), ("max_overlap_iou", max_overlap_iou)):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ArgumentError(f"{name} must be a number in [0, 1], got {p!r}", argument=name)
    if not 1 <= _int("jpeg_quality", jpeg_quality, 1) <= 100:
        raise ArgumentError(f"jpeg_quality must be in 1..100, got {jpeg_quality!r}", argument="jpeg_quality")
    return {
        "format_version": _FORMAT_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [h, w],
        "seed": int(seed),
        "num_categories": int(num_categories),
        "object_size": [lo, hi],
        "max_objects": int(max_objects),
        "empty_prob": float(empty_prob),
        "max_overlap_iou": float(max_overlap_iou),
        "jpeg_quality": int(jpeg_quality),
    }


def make_synthetic_coco(
    root: str | PathLike,
    num_train: int = 480,
    num_val: int = 80,
    image_size: SizeLike = 128,
    seed: int = 0,
    *,
    num_categories: int = 4,
    object_size: tuple[int, int] = (24, 64),
    max_objects: int = 3,
    empty_prob: float = 0.05,
    max_overlap_iou: float = 0.2,
    jpeg_quality: int = 92,
) -> dict[str, str]:
    """Write a deterministic COCO-format shapes dataset (train and val splits) under ``root``.

    Args:
        root: output folder (created). It must be empty, missing, or a folder this module wrote
            (it holds the manifest); files there with the same names are then overwritten.
        num_train: number of train images (at least 1).
        num_val: number of val images (at least 1).
        image_size: ``S`` (square) or ``(H, W)`` in pixels, at least 32.
        seed: random seed; the same arguments produce byte-identical files.
        num_categories: how many shape classes, 1..6, taken in the order circle (id 1), square
            (3), triangle (5), cross (7), ring (9), star (11).
        object_size: ``(min, max)`` side in pixels of the square canvas each shape is drawn in
            (clamped to the image size).
        max_objects: a non-empty image holds 1..``max_objects`` shapes (fewer when placement
            fails the overlap limit).
        empty_prob: probability that an image has no object.
        max_overlap_iou: largest IoU allowed between two shape boxes of one image.
        jpeg_quality: JPEG quality of the written images.

    Returns:
        dict with ``root``, ``train_images``, ``train_ann``, ``val_images``, ``val_ann`` and
        ``manifest`` (string paths).

    Raises:
        ValueError: an argument of the wrong type or out of range (an empty split, a negative
            size or seed, a probability outside [0, 1]); the message names it. Nothing is written.
        OutputError: ``root`` holds files this module did not write; nothing is written.
    """
    params = _params(
        num_train, num_val, image_size, seed, num_categories, object_size, max_objects, empty_prob,
        max_overlap_iou, jpeg_quality,
    )  # fmt: skip
    root = Path(root)
    _refuse_foreign(root)
    paths = synthetic_paths(root)
    manifest = Path(paths["manifest"])
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    # mark the folder as ours and incomplete first: an interrupted run must not look complete
    _write_json(manifest, {**params, "partial": True})
    for split in ("train", "val"):
        data = _write_split(root, split, params)
        _write_json(Path(paths[f"{split}_ann"]), data)
    _write_json(manifest, params)
    return paths


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=None, separators=(",", ":")))


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def _refuse_foreign(root: Path) -> None:
    """Refuse a folder that holds anything and was not written by this module.

    A folder is ours when it holds this module's manifest (written first, marked ``partial``,
    and rewritten complete last). Anything else -- a real dataset with the same ``train/ val/
    annotations/`` layout included -- is never modified.

    Raises:
        OutputError: ``root`` is a file, or a non-empty folder without the manifest.
    """
    if root.exists() and not root.is_dir():
        raise OutputError(
            f"synthetic dataset folder {root} is a file; choose another folder", argument="root"
        )
    if not root.is_dir() or not any(root.iterdir()) or isinstance(_read_manifest(root), dict):
        return
    held = sorted(p.name for p in root.iterdir())
    raise OutputError(
        f"{root} holds files not written by ghostdet's synthetic-data generator ({', '.join(held[:4])}"
        f"{', ...' if len(held) > 4 else ''}); it is left untouched: choose another folder for the "
        "synthetic dataset",
        argument="root",
    )


def _is_complete(root: Path, params: dict[str, Any]) -> bool:
    if _read_manifest(root) != params:
        return False
    paths = synthetic_paths(root)
    for split in ("train", "val"):
        if not Path(paths[f"{split}_ann"]).is_file():
            return False
        n = params[f"num_{split}"]
        if n and not (Path(paths[f"{split}_images"]) / f"{_SPLIT_ID_BASE[split] + n - 1:012d}.jpg").is_file():
            return False
    return True


def ensure_synthetic_coco(
    root: str | PathLike,
    num_train: int = 480,
    num_val: int = 80,
    image_size: SizeLike = 128,
    seed: int = 0,
    *,
    verbose: bool = False,
    **kwargs: Any,
) -> dict[str, str]:
    """Return the paths of the synthetic dataset at ``root``, generating it only when needed.

    The dataset is (re)generated when ``root``'s manifest is missing or records different
    parameters (or expected files are missing). Stale generated folders are removed first; a
    non-empty ``root`` without this module's manifest (say, a real dataset) is never touched
    (``OutputError``).
    Concurrent callers (e.g. several ``torchrun`` ranks) are serialised with a lock file next to
    ``root``.

    Args:
        root: dataset folder.
        num_train: as for :func:`make_synthetic_coco`.
        num_val: as for :func:`make_synthetic_coco`.
        image_size: as for :func:`make_synthetic_coco`.
        seed: as for :func:`make_synthetic_coco`.
        **kwargs: as for :func:`make_synthetic_coco`.
        verbose: print one line when generating.
    """
    root = Path(root)
    unknown = set(kwargs) - set(_OPTION_DEFAULTS)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    params = _params(num_train, num_val, image_size, seed, **{**_OPTION_DEFAULTS, **kwargs})
    if _is_complete(root, params):
        return synthetic_paths(root)
    with FileLock(root.parent / f".{root.name}.lock"):
        if _is_complete(root, params):  # another process finished while we waited
            return synthetic_paths(root)
        _refuse_foreign(root)
        if root.is_dir():  # ours (it holds the manifest): stale generated folders go
            for name in ("train", "val", "annotations"):
                shutil.rmtree(root / name, ignore_errors=True)
        if verbose:
            print(f"generating synthetic COCO dataset in {root} ...", flush=True)
        return make_synthetic_coco(root, num_train, num_val, image_size, seed, **kwargs)
