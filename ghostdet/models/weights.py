"""Loading pretrained GhostNet weights: local files, URLs and the authors' ImageNet checkpoint.

Loading is always strict and safe: files are read with ``weights_only=True`` (or safetensors),
and any missing, unexpected or shape-mismatched key raises one :class:`WeightsMismatchError`
that lists all of them. There is no silent partial load.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
from collections.abc import Iterable, Iterator, Mapping
from os import PathLike
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from ghostdet.checkpoint_io import read_checkpoint

__all__ = [
    "NotAStateDictError",
    "WeightsDownloadError",
    "WeightsMismatchError",
    "argument_context",
    "clean_state_dict",
    "download_weights",
    "load_ghostnet_weights",
    "load_state_dict_file",
    "load_strict",
    "resolve_weights",
]

_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
_WRAPPER_KEYS = ("state_dict_ema", "state_dict", "model")
_THOP_SUFFIXES = ("total_ops", "total_params")


class WeightsMismatchError(ValueError, RuntimeError):
    """A checkpoint does not match the model it is loaded into (bad input: a ``ValueError``)."""


class NotAStateDictError(TypeError, ValueError):
    """A checkpoint file holds something other than a dict of tensors."""


class WeightsDownloadError(OSError, RuntimeError):
    """Weights could not be downloaded (offline, bad URL); the message names the URL."""


@contextlib.contextmanager
def argument_context(name: str) -> Iterator[None]:
    """Tag the bad-weights errors raised inside with the argument they came from (``err.argument``).

    Builders wrap the loading of one argument's weights (``weights_backbone``, ``weights``) in it,
    so a tool can name its flag; the message itself is unchanged. An error already tagged keeps
    its tag.
    """
    try:
        yield
    except (ValueError, OSError) as e:
        if getattr(e, "argument", None) is None:
            e.argument = name
        raise


def _is_url(s: str) -> bool:
    return urlparse(s).scheme in ("http", "https")


def download_weights(url: str, progress: bool = True) -> Path:
    """Download ``url`` into the torch hub cache (``$TORCH_HOME/hub/checkpoints``) once.

    Args:
        url: http(s) address of a checkpoint.
        progress: show a download progress bar.

    Raises:
        WeightsDownloadError: the download failed (an ``OSError``), naming the URL and how to
            use a local file instead.
    """
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    cache_dir.mkdir(parents=True, exist_ok=True)
    filename = os.path.basename(urlparse(url).path) or "weights.pth"
    dst = cache_dir / filename
    if dst.is_file():
        return dst
    try:
        torch.hub.download_url_to_file(url, str(dst), progress=progress)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise WeightsDownloadError(
            f"could not download weights from {url} ({e}). If this machine is offline, download "
            f"the file elsewhere and pass its local path instead (e.g. /path/{filename}), "
            f"or place it at {dst}."
        ) from e
    return dst


def load_state_dict_file(path: str | PathLike) -> dict[str, Tensor]:
    """Read a checkpoint file without executing pickled code, and return a clean state dict.

    Accepts ``.safetensors`` and torch files (``weights_only=True``, see
    :func:`ghostdet.checkpoint_io.read_checkpoint`); unwraps ``state_dict``, ``state_dict_ema``
    and ``model`` wrappers, strips a ``module.`` prefix and drops thop's
    ``total_ops``/``total_params`` entries.

    Args:
        path: path of a ``.pth``/``.pt``/``.bin``/``.ckpt``/``.safetensors`` file.

    Raises:
        CheckpointReadError: the file is missing or unreadable (the message names it).
        NotAStateDictError / ValueError: the file holds no state dict (the message names it).
    """
    obj = read_checkpoint(path)
    try:
        return clean_state_dict(obj)
    except NotAStateDictError as e:
        raise NotAStateDictError(f"{path}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def clean_state_dict(obj: object) -> dict[str, Tensor]:
    """Unwrap common checkpoint containers and normalise key names.

    Args:
        obj: a state dict, or a dict holding one under ``state_dict_ema``, ``state_dict`` or
            ``model`` (first one found, in that order).
    """
    if not isinstance(obj, Mapping):
        raise NotAStateDictError(f"checkpoint holds a {type(obj).__name__}, expected a dict of tensors")
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
            obj = inner
            break
    out: dict[str, Tensor] = {}
    for k, v in obj.items():
        if not isinstance(v, Tensor):
            continue
        if k.rsplit(".", 1)[-1] in _THOP_SUFFIXES:
            continue
        if k.startswith("module."):
            k = k[len("module.") :]
        out[k] = v
    if not out:
        raise ValueError("checkpoint contains no tensors")
    return out


def resolve_weights(
    weights: str | PathLike, width: float, progress: bool = True, family: str = "ghostnet"
) -> Path:
    """Turn a ``weights`` argument into a local file path, downloading if needed.

    Args:
        weights: ``"imagenet"``, an http(s) URL or a local file path.
        width: the model's width multiplier (``"imagenet"`` exists only for published widths).
        progress: show a download progress bar.
        family: backbone family whose weights table ``"imagenet"`` refers to.
    """
    s = os.fspath(weights)
    if s.lower() == "imagenet":
        from ghostdet.models.family import get_family

        return download_weights(get_family(family).url(width), progress=progress)
    if _is_url(s):
        return download_weights(s, progress=progress)
    path = Path(s).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file not found: {path}. Expected 'imagenet', an http(s) URL or a local "
            f"file ({', '.join(_SUFFIXES)})."
        )
    return path


def load_strict(model: nn.Module, state_dict: Mapping[str, Tensor], skip: Iterable[str] = ()) -> None:
    """Load ``state_dict`` into ``model`` and fail loudly on any difference.

    Args:
        model: target module.
        state_dict: cleaned state dict.
        skip: key prefixes to leave out on both sides (e.g. ``("classifier.",)``).

    Raises:
        WeightsMismatchError: listing every missing, unexpected and shape-mismatched key.
    """
    skip = tuple(skip)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    given = {k: v for k, v in state_dict.items() if not k.startswith(skip)}
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(given)
        if own[k].shape != given[k].shape
    )
    if missing or unexpected or shapes:
        parts = [
            f"checkpoint does not match {type(model).__name__} "
            f"({len(given)} checkpoint keys, {len(own)} model keys)"
        ]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                parts.append(f"{title} ({len(keys)}): " + ", ".join(keys))
        raise WeightsMismatchError("\n  ".join(parts))
    model.load_state_dict(given, strict=False)


def load_ghostnet_weights(
    model: nn.Module,
    weights: str | PathLike,
    width: float,
    progress: bool = True,
    skip_classifier: bool | None = None,
    family: str = "ghostnet",
) -> None:
    """Load the weights of a backbone family's trunk (GhostNet by default) into it, strictly.

    The family's ``rename`` (see :class:`~ghostdet.models.family.BackboneFamily`) is applied to
    the file's state dict first.

    Args:
        model: the trunk or classifier (e.g. a :class:`~ghostdet.models.ghostnet.GhostNet`).
        weights: ``"imagenet"``, URL or local file.
        width: the model's width (for ``"imagenet"``).
        progress: show a download progress bar.
        skip_classifier: leave ``classifier.*`` out of loading. ``None`` skips it only when the
            checkpoint's classifier has a different number of classes than the model.
        family: backbone family of the model (for ``"imagenet"``).
    """
    from ghostdet.models.family import get_family

    state_dict = load_state_dict_file(resolve_weights(weights, width, progress=progress, family=family))
    rename = get_family(family).rename
    if rename is not None:
        state_dict = rename(state_dict)
    if skip_classifier is None:
        ck = state_dict.get("classifier.weight")
        own = model.state_dict().get("classifier.weight")
        skip_classifier = ck is not None and own is not None and ck.shape[0] != own.shape[0]
    try:
        load_strict(model, state_dict, skip=("classifier.",) if skip_classifier else ())
    except WeightsMismatchError as e:
        raise WeightsMismatchError(f"{weights}: {e}") from None
