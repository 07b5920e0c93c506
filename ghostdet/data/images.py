"""Opening image files: the one place every reader of the project decodes an image.

Training (:class:`ghostdet.data.CocoDetection`, the classification ImageFolder), evaluation
(:class:`ghostdet.evaluation.evaluate.CocoImageList`), inference and the visualisation tool all
call :func:`open_rgb` (or :func:`read_rgb_array`), so they apply the same three rules:

* **Decoding**: the file is decoded fully at once (a truncated file fails here, not later) and
  converted to 8-bit RGB: grayscale, palette, CMYK and RGBA (alpha dropped) through PIL,
  16-bit and 32-bit integer / float grayscale scaled to 0-255 (full scale 65535 for 16-bit
  modes, else 255 unless a value exceeds it). PIL's global ``LOAD_TRUNCATED_IMAGES`` is never
  touched.
* **Size**: an image of more than :func:`pixel_limit` pixels (width x height) is refused without
  being decoded. The limit is PIL's decompression-bomb error threshold, twice
  ``PIL.Image.MAX_IMAGE_PIXELS`` (178,956,970 pixels by default), read at call time: raise
  ``PIL.Image.MAX_IMAGE_PIXELS`` (or set it to ``None``, no limit) before reading larger images.
  Images between ``MAX_IMAGE_PIXELS`` and the limit are read (PIL warns about them with its
  own ``DecompressionBombWarning``).
* **EXIF orientation**, :func:`choose_orientation`: with no expected size (inference on plain
  image files, classification folders) the EXIF orientation tag is applied, giving the image
  as viewers show it. With the ``(width, height)`` of a detection annotation file, the boxes
  were drawn on whichever orientation has that size, so that one is used: the displayed
  (EXIF-applied) image when its size matches, else the stored pixels when theirs match (a
  warning names the file: its annotations ignore the tag), else the image is refused as a
  size mismatch. COCO's own images carry no orientation tags that change their size, and
  annotation tools usually show (and annotate) the displayed image; when both orientations
  have the annotated size (180-degree and mirror tags, square images) the size cannot tell,
  and the displayed image is used.

Every failure is one exception type, :class:`ImageReadError` (an ``OSError``), naming the file
and with ``reason`` ``"unreadable"``, ``"too_large"`` or ``"size_mismatch"``. The datasets turn it
into a counted skip (a :class:`~ghostdet.data.coco.BadImageWarning` naming the file and a
``None`` item their collate functions drop); ``tools/infer.py`` reports the file and goes on
with the others.
"""

from __future__ import annotations

import re
import struct
import warnings
from os import PathLike

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from ghostdet.errors import GhostdetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "EXIF_ORIENTATION",
    "ImageReadError",
    "choose_orientation",
    "displayed_size",
    "open_rgb",
    "pixel_limit",
    "read_rgb_array",
    "read_rgb_tensor",
]

#: The EXIF tag number of the orientation (1 = as stored; 5-8 swap width and height).
EXIF_ORIENTATION = 0x0112

#: What PIL and its plugins raise on a missing, truncated, corrupt or oversized file.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


