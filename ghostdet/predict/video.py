"""Detection on video files: :func:`predict_video`.

Videos are read and written with `PyAV <https://pyav.basswood-io.com/>`_ (the ``video`` extra:
``pip install ghostdet[video]``). PyAV decodes and encodes through FFmpeg's libraries inside the
Python process, its wheels ship those libraries (no ``ffmpeg`` program needs to be installed,
unlike tools that run the ``ffmpeg`` binary in a subprocess and pipe raw frames through it), and
it gives each frame as a numpy array together with its timestamp.

:func:`predict_video` reads the frames, runs a :class:`~ghostdet.predict.predictor.Predictor`
on them in batches, and writes an annotated copy (same frame rate and size; H.264 when this
PyAV build encodes it, else MPEG-4 part 2) and a JSON-lines file with one line per frame.
Outputs are written under a temporary name and renamed into place when complete, and never
over the input video (under any name).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from os import PathLike
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np
import torch

from ghostdet.errors import ArgumentError, GhostdetError, InputError, OutputError, one_line
from ghostdet.predict.drawing import draw_detections
from ghostdet.predict.predictor import Detections, Predictor, _Item
from ghostdet.utils.files import ProtectedFiles, atomic_write, write_failure

__all__ = [
    "OUTPUT_FORMATS",
    "VideoReadError",
    "VideoResult",
    "import_av",
    "iter_frames",
    "predict_video",
    "video_encoder",
]

#: Container format of each output video extension.
OUTPUT_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}

#: Encoders tried in order by :func:`video_encoder`.
ENCODERS = ("libx264", "h264", "libopenh264", "mpeg4")


class VideoReadError(InputError, OSError):
    """A video file that cannot be opened or decoded (the message names it)."""


def import_av() -> ModuleType:
    """The ``av`` module (PyAV).

    Raises:
        InputError: PyAV is not installed (the message names the ``video`` extra).
    """
    try:
        import av
    except ImportError:
        raise InputError(
            "reading and writing video needs PyAV, which is not installed: pip install ghostdet[video] "
            "(or pip install av)"
        ) from None
    return av


def _ffmpeg_errors(av: ModuleType) -> tuple[type[BaseException], ...]:
    return (av.error.FFmpegError, OSError, ValueError, EOFError)


def _open(av: ModuleType, path: Path) -> tuple[Any, Any]:
    """Open ``path`` and its first video stream (a :class:`VideoReadError` if it cannot be)."""
    if not path.is_file():
        raise VideoReadError(f"video file not found: {path}")
    try:
        container = av.open(str(path))
    except _ffmpeg_errors(av) as e:
        raise VideoReadError(f"cannot read video {path}: {one_line(e)}") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path} holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # decode on several threads
    return container, stream


def iter_frames(path: str | PathLike) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """The frames of a video file, decoded.

    Args:
        path: the video.

    Yields:
        ``(index, time, image)``: the frame number from 0, its presentation time in seconds
        (``None`` if unknown) and an ``(H, W, 3)`` uint8 RGB array.

    Raises:
        InputError: PyAV is not installed.
        VideoReadError: the file cannot be opened, or decoding fails part-way (frames before
            the failure have been yielded).
    """
    av = import_av()
    path = Path(path)
    container, stream = _open(av, path)
    index = 0
    try:
        for frame in container.decode(stream):
            yield index, frame.time, frame.to_ndarray(format="rgb24")
            index += 1
    except _ffmpeg_errors(av) as e:
        raise VideoReadError(f"cannot decode {path} after frame {index}: {one_line(e)}") from None
    finally:
        container.close()


@cache
def video_encoder() -> str:
    """The first of :data:`ENCODERS` (H.264 encoders, then MPEG-4 part 2) this PyAV build can
    open: each is tried on a two-frame clip in memory.

    Raises:
        InputError: PyAV is missing, or none of them works.
    """
    av = import_av()
    for name in ENCODERS:
        try:
            buf = io.BytesIO()
            with av.open(buf, "w", format="mp4") as out:
                stream = out.add_stream(name, rate=25)
                stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
                for _ in range(2):
                    frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                    out.mux(stream.encode(frame))
                out.mux(stream.encode())
            return name
        except Exception:  # an encoder this build lacks or cannot open: try the next
            continue
    raise InputError(f"this PyAV build encodes none of {', '.join(ENCODERS)}")


@dataclass
class VideoResult:
    """What :func:`predict_video` did.

    Attributes:
        source: the input video.
        frames: one :class:`~ghostdet.predict.predictor.Detections` per decoded frame.
        fps: the input's frame rate (the output's too).
        width: frame width in pixels.
        height: frame height in pixels.
        seconds: wall time of the whole run.
        output_video: the annotated video written, if one was asked for.
        output_jsonl: the JSON-lines file written, if one was asked for.
        codec: the encoder of ``output_video``.
        error: why decoding stopped early (a damaged file), else ``None``.
    """

    source: str
    frames: list[Detections] = field(default_factory=list)
    fps: float = 0.0
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    output_video: Path | None = None
    output_jsonl: Path | None = None
    codec: str | None = None
    error: str | None = None

    @property
    def frames_per_second(self) -> float:
        """Frames processed per second of wall time."""
        return len(self.frames) / self.seconds if self.seconds > 0 else 0.0


class _Writer:
    """Encodes RGB frames into an open binary file (``None`` writes nothing)."""

    def __init__(self, av: ModuleType, file: IO[bytes] | None, fmt: str, codec: str, rate: Fraction) -> None:
        self.av, self.file, self.fmt, self.codec, self.rate = av, file, fmt, codec, rate
        self.container: Any = None
        self.stream: Any = None

    def write(self, rgb: np.ndarray) -> None:
        if self.file is None:
            return
        if self.container is None:
            h, w = rgb.shape[:2]
            self.container = self.av.open(self.file, "w", format=self.fmt)
            self.stream = self.container.add_stream(self.codec, rate=self.rate)
            self.stream.width, self.stream.height = w, h
            # H.264's 4:2:0 needs even sides; 4:4:4 keeps an odd-sized frame's size
            odd = w % 2 or h % 2
            self.stream.pix_fmt = "yuv444p" if odd and self.codec != "mpeg4" else "yuv420p"
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        if self.container is not None:
            self.container.mux(self.stream.encode())  # flush the encoder
            self.container.close()
            self.container = None


def _check_outputs(
    source: Path, output_video: Path | None, output_jsonl: Path | None
) -> tuple[Path | None, Path | None]:
    protected = ProtectedFiles([source], what="input video")
    outs = {}
    for arg, path in (("output_video", output_video), ("output_jsonl", output_jsonl)):
        if path is None:
            continue
        path = Path(path).expanduser()
        if path.is_dir():
            raise OutputError(f"{path} is a folder; give a file name", argument=arg)
        if path.absolute() == source.absolute():
            raise OutputError(f"refusing to write {path}: it is the input video", argument=arg)
        protected.check(path)
        outs[arg] = path
    video, jsonl = outs.get("output_video"), outs.get("output_jsonl")
    if video is not None and video.suffix.lower() not in OUTPUT_FORMATS:
        raise ArgumentError(
            f"output video {video}: use one of the extensions {', '.join(OUTPUT_FORMATS)}",
            argument="output_video",
        )
    if video is not None and jsonl is not None and video.absolute() == jsonl.absolute():
        raise ArgumentError(
            f"output_video and output_jsonl are the same file {video}", argument="output_jsonl"
        )
    return video, jsonl


def predict_video(
    predictor: Predictor,
    source: str | PathLike,
    output_video: str | PathLike | None = None,
    output_jsonl: str | PathLike | None = None,
    *,
    batch_size: int | None = None,
    draw: bool = True,
    codec: str | None = None,
    progress: bool = True,
    log: Callable[[str], Any] | None = print,
) -> VideoResult:
    """Detect objects in every frame of a video; write an annotated copy and per-frame JSON lines.

    Args:
        predictor: the detector (its ``score_threshold`` and ``batch_size`` apply).
        source: the video file (anything FFmpeg reads: ``.mp4``, ``.avi``, ``.mov``, ``.mkv``,
            ``.webm``...).
        output_video: the annotated copy (``.mp4``, ``.mov``, ``.mkv`` or ``.avi``): the frames
            with the detections drawn, at the input's frame rate and size (a variable frame rate
            is written at its average).
        output_jsonl: one JSON object per line and frame: ``frame``, ``time`` (seconds),
            ``width``, ``height``, ``detections`` (as :meth:`Detections.to_dict`).
        batch_size: frames per detector call (default: the predictor's).
        draw: draw the detections on ``output_video``'s frames (``False``: a plain re-encode).
        codec: the encoder of ``output_video`` (default: :func:`video_encoder`).
        progress: show a progress bar (tqdm, on stderr).
        log: printer of the closing line (frames, detections, frames/s); ``None``: silent.

    Returns:
        A :class:`VideoResult` with every frame's detections.

    Raises:
        InputError: PyAV is missing (``pip install ghostdet[video]``).
        VideoReadError: the video cannot be opened, or not one frame decodes
            (``argument="source"``; an :class:`~ghostdet.errors.InputError`).
        OutputError: an output is the input video (under any name) or a folder, or cannot be
            written; nothing is left half-written.
        ArgumentError: an output extension that is not a video container, or both outputs the
            same file.
    """
    from tqdm import tqdm

    av = import_av()
    src = Path(source).expanduser()
    out_video, out_jsonl = _check_outputs(src, output_video, output_jsonl)
    size = predictor.batch_size if batch_size is None else int(batch_size)
    if size < 1:
        raise ArgumentError(f"batch_size must be >= 1, got {size}", argument="batch_size")
    try:
        container, stream = _open(av, src)
    except VideoReadError as e:
        e.argument = "source"
        raise
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    total = stream.frames or None
    encoder = (codec or video_encoder()) if out_video is not None else None
    result = VideoResult(
        str(src), fps=float(rate), output_video=out_video, output_jsonl=out_jsonl, codec=encoder
    )
    start = time.perf_counter()
    bar = tqdm(total=total, unit="frame", desc=src.name, disable=not progress, leave=False)

    def run(video_file: IO[bytes] | None, jsonl_file: IO[bytes] | None) -> None:
        fmt = OUTPUT_FORMATS[out_video.suffix.lower()] if out_video is not None else ""
        writer = _Writer(av, video_file, fmt, encoder or "", Fraction(rate))
        batch: list[tuple[_Item, np.ndarray]] = []

        def flush() -> None:
            dets = predictor._run([item for item, _ in batch])
            for (_, rgb), det in zip(batch, dets):
                result.frames.append(det)
                if jsonl_file is not None:
                    jsonl_file.write((json.dumps(det.to_dict()) + "\n").encode())
                if video_file is not None:
                    if draw and len(det):
                        image = torch.from_numpy(rgb).permute(2, 0, 1)
                        names = {int(lbl): n for lbl, n in zip(det.labels.tolist(), det.names)}
                        drawn = draw_detections(
                            image, det.boxes, det.labels.tolist(), det.scores.tolist(), names
                        )
                        rgb = drawn.permute(1, 2, 0).numpy()
                    writer.write(rgb)
            bar.update(len(batch))
            batch.clear()

        def decoded() -> Iterator[tuple[int, float | None, np.ndarray]]:
            # a damaged file ends the video where decoding fails (an encoder error is not caught)
            index = 0
            try:
                for frame in container.decode(stream):
                    yield index, frame.time, frame.to_ndarray(format="rgb24")
                    index += 1
            except _ffmpeg_errors(av) as e:
                result.error = f"decoding stopped after frame {index}: {one_line(e)}"

        for index, t, rgb in decoded():
            image = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
            batch.append((_Item(str(src), image, frame=index, time=t), rgb))
            if len(batch) >= size:
                flush()
        flush()
        writer.close()
        if not result.frames:
            raise VideoReadError(f"no frame of {src} could be decoded", argument="source")
        result.height, result.width = result.frames[0].image_size

    try:
        if out_video is not None and out_jsonl is not None:
            atomic_write(
                out_jsonl, lambda j: atomic_write(out_video, lambda v: run(v, j), fsync=False), fsync=False
            )
        elif out_video is not None:
            atomic_write(out_video, lambda v: run(v, None), fsync=False)
        elif out_jsonl is not None:
            atomic_write(out_jsonl, lambda j: run(None, j), fsync=False)
        else:
            run(None, None)
    except OSError as e:
        if isinstance(e, GhostdetError):
            raise
        failed = getattr(e, "filename", None) or out_video or out_jsonl
        raise write_failure(failed, e) from e
    finally:
        bar.close()
        container.close()
    result.seconds = time.perf_counter() - start
    if result.error is not None:
        predictor.skipped.append(f"{src} (frames from {len(result.frames)})")
    if log is not None:
        n_det = sum(len(d) for d in result.frames)
        wrote = [str(p) for p in (out_video, out_jsonl) if p is not None]
        note = f"; {result.error}" if result.error else ""
        log(
            f"{src}: {len(result.frames)} frame(s), {n_det} detection(s) >= {predictor.score_threshold:g}, "
            f"{result.frames_per_second:.1f} frames/s{'; wrote ' + ', '.join(wrote) if wrote else ''}{note}"
        )
    return result
