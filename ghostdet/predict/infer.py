"""Running a trained detector on image files: ``tools/infer.py``'s library.

:func:`predict_images` runs a detector (from :func:`ghostdet.models.loading.load_detector`) over
images, folders or globs, saves copies with the detections drawn (:mod:`ghostdet.predict.drawing`)
and writes the detections as JSON; :func:`run_infer` is the whole tool in one call.
"""

from __future__ import annotations

import glob
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ghostdet.data.images import IMAGE_EXTENSIONS, read_rgb_tensor
from ghostdet.errors import InputError, OutputError, one_line
from ghostdet.models.loading import LoadedDetector, configure_postprocess, load_detector
from ghostdet.predict.drawing import draw_detections
from ghostdet.utils.devices import resolve_device
from ghostdet.utils.files import ProtectedFiles, atomic_write_bytes

__all__ = ["check_output_dir", "collect_images", "predict_images", "run_infer"]


def collect_images(inputs: Iterable[str | PathLike]) -> list[Path]:
    """Expand image files, folders (their image files, sorted, not recursive) and glob patterns.

    Files named explicitly are kept whatever their extension (so unreadable ones get reported);
    folder and glob matches are filtered by :data:`IMAGE_EXTENSIONS`. Duplicates are dropped.

    Raises:
        InputError: an input matches nothing.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found = [p]
        elif glob.has_magic(str(item)):
            found = sorted(
                Path(f)
                for f in glob.glob(os.path.expanduser(str(item)), recursive=True)
                if Path(f).is_file() and Path(f).suffix.lower() in IMAGE_EXTENSIONS
            )
        else:
            raise InputError(f"input not found: {item}")
        if not found:
            raise InputError(f"no image files in {item}")
        out.extend(found)
    return list(dict.fromkeys(out))


def check_output_dir(output_dir: str | PathLike, inputs: Sequence[Path]) -> ProtectedFiles:
    """Refuse an output folder that would overwrite an input or cannot be a folder.

    The drawn copies and JSON files are written into ``output_dir`` under the inputs' names, so
    a folder that lists or holds any input image is refused (compared by device and inode, so a
    folder of links to the photos, or the same folder under another path, is caught too), as is
    a path that is a file or lies under one.

    Returns:
        the inputs as :class:`~ghostdet.utils.files.ProtectedFiles`, for a check of every write.

    Raises:
        OutputError: naming ``output_dir`` (``argument="output_dir"``) and the input or file in
            the way.
    """
    out = Path(output_dir).expanduser()
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == out else f"is under the file {parent}"
            raise OutputError(f"{out} {where}; give a folder", argument="output_dir")
    protected = ProtectedFiles(inputs, what="input image")
    held = protected.input_in_folder(out)
    if held is not None:
        raise OutputError(
            f"{out} holds the input image {held}: the drawn copies would overwrite the inputs; give "
            "another folder (e.g. a subfolder such as OUTPUT/detections)",
            argument="output_dir",
        )
    return protected


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, i = path.stem, 1
    while stem in used:
        stem = f"{path.stem}_{i}"
        i += 1
    used.add(stem)
    return stem


@torch.no_grad()
def predict_images(
    detector: LoadedDetector,
    paths: Sequence[Path],
    output_dir: str | PathLike,
    device: torch.device | str = "cpu",
    score_threshold: float = 0.5,
    draw: bool = True,
    warn: Any = print,
) -> dict[str, Any]:
    """Run ``detector`` on image files; save drawn copies and JSON detections in ``output_dir``.

    For each readable image ``name.ext``: ``name.jpg`` (or ``.png`` for PNG inputs) with the
    boxes drawn, and ``name.json``; plus ``detections.json`` with every image's entry.
    Unreadable files are reported through ``warn`` and skipped.

    Args:
        detector: from :func:`load_detector`.
        paths: image files (see :func:`collect_images`).
        output_dir: created if needed.
        device: device of the model.
        score_threshold: keep detections with ``score >= score_threshold``.
        draw: save the drawn copies.
        warn: called with one line per skipped file.

    Returns:
        ``{"images": [...entries], "skipped": [paths], "output_dir": str}``; each entry holds
        ``file``, ``width``, ``height`` and ``detections`` (``label``, ``category_id``, ``name``,
        ``score``, ``box`` xyxy pixels).
    """
    protected = check_output_dir(output_dir, paths)
    out_dir = Path(output_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> Path:
        # every write: never an input under any name, never through a link (atomic rename)
        target = out_dir / name
        protected.check(target)
        return atomic_write_bytes(target, data)

    device = torch.device(device)
    model = detector.model.eval()
    # The model's own score cut becomes the requested one (also when it is below the default 0.05).
    configure_postprocess(model, score_threshold, None)
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []
    used: set[str] = {"detections"}  # the combined file's name
    for path in paths:
        try:
            image = read_rgb_tensor(path)
        except OSError as e:
            warn(f"skipping: {one_line(e)}")
            skipped.append(str(path))
            continue
        out = model([image.to(device)])[0]
        keep = out["scores"] >= score_threshold
        boxes, scores, labels = (out[k][keep].cpu() for k in ("boxes", "scores", "labels"))
        dets = []
        for box, s, lbl in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            cat = detector.label_to_cat_id.get(lbl) if detector.label_to_cat_id else lbl
            dets.append(
                {"label": lbl, "category_id": cat, "name": detector.label_name(lbl), "score": s, "box": box}
            )
        entry = {"file": str(path), "width": image.shape[2], "height": image.shape[1], "detections": dets}
        stem = _unique_stem(path, used)
        if draw:
            drawn = draw_detections(image, boxes, labels.tolist(), scores.tolist(), detector.category_names)
            png = path.suffix.lower() == ".png"
            buf = io.BytesIO()
            Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(buf, "PNG" if png else "JPEG", quality=92)
            entry["drawn"] = str(write(f"{stem}{'.png' if png else '.jpg'}", buf.getvalue()))
        write(f"{stem}.json", json.dumps(entry, indent=1).encode())
        entries.append(entry)
    write("detections.json", json.dumps(entries, indent=1).encode())
    return {"images": entries, "skipped": skipped, "output_dir": str(out_dir)}


def run_infer(
    inputs: Sequence[str | PathLike],
    *,
    checkpoint: str | PathLike | None = None,
    model: str | None = None,
    weights: str | PathLike | None = None,
    width: float | None = None,
    num_classes: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    score_threshold: float = 0.5,
    device: str | None = None,
    output_dir: str | PathLike = "runs/infer",
    threads: int | None = None,
    draw: bool = True,
    log: Any = print,
    warn: Any = None,
) -> dict[str, Any]:
    """Everything ``tools/infer.py`` does: load a detector, expand inputs, predict, save, report.

    Args:
        inputs: image files, folders or glob patterns.
        checkpoint: ``tools/train_det.py`` checkpoint; or ``model`` + ``weights``.
        model: builder name or alias.
        weights: weights file for ``model``.
        width: GhostNet width for ``model``.
        num_classes: classes incl. background for ``model``.
        min_size: override the detector's resize min size.
        max_size: override the detector's resize max size.
        score_threshold: keep detections scoring at least this.
        device: ``cpu``, ``cuda``... (default: cuda if available).
        output_dir: where drawn images and JSON go.
        threads: ``torch.set_num_threads`` (``None``/0 keeps torch's default).
        draw: save drawn copies.
        log: printer of the per-image lines and the summary.
        warn: printer of skipped-file lines (default: stderr).

    Raises:
        InputError: bad inputs or checkpoint, or no image could be read.
        OutputError: an output folder that holds an input image or is (under) a file (see
            :func:`check_output_dir`), or an output file that is an input under another name.
    """
    if warn is None:

        def warn(msg: str) -> None:
            print(msg, file=sys.stderr)

    paths = collect_images(inputs)
    check_output_dir(output_dir, paths)  # before the model is loaded: refusing is quick
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    detector = load_detector(checkpoint, model, weights, width, num_classes, min_size, max_size, device=dev)
    summary = predict_images(detector, paths, output_dir, dev, score_threshold, draw=draw, warn=warn)
    if not summary["images"]:
        raise InputError(f"none of the {len(paths)} input file(s) could be read as an image")
    n_det = sum(len(e["detections"]) for e in summary["images"])
    for e in summary["images"]:
        top = ", ".join(f"{d['name']} {d['score']:.2f}" for d in e["detections"][:5])
        more = f" (+{len(e['detections']) - 5} more)" if len(e["detections"]) > 5 else ""
        log(f"{e['file']}: {len(e['detections'])} detection(s){': ' + top + more if top else ''}")
    skipped = len(summary["skipped"])
    note = f", {skipped} unreadable file(s) skipped" if skipped else ""
    log(
        f"{len(summary['images'])} image(s), {n_det} detection(s) >= {score_threshold:g}{note}; "
        f"wrote {summary['output_dir']}"
    )
    return summary
