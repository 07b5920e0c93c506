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

from ghostdet.data.images import IMAGE_EXTENSIONS
from ghostdet.errors import InputError, OutputError, one_line
from ghostdet.models.loading import LoadedDetector
from ghostdet.predict.drawing import draw_detections
from ghostdet.predict.predictor import Predictor, is_video_path
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


def predict_images(
    detector: LoadedDetector | Predictor,
    paths: Sequence[Path],
    output_dir: str | PathLike,
    device: torch.device | str = "cpu",
    score_threshold: float = 0.5,
    draw: bool = True,
    warn: Any = print,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Run ``detector`` on image files; save drawn copies and JSON detections in ``output_dir``.

    For each readable image ``name.ext``: ``name.jpg`` (or ``.png`` for PNG inputs) with the
    boxes drawn, and ``name.json``; plus ``detections.json`` with every image's entry.
    Unreadable files are reported through ``warn`` and skipped.

    Args:
        detector: from :func:`load_detector`, or a :class:`~ghostdet.predict.predictor.Predictor`
            (whose device, score threshold and batch size are used instead of the arguments).
        paths: image files (see :func:`collect_images`).
        output_dir: created if needed.
        device: device of the model.
        score_threshold: keep detections with ``score >= score_threshold``.
        draw: save the drawn copies.
        warn: called with one line per skipped file.
        batch_size: images per detector call.

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

    if isinstance(detector, Predictor):
        predictor = detector
    else:
        predictor = Predictor(
            detector, device=device, score_threshold=score_threshold, batch_size=batch_size, warn=warn
        )
    used: set[str] = {"detections"}  # the combined file's name
    stems = {str(p): _unique_stem(Path(p), used) for p in paths}  # in input order
    names = predictor.category_names
    entries: dict[int, dict[str, Any]] = {}
    skipped: list[str] = []
    # batches finish in the order they fill: entries are put back in input order at the end
    for slot, det, image in predictor.stream_files(paths, skipped):
        path = Path(str(det.source))
        entry = det.to_dict()
        stem = stems[str(path)]
        if draw:
            drawn = draw_detections(image, det.boxes, det.labels.tolist(), det.scores.tolist(), names)
            png = path.suffix.lower() == ".png"
            buf = io.BytesIO()
            Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(buf, "PNG" if png else "JPEG", quality=92)
            entry["drawn"] = str(write(f"{stem}{'.png' if png else '.jpg'}", buf.getvalue()))
        write(f"{stem}.json", json.dumps(entry, indent=1).encode())
        entries[slot] = entry
    ordered = [entries[i] for i in sorted(entries)]
    write("detections.json", json.dumps(ordered, indent=1).encode())
    return {"images": ordered, "skipped": skipped, "output_dir": str(out_dir)}


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
    score_threshold: float | str = 0.5,
    device: str | None = None,
    output_dir: str | PathLike = "runs/infer",
    threads: int | None = None,
    draw: bool = True,
    log: Any = print,
    warn: Any = None,
    batch_size: int = 1,
    runtime: str = "auto",
    thresholds_from: str | PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Everything ``ghostdet predict`` does: load a detector, expand inputs, predict, save, report.

    Image inputs give drawn copies and JSON (:func:`predict_images`); a video file
    (:data:`~ghostdet.predict.predictor.VIDEO_EXTENSIONS`, needs the ``video`` extra) gives
    ``STEM.mp4`` with the detections drawn (unless ``draw`` is off) and ``STEM.jsonl`` with one
    line per frame (:func:`ghostdet.predict.video.predict_video`).

    Args:
        inputs: image files, folders or glob patterns, and video files.
        checkpoint: ``tools/train_det.py`` checkpoint; or ``model`` + ``weights``.
        model: builder name or alias.
        weights: weights file for ``model``.
        width: GhostNet width for ``model``.
        num_classes: classes incl. background for ``model``.
        min_size: override the detector's resize min size.
        max_size: override the detector's resize max size.
        score_threshold: keep detections scoring at least this; ``"best"``: the best-F1
            threshold evaluation recorded (see :func:`~ghostdet.predict.predictor.read_best_threshold`).
        device: ``cpu``, ``cuda``... (default: cuda if available).
        output_dir: where drawn images, videos and JSON go.
        threads: ``torch.set_num_threads`` (``None``/0 keeps torch's default).
        draw: save drawn copies (and annotated videos).
        log: printer of the per-image lines and the summary.
        warn: printer of skipped-file lines (default: stderr).
        batch_size: images (video frames) per detector call.
        runtime: how the detector runs (:func:`~ghostdet.predict.predictor.available_runtimes`).
        thresholds_from: the evaluation ``metrics.json`` that ``score_threshold="best"`` reads.
        progress: show a progress bar over each video's frames.

    Raises:
        InputError: bad inputs or checkpoint, an unknown runtime, no recorded threshold for
            ``"best"``, a video without PyAV installed, or no input could be read.
        OutputError: an output folder that holds an input or is (under) a file (see
            :func:`check_output_dir`), or an output file that is an input under another name.
    """
    if warn is None:

        def warn(msg: str) -> None:
            print(msg, file=sys.stderr)

    paths = collect_images(inputs)
    videos = [p for p in paths if is_video_path(p)]
    images = [p for p in paths if not is_video_path(p)]
    check_output_dir(output_dir, paths)  # before the model is loaded: refusing is quick
    if videos:
        from ghostdet.predict.video import import_av

        import_av()  # a missing extra is one error before any work
    if threads:
        torch.set_num_threads(threads)
    predictor = Predictor(
        checkpoint, runtime=runtime, device=device, score_threshold=score_threshold, batch_size=batch_size,
        thresholds_from=thresholds_from, model=model, weights=weights, width=width,
        num_classes=num_classes, min_size=min_size, max_size=max_size, warn=warn,
    )  # fmt: skip
    threshold = predictor.score_threshold
    summary: dict[str, Any] = {"images": [], "skipped": [], "videos": [], "output_dir": str(output_dir)}
    if images:
        summary.update(predict_images(predictor, images, output_dir, draw=draw, warn=warn))
    if videos:
        out_dir = Path(output_dir).expanduser()
        summary["videos"] = _predict_videos(predictor, videos, out_dir, draw, progress, log, warn)
        done = {e["file"] for e in summary["videos"]}
        summary["skipped"] += [str(v) for v in videos if str(v) not in done]
    if not summary["images"] and not summary["videos"]:
        raise InputError(f"none of the {len(paths)} input file(s) could be read")
    n_det = sum(len(e["detections"]) for e in summary["images"])
    for e in summary["images"]:
        top = ", ".join(f"{d['name']} {d['score']:.2f}" for d in e["detections"][:5])
        more = f" (+{len(e['detections']) - 5} more)" if len(e["detections"]) > 5 else ""
        log(f"{e['file']}: {len(e['detections'])} detection(s){': ' + top + more if top else ''}")
    skipped = len(summary["skipped"])
    note = f", {skipped} unreadable file(s) skipped" if skipped else ""
    frames = sum(v["frames"] for v in summary["videos"])
    vids = f", {len(summary['videos'])} video(s) ({frames} frames)" if summary["videos"] else ""
    log(
        f"{len(summary['images'])} image(s){vids}, {n_det} detection(s) in images >= {threshold:g}{note}; "
        f"wrote {Path(output_dir).expanduser()}"
    )
    return summary


def _predict_videos(
    predictor: Any, videos: Sequence[Path], out_dir: Path, draw: bool, progress: bool, log: Any, warn: Any
) -> list[dict[str, Any]]:
    """Each video's ``STEM.mp4`` (drawn) and ``STEM.jsonl`` in ``out_dir``; unreadable ones skipped."""
    from ghostdet.predict.video import VideoReadError, predict_video

    used: set[str] = set()
    done = []
    for path in videos:
        stem = _unique_stem(path, used)
        out_video = out_dir / f"{stem}.mp4" if draw else None
        try:
            res = predict_video(
                predictor, path, out_video, out_dir / f"{stem}.jsonl", progress=progress, log=log
            )
        except VideoReadError as e:
            warn(f"skipping: {one_line(e)}")
            continue
        done.append(
            {
                "file": str(path),
                "frames": len(res.frames),
                "fps": res.fps,
                "output_video": None if res.output_video is None else str(res.output_video),
                "output_jsonl": str(res.output_jsonl),
            }
        )
    return done