class ImageReadError(GhostdetError, OSError):
    """An image file that cannot be used; the message names the file.

    Attributes:
        path: the file.
        reason: ``"unreadable"`` (missing, not an image, truncated, corrupt), ``"too_large"``
            (more than :func:`pixel_limit` pixels) or ``"size_mismatch"`` (neither orientation
            has the size the annotations give).
    """

    def __init__(self, message: str, path: str | PathLike | None = None, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


#: File extensions taken as images when a folder or glob is expanded.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def pixel_limit() -> int | None:
    """The most pixels (width x height) an image may have: ``2 * PIL.Image.MAX_IMAGE_PIXELS``.

    Read at call time, so a program (or a test) that changes ``PIL.Image.MAX_IMAGE_PIXELS`` moves
    the limit; ``None`` when PIL's limit is disabled (``MAX_IMAGE_PIXELS = None``).
    """
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def displayed_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """``(width, height)`` of an image of stored ``size`` once its EXIF ``orientation`` is applied.

    Args:
        size: stored ``(width, height)``.
        orientation: the EXIF orientation value (5-8 transpose the image; others keep its size).
    """
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else (size[0], size[1])


def choose_orientation(
    stored: tuple[int, int], displayed: tuple[int, int], expected: tuple[int, int] | None
) -> bool | None:
    """Whether to apply the EXIF orientation (the rule of the module docstring).

    Args:
        stored: ``(width, height)`` of the stored pixels.
        displayed: ``(width, height)`` with the EXIF orientation applied.
        expected: ``(width, height)`` the annotations give, or ``None`` (no annotations).

    Returns:
        ``True``: apply it (no expected size, or the displayed size is the expected one);
        ``False``: use the stored pixels (only they have the expected size); ``None``: neither
        orientation has the expected size.
    """
    if expected is None or tuple(displayed) == tuple(expected):
        return True
    if tuple(stored) == tuple(expected):
        return False
    return None


def _too_large(path: str | PathLike, what: str, limit: int | None) -> ImageReadError:
    return ImageReadError(
        f"image too large: {path} is {what}, above the limit of {limit} pixels (2 x "
        "PIL.Image.MAX_IMAGE_PIXELS, the decompression-bomb guard); raise PIL.Image.MAX_IMAGE_PIXELS "
        "to read it",
        path,
        "too_large",
    )


def _check_pixels(path: str | PathLike, size: tuple[int, int]) -> None:
    limit = pixel_limit()
    pixels = int(size[0]) * int(size[1])
    if limit is not None and pixels > limit:
        raise _too_large(path, f"{size[0]}x{size[1]} = {pixels} pixels", limit)


def _too_large_from_pil(path: str | PathLike, error: Exception) -> ImageReadError:
    found = re.search(r"\((\d+) pixels\)", str(error))  # PIL: "Image size (N pixels) exceeds limit ..."
    return _too_large(path, f"{found.group(1)} pixels" if found else "too large", pixel_limit())


def _size_mismatch(
    path: str | PathLike,
    stored: tuple[int, int],
    displayed: tuple[int, int],
    expected: tuple[int, int] | None,
) -> ImageReadError:
    turned = f" ({displayed[0]}x{displayed[1]} with its EXIF orientation)" if displayed != stored else ""
    want = "?" if expected is None else f"width {expected[0]}, height {expected[1]}"
    return ImageReadError(
        f"image size mismatch: {path} is {stored[0]}x{stored[1]} pixels{turned} but the annotations "
        f"give {want}; its boxes would not match its pixels",
        path,
        "size_mismatch",
    )


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB copy of ``img`` (high-bit-depth grayscale scaled to 0-255, alpha dropped)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0.0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    return img.convert("RGB")


def open_rgb(path: str | PathLike, expected_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image file to an 8-bit RGB PIL image, with the project's size and EXIF rules.

    Args:
        path: image file.
        expected_size: ``(width, height)`` from a detection annotation file, or ``None`` for a
            plain image (the EXIF orientation is then always applied). See the module docstring.

    Returns:
        A decoded ``"RGB"`` image (no file handle kept open).

    Raises:
        ImageReadError: the file is missing, not an image, truncated or corrupt
            (``reason="unreadable"``), has more than :func:`pixel_limit` pixels (``"too_large"``),
            or neither its stored nor its displayed size is ``expected_size``
            (``"size_mismatch"``).
    """
    try:
        with Image.open(path) as raw:
            _check_pixels(path, raw.size)
            orientation = raw.getexif().get(EXIF_ORIENTATION, 1)
            if not isinstance(orientation, int) or not 1 <= orientation <= 8:
                orientation = 1  # absent or invalid tag: nothing to apply (as ImageOps.exif_transpose)
            displayed = displayed_size(raw.size, orientation)
            expected = None if expected_size is None else (int(expected_size[0]), int(expected_size[1]))
            apply = choose_orientation(raw.size, displayed, expected)
            if apply is None:
                raise _size_mismatch(path, raw.size, displayed, expected)
            raw.load()  # decode fully now: truncated files fail here
            if apply and orientation != 1:
                img = ImageOps.exif_transpose(raw)
            else:
                img = raw
                if orientation != 1 and displayed != raw.size:
                    warnings.warn(
                        f"{path}: EXIF orientation {orientation} would turn the image to "
                        f"{displayed[0]}x{displayed[1]}, but the annotations give its stored size "
                        f"{raw.size[0]}x{raw.size[1]}; using the stored pixels",
                        stacklevel=2,
                    )
            rgb = _to_rgb(img)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise _too_large_from_pil(path, e) from None
    except _DECODE_ERRORS as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise ImageReadError(f"cannot read image {path}: {detail}", path, "unreadable") from None
    return rgb


def read_rgb_array(path: str | PathLike, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """:func:`open_rgb` as an ``(H, W, 3)`` uint8 array (same arguments and errors)."""
    return np.array(open_rgb(path, expected_size), dtype=np.uint8)


def read_rgb_tensor(path: str | PathLike, expected_size: tuple[int, int] | None = None) -> Tensor:
    """:func:`open_rgb` as a float32 ``(3, H, W)`` tensor in ``[0, 1]`` (same arguments and errors)."""
    arr = read_rgb_array(path, expected_size)
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
