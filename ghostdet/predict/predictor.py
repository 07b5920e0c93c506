"""Predicting with a trained detector from Python: :class:`Predictor`.

A :class:`Predictor` loads a detector once (:func:`ghostdet.models.loading.load_detector`) and
runs it on whatever holds images::

    predictor = Predictor("runs/retinanet/best.pth", score_threshold=0.4, batch_size=8)
    for det in predictor.predict(["street.jpg", "photos/", frame_array, pil_image, "clip.mp4"]):
        print(det.source, det.names, det.scores)

Inputs: image files, folders (their image files, not recursive), glob patterns, PIL images,
``(H, W, 3)`` uint8 RGB numpy arrays, ``(3, H, W)`` float tensors in ``[0, 1]``, and video files
(by extension, :data:`VIDEO_EXTENSIONS`: every frame is an image; needs PyAV, see
:mod:`ghostdet.predict.video`). Each readable image gives one :class:`Detections`; unreadable
ones are reported (one warning each) and listed in :attr:`Predictions.skipped`.

Batching: images go through the detector ``batch_size`` at a time (torchvision detectors take a
list of images of different sizes). A batch only holds images that the detector pads to the same
input size, so that every image's detections are those it gets alone: a larger padded canvas
would change the features along the image's right and bottom edges.

Runtimes: ``runtime`` picks how the detector runs, by :func:`ghostdet.deploy.compile`: ``"auto"``
(the default: on the CPU the fastest installed runtime, measured on the first images; on a GPU
eager PyTorch), ``"eager"`` (PyTorch as it is, any device), ``"torch"`` (alias ``"deploy"``: the
fused CPU inference mode), ``"onnxruntime"`` or ``"openvino"``. A runtime is a small
adapter (:class:`Runtime`): a callable from a list of ``(3, H, W)`` float images to
torchvision-style dicts (``boxes``, ``scores``, ``labels``); :func:`register_runtime` adds one.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ghostdet.errors import ArgumentError, InputError, one_line
from ghostdet.models.loading import LoadedDetector, configure_postprocess, load_detector
from ghostdet.predict.drawing import draw_detections
from ghostdet.utils.checkpoint_io import CheckpointReadError, read_checkpoint
from ghostdet.utils.devices import resolve_device

__all__ = [
    "VIDEO_EXTENSIONS",
    "CompiledRuntime",
    "Detections",
    "Predictions",
    "Predictor",
    "Runtime",
    "SkippedInputWarning",
    "available_runtimes",
    "read_best_threshold",
    "register_runtime",
]

#: File extensions read as videos (every frame an image).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")

ImageInput = Union[str, PathLike, Image.Image, np.ndarray, Tensor]


class SkippedInputWarning(UserWarning):
    """An input that could not be read as an image was skipped (the message names it)."""


# ----------------------------------------------------------------------------- results
@dataclass
class Detections:
    """What a detector found in one image.

    Attributes:
        boxes: ``(N, 4)`` float32 boxes, ``x1, y1, x2, y2`` pixels of the input image.
        scores: ``(N,)`` float32 scores, highest first.
        labels: ``(N,)`` int64 model labels.
        names: class name of each box.
        category_ids: dataset category id of each box (the label when the checkpoint records
            no mapping).
        source: the image file (as a string), or the position of an in-memory image in the
            inputs; for a video frame, the video file.
        image_size: ``(height, width)`` of the input image.
        frame: the frame number (from 0) of a video frame, else ``None``.
        time: the frame's presentation time in seconds (video only, when known).
        image: the in-memory input itself (PIL image, array or tensor) for :meth:`draw`; ``None``
            for files, which :meth:`draw` reads again.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    names: list[str]
    category_ids: list[int]
    source: str | int
    image_size: tuple[int, int]
    frame: int | None = None
    time: float | None = None
    image: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.scores.numel())

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return self.image_size[0]

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return self.image_size[1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``source`` (``file`` for a file), ``frame``/``time`` for a video frame,
        ``width``, ``height`` and ``detections`` (``label``, ``category_id``, ``name``, ``score``,
        ``box`` xyxy pixels), as ``ghostdet predict`` writes them."""
        out: dict[str, Any] = (
            {"file": self.source} if isinstance(self.source, str) else {"index": self.source}
        )
        if self.frame is not None:
            out["frame"] = self.frame
            out["time"] = self.time
        out.update(width=self.width, height=self.height)
        out["detections"] = [
            {"label": lbl, "category_id": cat, "name": name, "score": s, "box": box}
            for box, s, lbl, name, cat in zip(
                self.boxes.tolist(), self.scores.tolist(), self.labels.tolist(), self.names, self.category_ids
            )
        ]
        return out

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string (one line unless ``indent`` is given)."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_coco(self, image_id: int | None = None) -> list[dict[str, Any]]:
        """The detections as COCO results entries (``image_id``, ``category_id``, ``bbox`` as
        ``[x, y, w, h]``, ``score``), as ``pycocotools``' ``loadRes`` and ``ghostdet eval
        --results`` read them.

        Args:
            image_id: the image's id in the ground truth. Default: the frame number of a video
                frame, or the position of an in-memory image; an image file needs one.

        Raises:
            ArgumentError: no ``image_id`` for an image file (``argument="image_id"``).
        """
        if image_id is None:
            if self.frame is not None:
                image_id = self.frame
            elif isinstance(self.source, int):
                image_id = self.source
            else:
                raise ArgumentError(
                    f"give the image_id of {self.source} in the ground truth", argument="image_id"
                )
        return [
            {
                "image_id": int(image_id),
                "category_id": int(cat),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": s,
            }
            for (x1, y1, x2, y2), s, cat in zip(self.boxes.tolist(), self.scores.tolist(), self.category_ids)
        ]

    def draw(self, image: ImageInput | None = None) -> Image.Image:
        """The image with the boxes, class names and scores drawn (:mod:`ghostdet.predict.drawing`).

        Args:
            image: the image the detections are of. Default: the in-memory input, or the image
                file read again (a video frame must be given).

        Raises:
            ArgumentError: a video frame and no ``image`` (``argument="image"``).
        """
        if image is None:
            image = self.image
        if image is None:
            if self.frame is not None or not isinstance(self.source, str):
                raise ArgumentError("give the image of this video frame to draw on", argument="image")
            image = self.source
        tensor = image if isinstance(image, Tensor) else _to_tensor(image, "image")
        if tensor.dtype != torch.uint8:
            tensor = _checked_float(tensor, "image")
        names = {int(lbl): n for lbl, n in zip(self.labels.tolist(), self.names)}
        drawn = draw_detections(tensor, self.boxes, self.labels.tolist(), self.scores.tolist(), names)
        return Image.fromarray(drawn.permute(1, 2, 0).numpy())


class Predictions(list):
    """The :class:`Detections` of :meth:`Predictor.predict`, in input order.

    Attributes:
        skipped: the inputs that could not be read (file paths, ``"#index"`` for in-memory
            images, ``"FILE (frames from N)"`` for a video that broke off).
    """

    def __init__(self, items: Iterable[Detections] = (), skipped: Sequence[str] = ()) -> None:
        super().__init__(items)
        self.skipped: list[str] = list(skipped)

    def to_coco(self, image_ids: Mapping[Any, int] | None = None) -> list[dict[str, Any]]:
        """Every image's :meth:`Detections.to_coco` entries in one list.

        Args:
            image_ids: ``source -> image_id`` (e.g. file name -> id of the ground truth); images
                missing from it use :meth:`Detections.to_coco`'s default.
        """
        ids = image_ids or {}
        return [e for d in self for e in d.to_coco(ids.get(d.source) if d.frame is None else None)]


# ----------------------------------------------------------------------------- runtimes
def padded_input_size(model: nn.Module, height: int, width: int) -> tuple[int, int]:
    """The ``(H, W)`` a torchvision detector's transform resizes and pads an image to (eval mode).

    Images with the same padded size can share a batch without changing each other's results.
    A model without a torchvision ``transform`` gives the image's own size.
    """
    t = getattr(model, "transform", None)
    if t is None or not hasattr(t, "min_size") or not hasattr(t, "size_divisible"):
        return height, width
    fixed = getattr(t, "fixed_size", None)
    if fixed:
        h, w = int(fixed[1]), int(fixed[0])
    else:
        # as torchvision's _resize_image_and_masks computes it (float32 scale, floor of size * scale)
        shape = torch.tensor([height, width], dtype=torch.float32)
        scale = torch.min(float(t.min_size[-1]) / shape.min(), float(t.max_size) / shape.max()).item()
        h, w = math.floor(height * scale), math.floor(width * scale)
    d = int(t.size_divisible)
    return int(math.ceil(h / d) * d), int(math.ceil(w / d) * d)


class Runtime:
    """How a detector runs: called with a list of ``(3, H, W)`` float images in ``[0, 1]`` (CPU
    tensors, any sizes), returns one torchvision-style dict per image (``boxes`` ``(N, 4)`` xyxy
    pixels of that image, ``scores``, ``labels``; CPU tensors).

    Subclasses set :attr:`name` and implement :meth:`__call__`; :meth:`batch_key` says which
    images may share one call.

    Args:
        detector: the loaded detector (its score threshold already set).
        device: where it runs.
    """

    name = "base"

    def __init__(self, detector: LoadedDetector, device: torch.device) -> None:
        self.detector = detector
        self.device = device

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        raise NotImplementedError

    def batch_key(self, height: int, width: int) -> Hashable:
        """Images with equal keys may share a call; default: images of one size."""
        return height, width


class CompiledRuntime(Runtime):
    """A detector compiled by :func:`ghostdet.deploy.compile` for one runtime.

    ``eager`` (the PyTorch model as it is, any device), ``torch`` (the fused deploy mode, CPU),
    ``onnxruntime`` and ``openvino`` (the ONNX export, CPU), or ``auto``: on the CPU, the fastest
    of those installed, measured on the first images it is given (it says which it picked); on a
    GPU, eager PyTorch. The ONNX runtimes take one image per call, the PyTorch ones a batch.

    Args:
        detector: the loaded detector (its score threshold already set).
        device: where it runs.
        name: the runtime.
    """

    def __init__(self, detector: LoadedDetector, device: torch.device, name: str = "eager") -> None:
        super().__init__(detector, device)
        if name != "eager" and device.type != "cpu":
            raise InputError(
                f"runtime {name!r} runs on the CPU, not {device}: use device cpu (or auto), or runtime eager",
                argument="runtime",
            )
        self.name = name
        self.model = detector.model.eval().to(device)
        self.compiled: Any = None
        if name in ("eager", "torch"):  # nothing to measure: compile now (it needs no example)
            self.compiled = self._compile(None)

    def _compile(self, example: list[Tensor] | None) -> Any:
        from ghostdet.deploy.runtimes import compile_model

        example = example if example is not None else [torch.zeros(3, 64, 64)]
        chosen = "eager" if self.device.type != "cpu" else self.name
        log = self.say if chosen == "auto" else None
        return compile_model(self.model, [im.to(self.device) for im in example], runtime=chosen, log=log)

    def say(self, line: str) -> None:
        print(line, flush=True)  # information, beside the per-image lines (stderr is for problems)

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        if self.compiled is None:
            self.compiled = self._compile(images[:1])
            self.name = self.compiled.runtime if self.name != "auto" else f"auto:{self.compiled.runtime}"
        with torch.inference_mode():
            outs = self.compiled([im.to(self.device) for im in images])
        return [{k: v.cpu() for k, v in o.items()} for o in outs]

    def batch_key(self, height: int, width: int) -> Hashable:
        return padded_input_size(self.model, height, width)


def _compiled(name: str) -> RuntimeFactory:
    return lambda detector, device: CompiledRuntime(detector, device, name)


RuntimeFactory = Callable[[LoadedDetector, torch.device], Runtime]
#: ``runtime`` names: those of :func:`ghostdet.deploy.compile` (``deploy`` is ``torch``, the fused mode)
_RUNTIMES: dict[str, RuntimeFactory] = {
    n: _compiled(n) for n in ("auto", "eager", "torch", "onnxruntime", "openvino")
}
_RUNTIMES["deploy"] = _compiled("torch")
_CPU_ONLY = {"torch", "deploy", "onnxruntime", "openvino"}


def register_runtime(name: str, factory: RuntimeFactory, cpu_only: bool = False) -> None:
    """Make ``runtime=name`` available to :class:`Predictor`.

    Args:
        name: the runtime's name.
        factory: called with the :class:`~ghostdet.models.loading.LoadedDetector` and the device;
            returns a :class:`Runtime`.
        cpu_only: the runtime runs on the CPU only (``device="auto"`` then means the CPU).
    """
    _RUNTIMES[name] = factory
    if cpu_only:
        _CPU_ONLY.add(name)


def available_runtimes() -> tuple[str, ...]:
    """The names ``Predictor(runtime=...)`` accepts."""
    return tuple(_RUNTIMES)


# ----------------------------------------------------------------------------- "best" threshold
def _best_f1_threshold(doc: Any) -> float | None:
    try:
        value = doc["best_f1"]["global"]["threshold"]
    except (KeyError, TypeError, IndexError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        return None
    return float(value)


def read_best_threshold(
    checkpoint: str | PathLike | None = None, thresholds_from: str | PathLike | None = None
) -> float:
    """The global best-F1 score threshold recorded by evaluation.

    Read from ``best_f1`` -> ``global`` -> ``threshold`` of the ``metrics.json`` that ``ghostdet
    eval`` (``tools/eval_det.py``) writes, given as ``thresholds_from``; without it, from the
    checkpoint's ``metrics`` entry.

    Args:
        checkpoint: the detector's checkpoint.
        thresholds_from: an evaluation ``metrics.json`` (takes precedence).

    Raises:
        InputError: the file is missing or not JSON (``argument="thresholds_from"``), or no
            threshold is recorded (``argument="score_threshold"``: run the evaluation first or
            give a number).
    """
    hint = "run the evaluation (ghostdet eval) first and pass its metrics.json, or give a number"
    if thresholds_from is not None:
        path = Path(thresholds_from).expanduser()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"metrics file not found: {path}", argument="thresholds_from") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(
                f"cannot read {path} as JSON: {one_line(e)}", argument="thresholds_from"
            ) from None
        value = _best_f1_threshold(doc)
        if value is None:
            raise InputError(
                f"score threshold 'best': {path} records no best-F1 threshold "
                f"(best_f1.global.threshold); {hint}",
                argument="score_threshold",
            )
        return value
    where = "no checkpoint was given"
    if checkpoint is not None:
        try:
            ckpt = read_checkpoint(Path(checkpoint).expanduser())
        except CheckpointReadError:
            ckpt = None  # loading the detector reports it
        value = _best_f1_threshold(ckpt.get("metrics")) if isinstance(ckpt, Mapping) else None
        if value is not None:
            return value
        where = f"the checkpoint {checkpoint} records no best-F1 threshold"
    raise InputError(f"score threshold 'best': {where}; {hint}", argument="score_threshold")


def _score_threshold(value: Any, checkpoint: Any, thresholds_from: Any) -> float:
    if isinstance(value, str) and value.strip().lower() == "best":
        return read_best_threshold(checkpoint, thresholds_from)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ArgumentError(
            f"score_threshold must be a number in [0, 1] or 'best', got {value!r}", argument="score_threshold"
        )
    return float(value)


# ----------------------------------------------------------------------------- inputs
def _checked_float(t: Tensor, what: str) -> Tensor:
    t = t.detach().float()
    if t.numel() and (not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1):
        raise ArgumentError(f"{what}: a float image tensor must hold values in [0, 1]", argument="inputs")
    return t


def _to_tensor(obj: Any, what: str) -> Tensor:
    """An in-memory image (or an image file) as a ``(3, H, W)`` float tensor in ``[0, 1]``."""
    if isinstance(obj, (str, PathLike)):
        from ghostdet.data.images import read_rgb_tensor

        return read_rgb_tensor(obj)
    if isinstance(obj, Image.Image):
        obj = np.asarray(obj.convert("RGB"))
    if isinstance(obj, np.ndarray):
        if obj.dtype != np.uint8 or not (obj.ndim == 2 or (obj.ndim == 3 and obj.shape[2] == 3)):
            raise ArgumentError(
                f"{what}: a numpy image must be (H, W, 3) RGB or (H, W) grey uint8, got {obj.dtype} "
                f"{tuple(obj.shape)}",
                argument="inputs",
            )
        arr = np.repeat(obj[:, :, None], 3, axis=2) if obj.ndim == 2 else obj
        if not (arr.flags.writeable and arr.flags.c_contiguous):
            arr = np.array(arr, copy=True)  # torch wants writable memory (it is only read)
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
    if isinstance(obj, Tensor):
        if obj.ndim != 3 or obj.shape[0] != 3:
            raise ArgumentError(
                f"{what}: an image tensor must be (3, H, W), got {tuple(obj.shape)}", argument="inputs"
            )
        if obj.dtype == torch.uint8:
            return obj.detach().cpu().float().div_(255.0)
        return _checked_float(obj.cpu(), what)
    raise ArgumentError(
        f"{what}: cannot predict on a {type(obj).__name__}; give image paths, folders, globs, PIL images, "
        "numpy HWC uint8 arrays, CHW float tensors or video files",
        argument="inputs",
    )


def is_video_path(item: Any) -> bool:
    """Whether ``item`` is a path whose extension is a video's (:data:`VIDEO_EXTENSIONS`)."""
    return isinstance(item, (str, PathLike)) and Path(item).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class _Item:
    source: str | int
    image: Tensor | None = None
    keep: Any = None  # the in-memory input (Detections.image)
    frame: int | None = None
    time: float | None = None
    error: str | None = None  # why it was skipped


def _expand(inputs: Any) -> list[tuple[str, Any]]:
    """Inputs as ``(kind, value)``: ``("file", Path)``, ``("video", Path)``, ``("object", (index, obj))``.

    Paths are expanded (and missing ones refused) before anything is decoded.
    """
    from ghostdet.predict.infer import collect_images

    if isinstance(inputs, (str, PathLike, Image.Image)):
        inputs = [inputs]
    elif isinstance(inputs, (np.ndarray, Tensor)):
        inputs = list(inputs) if inputs.ndim == 4 else [inputs]
    elif not isinstance(inputs, Iterable):
        raise ArgumentError(f"cannot predict on a {type(inputs).__name__}", argument="inputs")
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(inputs):
        if isinstance(item, (str, PathLike)):
            p = Path(item).expanduser()
            if is_video_path(p) and p.is_file():
                out.append(("video", p))
            else:
                out.extend(("file", f) for f in collect_images([item]))
        else:
            out.append(("object", (i, item)))
    if not out:
        raise InputError("no inputs given", argument="inputs")
    return out


def _items(entries: list[tuple[str, Any]]) -> Iterator[_Item]:
    from ghostdet.data.images import ImageReadError, read_rgb_tensor

    for kind, value in entries:
        if kind == "file":
            try:
                yield _Item(str(value), read_rgb_tensor(value))
            except (ImageReadError, OSError) as e:
                yield _Item(str(value), error=one_line(e))
        elif kind == "video":
            from ghostdet.predict.video import VideoReadError, iter_frames

            n = 0
            try:
                for n, t, arr in iter_frames(value):
                    image = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
                    yield _Item(str(value), image, frame=n, time=t)
                    n += 1
            except VideoReadError as e:
                where = f"{value} (frames from {n})" if n else str(value)
                yield _Item(where, error=one_line(e))
        else:
            index, obj = value
            yield _Item(index, _to_tensor(obj, f"input #{index}"), keep=obj)


# ----------------------------------------------------------------------------- predictor
class Predictor:
    """A trained detector ready to predict on files, folders, arrays, tensors and videos.

    Args:
        checkpoint: a ``ghostdet train`` checkpoint, or a loaded
            :class:`~ghostdet.models.loading.LoadedDetector` (its score threshold is changed); or
            ``None`` with ``model`` and ``weights``.
        runtime: how the detector runs: one of :func:`available_runtimes` (``"auto"``: the
            fastest measured here; ``"eager"``: PyTorch as it is; ``"torch"``/``"deploy"``:
            :func:`ghostdet.deploy.fuse`'s fused CPU mode; ``"onnxruntime"``, ``"openvino"``).
        device: ``"auto"`` (CUDA when available; the CPU for CPU-only runtimes), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.
        score_threshold: keep detections scoring at least this, a number in ``[0, 1]``, or
            ``"best"``: the best-F1 threshold evaluation recorded (:func:`read_best_threshold`).
        batch_size: images per detector call (see the module docstring).
        thresholds_from: the evaluation ``metrics.json`` that ``"best"`` reads.
        model: builder name or alias (instead of a checkpoint, with ``weights``).
        weights: weights file for ``model``.
        width: GhostNet width of ``model``.
        num_classes: classes incl. background of ``model``.
        min_size: override the detector's resize min size.
        max_size: override the detector's resize max size.
        max_detections: cap on detections per image (default: the detector's, 100).
        warn: called with one line per skipped input (default: a :class:`SkippedInputWarning`).

    Attributes:
        detector: the :class:`~ghostdet.models.loading.LoadedDetector`.
        runtime: the :class:`Runtime` that runs it.
        score_threshold: the threshold in use (a number, also when ``"best"`` was asked for).
        skipped: every input skipped so far (all calls).

    Raises:
        InputError: an unknown runtime (``argument="runtime"``), a bad device, checkpoint or
            weights, or no recorded threshold for ``"best"``.
        ArgumentError: a bad ``score_threshold`` or ``batch_size``.
    """

    def __init__(
        self,
        checkpoint: str | PathLike | LoadedDetector | None = None,
        runtime: str = "auto",
        device: str | torch.device | None = "auto",
        score_threshold: float | str = 0.5,
        batch_size: int = 1,
        *,
        thresholds_from: str | PathLike | None = None,
        model: str | None = None,
        weights: str | PathLike | None = None,
        width: float | None = None,
        num_classes: int | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        max_detections: int | None = None,
        warn: Callable[[str], Any] | None = None,
    ) -> None:
        if runtime not in _RUNTIMES:
            raise InputError(
                f"unknown runtime {runtime!r}: available are {', '.join(available_runtimes())}",
                argument="runtime",
            )
        self.batch_size = _batch_size(batch_size)
        if isinstance(device, torch.device):
            device = str(device)
        if runtime in _CPU_ONLY and device in (None, "auto"):
            device = "cpu"
        dev = resolve_device(device)
        source = checkpoint.source if isinstance(checkpoint, LoadedDetector) else checkpoint
        self.score_threshold = _score_threshold(score_threshold, source, thresholds_from)
        if isinstance(checkpoint, LoadedDetector):
            detector = checkpoint
        else:
            detector = load_detector(
                checkpoint, model, weights, width, num_classes, min_size, max_size, device=dev
            )
        # the model's own score cut becomes the requested one (also below its default 0.05)
        configure_postprocess(detector.model, self.score_threshold, max_detections)
        self.detector = detector
        self.device = dev
        self.runtime: Runtime = _RUNTIMES[runtime](detector, dev)
        self.skipped: list[str] = []
        self._warn = warn

    def __repr__(self) -> str:
        return (
            f"Predictor({self.detector.name}, runtime={self.runtime.name!r}, device={str(self.device)!r}, "
            f"score_threshold={self.score_threshold:g}, batch_size={self.batch_size})"
        )

    @property
    def category_names(self) -> dict[int, str]:
        """Model label -> class name."""
        return self.detector.category_names

    def _skip(self, what: str, why: str) -> None:
        self.skipped.append(what)
        msg = f"skipping {what}: {why}" if what not in why else f"skipping: {why}"
        if self._warn is not None:
            self._warn(msg)
        else:
            warnings.warn(msg, SkippedInputWarning, stacklevel=4)

    def _detections(self, out: Mapping[str, Tensor], item: _Item) -> Detections:
        keep = out["scores"] >= self.score_threshold
        boxes, scores, labels = (out[k][keep] for k in ("boxes", "scores", "labels"))
        mapping = self.detector.label_to_cat_id
        lbls = [int(v) for v in labels.tolist()]
        assert item.image is not None
        return Detections(
            boxes=boxes.float(),
            scores=scores.float(),
            labels=labels.long(),
            names=[self.detector.label_name(v) for v in lbls],
            category_ids=[mapping.get(v, v) if mapping else v for v in lbls],
            source=item.source,
            image_size=(int(item.image.shape[1]), int(item.image.shape[2])),
            frame=item.frame,
            time=item.time,
            image=item.keep,
        )

    def predict_batch(
        self, images: Sequence[Any], sources: Sequence[str | int] | None = None
    ) -> list[Detections]:
        """Run the detector once on ``images``, whatever their sizes (no grouping, no skipping).

        Args:
            images: images as :meth:`predict` takes them in memory (tensors, arrays, PIL images).
            sources: each image's :attr:`Detections.source` (default: its position).

        Returns:
            One :class:`Detections` per image.
        """
        names = list(range(len(images))) if sources is None else list(sources)
        items = [
            _Item(s, _to_tensor(im, f"image #{i}"), keep=im) for i, (s, im) in enumerate(zip(names, images))
        ]
        return self._run(items)

    def _run(self, items: Sequence[_Item]) -> list[Detections]:
        if not items:
            return []
        outs = self.runtime([it.image for it in items])
        return [self._detections(o, it) for o, it in zip(outs, items)]

    def predict(self, inputs: Any, batch_size: int | None = None) -> Predictions:
        """Detect objects in every image of ``inputs``.

        Args:
            inputs: an image file, folder, glob pattern, PIL image, ``(H, W, 3)`` uint8 RGB
                array, ``(3, H, W)`` float tensor in ``[0, 1]`` (a 4-D array or tensor is a stack
                of images) or video file, or a list mixing them.
            batch_size: images per detector call (default: the predictor's).

        Returns:
            :class:`Predictions`: one :class:`Detections` per readable image (a video gives
            one per frame), in input order; ``skipped`` lists the unreadable inputs, each also
            reported by a warning.

        Raises:
            InputError: a path that matches nothing, or no inputs.
            ArgumentError: an object that is not an image (a wrong type, shape or value range).
        """
        skipped: list[str] = []
        results = {slot: det for slot, det, _ in self.stream(inputs, batch_size, skipped)}
        return Predictions((results[i] for i in sorted(results)), skipped)

    def stream(
        self, inputs: Any, batch_size: int | None = None, skipped: list[str] | None = None
    ) -> Iterator[tuple[int, Detections, Tensor]]:
        """:meth:`predict` one batch at a time, for callers that use each image as it is done.

        Args:
            inputs: as :meth:`predict` takes them.
            batch_size: images per detector call (default: the predictor's).
            skipped: a list the unreadable inputs are appended to (they are also warned about
                and added to :attr:`skipped`).

        Yields:
            ``(position, detections, image)``: the image's position among the readable ones,
            its :class:`Detections` and the ``(3, H, W)`` float image the detector saw. Batches
            finish in the order they fill, so positions may come out of order.

        Raises:
            InputError: a path that matches nothing, or no inputs.
            ArgumentError: an object that is not an image.
        """
        return self._stream(_expand(inputs), batch_size, skipped)

    def stream_files(
        self, paths: Sequence[str | PathLike], skipped: list[str] | None = None, batch_size: int | None = None
    ) -> Iterator[tuple[int, Detections, Tensor]]:
        """:meth:`stream` over image files taken as they are: no folder or glob expansion, no
        video, and a missing file is skipped like an unreadable one (same arguments)."""
        return self._stream([("file", Path(p)) for p in paths], batch_size, skipped)

    def _stream(
        self, entries: list[tuple[str, Any]], batch_size: int | None, skipped: list[str] | None
    ) -> Iterator[tuple[int, Detections, Tensor]]:
        size = self.batch_size if batch_size is None else _batch_size(batch_size)
        pending: dict[Hashable, list[tuple[int, _Item]]] = {}
        held = 0

        def run(key: Hashable) -> list[tuple[int, Detections, Tensor]]:
            group = pending.pop(key)
            dets = self._run([it for _, it in group])
            return [(slot, det, it.image) for (slot, it), det in zip(group, dets)]  # type: ignore[misc]

        slot = 0
        for item in _items(entries):
            if item.error is not None:
                what = item.source if isinstance(item.source, str) else f"#{item.source}"
                if skipped is not None:
                    skipped.append(what)
                self._skip(what, item.error)
                continue
            assert item.image is not None
            key = self.runtime.batch_key(int(item.image.shape[1]), int(item.image.shape[2]))
            pending.setdefault(key, []).append((slot, item))
            slot += 1
            held += 1
            if len(pending[key]) >= size:
                done = run(key)
            elif held > 4 * size:  # many sizes: run the fullest group rather than hold them all
                done = run(max(pending, key=lambda k: len(pending[k])))
            else:
                continue
            held -= len(done)
            yield from done
        for key in list(pending):
            yield from run(key)

    def predict_video(
        self,
        source: str | PathLike,
        output_video: str | PathLike | None = None,
        output_jsonl: str | PathLike | None = None,
        **kwargs: Any,
    ) -> Any:
        """:func:`ghostdet.predict.video.predict_video` with this predictor (same arguments)."""
        from ghostdet.predict.video import predict_video

        return predict_video(self, source, output_video, output_jsonl, **kwargs)


def _batch_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(f"batch_size must be an integer >= 1, got {value!r}", argument="batch_size")
    return value
