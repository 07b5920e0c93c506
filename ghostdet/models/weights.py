"""Loading pretrained GhostNet weights: local files, URLs and the authors' ImageNet checkpoint.

Loading is always strict and safe: files are read with ``weights_only=True`` (or safetensors),
and any missing, unexpected or shape-mismatched key raises one :class:`WeightsMismatchError`
that lists all of them. There is no silent partial load.

Downloads go to the torch hub cache, keyed by the whole URL (:func:`cached_weights_path`), and
only complete files get there: a download is written to a temporary file and renamed into place
once every announced byte arrived and, where the sha256 is known (``sha256=``, or the family's
weights table), it matches. A cached file that cannot be read, or whose sha256 is wrong, is one
error line naming the file to delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping
from os import PathLike
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from ghostdet.errors import ArgumentError, CheckpointError, GhostdetError, InputError
from ghostdet.utils.checkpoint_io import read_checkpoint

__all__ = [
    "NotAStateDictError",
    "WeightsDownloadError",
    "WeightsMismatchError",
    "argument_context",
    "cached_weights_path",
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
_CHUNK = 1 << 16
_URL_KEY_DIGITS = 16

#: Seconds a download may wait for the server (to connect, or for the next bytes) before failing.
DOWNLOAD_TIMEOUT_S = 60.0


class WeightsMismatchError(CheckpointError, RuntimeError):
    """A checkpoint does not match the model it is loaded into (bad input: a ``ValueError``)."""


class NotAStateDictError(CheckpointError, TypeError):
    """A checkpoint file holds something other than a dict of tensors."""


class WeightsDownloadError(InputError, OSError, RuntimeError):
    """Weights could not be downloaded (offline, bad URL); the message names the URL."""


@contextlib.contextmanager
def argument_context(name: str, replaces: Iterable[str] = ("weights",)) -> Iterator[None]:
    """Tag the user errors raised inside with the argument they came from (``err.argument``).

    Builders wrap the loading of one argument's weights (``weights_backbone``, ``weights``) in it,
    so a tool can name its flag; the message itself is unchanged. An error tagged with another
    argument keeps its tag (``width``, say); one tagged with a name in ``replaces`` -- the
    ``weights`` parameter of :func:`load_ghostnet_weights`, which the argument was passed on
    as -- is tagged ``name`` instead.

    Args:
        name: the argument the weights came from.
        replaces: the names of inner parameters it was passed on as.
    """
    try:
        yield
    except GhostdetError as e:
        if e.argument is None or e.argument in replaces:
            e.argument = name
        raise


def _is_url(s: str) -> bool:
    return urlparse(s).scheme in ("http", "https")


def _cache_root() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _url_filename(url: str) -> str:
    return os.path.basename(urlparse(url).path) or "weights.pth"


def cached_weights_path(url: str) -> Path:
    """Where :func:`download_weights` keeps the file of ``url``.

    The cache is keyed by the whole URL, not the file name: ``$TORCH_HOME/hub/checkpoints/<key>/<name>``,
    ``<key>`` being the first 16 hex digits of the sha256 of ``url`` and ``<name>`` the URL's file
    name, so ``https://host/a/best.pth`` and ``https://host/b/best.pth`` never share a file.

    Args:
        url: http(s) address of a checkpoint.
    """
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:_URL_KEY_DIGITS]
    return _cache_root() / key / _url_filename(url)


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    if not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
        raise ArgumentError(f"sha256 must be 64 hex digits or None, got {sha256!r}", argument="sha256")
    return sha256.lower()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _short(err: BaseException | str, limit: int = 120) -> str:
    """``err`` on one line, at most ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _verify_cached(path: Path, url: str, sha256: str | None) -> Path:
    """``path`` if its sha256 is ``sha256`` (or none is known); one-line error naming it otherwise."""
    if sha256 is None:
        return path
    try:
        got = _file_sha256(path)
    except OSError as e:
        raise WeightsDownloadError(
            f"cached download {path} of {url} cannot be read ({_short(e)}); delete it and run again"
        ) from None
    if got != sha256:
        raise WeightsDownloadError(
            f"cached download {path} does not match the sha256 of {url} (expected {sha256[:16]}..., "
            f"got {got[:16]}...): it is corrupt or another file; delete it and run again to download it again"
        )
    return path


def _download_to_file(url: str, dst: str | PathLike, progress: bool = True) -> None:
    """Write the body of ``url`` to ``dst``, raising when it arrives incomplete.

    Every socket wait is bounded by ``DOWNLOAD_TIMEOUT_S``. When the server sends a
    Content-Length, fewer bytes (a connection dropped part-way) raise ``ConnectionError``; a
    chunked body cut short raises ``http.client.IncompleteRead``. ``dst``'s folder is created
    only once the server has answered (offline, nothing is created).
    """
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "ghostdet"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None and length.strip().isdigit() else None
        received = 0
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        with (
            open(dst, "wb") as f,
            tqdm(
                total=expected,
                disable=not progress,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received != expected:
        raise ConnectionError(f"connection closed after {received} of {expected} bytes")


def download_weights(url: str, progress: bool = True, sha256: str | None = None) -> Path:
    """Download ``url`` once into the torch hub cache and return the local file.

    The file is kept at :func:`cached_weights_path` (keyed by the whole URL). It is downloaded
    to a temporary file next to it and renamed into place only when complete: all the bytes the
    server announced (Content-Length) arrived and, when ``sha256`` is given, their sha256
    matches. A failed download leaves nothing in the cache. A cached file is checked against
    ``sha256`` too (a file that cannot be read as weights is reported when it is loaded, see
    :func:`load_state_dict_file`).

    Args:
        url: http(s) address of a checkpoint.
        progress: show a download progress bar.
        sha256: the file's known sha256 (64 hex digits), or ``None`` when none is known.

    Raises:
        WeightsDownloadError: the download failed or arrived incomplete or different (the
            message names the URL and, offline, how to use a local file instead), or the cached
            file does not match ``sha256`` (the message names the file to delete).
        ValueError: ``sha256`` is not 64 hex digits.
    """
    sha256 = _check_sha256(sha256)
    dst = cached_weights_path(url)
    if dst.is_file():
        return _verify_cached(dst, url, sha256)
    tmp = dst.parent / f".{dst.name}.{uuid.uuid4().hex}.partial"
    try:
        try:
            _download_to_file(url, tmp, progress=progress)
        except (OSError, http.client.HTTPException, ValueError) as e:
            # URLError/HTTPError, refused/reset connections, timeouts, truncated bodies
            # one line that fits a tool's error line (400 characters) with the long release URLs
            raise WeightsDownloadError(
                f"could not download weights from {url} ({_short(e, 80)}); offline, download it elsewhere "
                f"and pass its local path instead, or place the file at {dst}"
            ) from e
        if sha256 is not None:
            got = _file_sha256(tmp)
            if got != sha256:
                raise WeightsDownloadError(
                    f"the download of {url} does not match its expected sha256 (expected {sha256[:16]}..., "
                    f"got {got[:16]}...): corrupt or changed on the server; nothing was cached"
                )
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return dst


def _published_weights(url: str, sha256: str | None, progress: bool) -> Path:
    """:func:`download_weights`, also accepting the published file placed in the hub cache by hand.

    A file under the release's own name directly in ``$TORCH_HOME/hub/checkpoints`` (where
    ``torch.hub.load_state_dict_from_url`` and older ghostdet versions put it, and where the
    README says to drop it offline) is used when the URL-keyed one is absent; it is checked
    against the published sha256 when one is known.
    """
    plain = _cache_root() / _url_filename(url)
    if not cached_weights_path(url).is_file() and plain.is_file():
        return _verify_cached(plain, url, _check_sha256(sha256))
    return download_weights(url, progress=progress, sha256=sha256)


def load_state_dict_file(path: str | PathLike) -> dict[str, Tensor]:
    """Read a checkpoint file without executing pickled code, and return a clean state dict.

    Accepts ``.safetensors`` and torch files (``weights_only=True``, see
    :func:`ghostdet.utils.checkpoint_io.read_checkpoint`); unwraps ``state_dict``, ``state_dict_ema``
    and ``model`` wrappers, strips a ``module.`` prefix and drops thop's
    ``total_ops``/``total_params`` entries.

    Args:
        path: path of a ``.pth``/``.pt``/``.bin``/``.ckpt``/``.safetensors`` file.

    Raises:
        CheckpointReadError: the file is missing or unreadable (the message names it).
        NotAStateDictError: the file holds no state dict (the message names it).
        WeightsDownloadError: ``path`` is in the download cache (``$TORCH_HOME/hub/checkpoints``)
            and cannot be read as weights (e.g. truncated by an interrupted download of an
            older version): one line naming the file to delete.
    """
    try:
        obj = read_checkpoint(path)
        try:
            return clean_state_dict(obj)
        except NotAStateDictError as e:
            raise NotAStateDictError(f"{path}: {e}") from None
    except CheckpointError as e:  # CheckpointReadError, NotAStateDictError
        if not _in_download_cache(path):
            raise
        reason = str(e).removeprefix(f"could not read checkpoint {path}: ").removeprefix(f"{path}: ")
        raise WeightsDownloadError(
            f"cached download {path} cannot be read as weights ({_short(reason)}): it is "
            "corrupt (e.g. an interrupted download); delete it and run again to download it again"
        ) from None


def _in_download_cache(path: str | PathLike) -> bool:
    try:
        return Path(path).resolve().is_relative_to(_cache_root().resolve())
    except (OSError, RuntimeError):
        return False


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
        raise NotAStateDictError("checkpoint contains no tensors")
    return out


def resolve_weights(
    weights: str | PathLike, width: float, progress: bool = True, family: str = "ghostnet"
) -> Path:
    """Turn a ``weights`` argument into a local file path, downloading if needed.

    Args:
        weights: ``"imagenet"`` (the family's published checkpoint, checked against its sha256
            where the table has one; also found in the hub cache under the release's own file
            name), an http(s) URL (see :func:`download_weights`) or a local file path.
        width: the model's width multiplier (``"imagenet"`` exists only for published widths).
        progress: show a download progress bar.
        family: backbone family whose weights table ``"imagenet"`` refers to.
    """
    s = os.fspath(weights)
    if s.lower() == "imagenet":
        from ghostdet.models.family import get_family

        published = get_family(family).pretrained(width)
        return _published_weights(published.url, published.sha256, progress)
    if _is_url(s):
        return download_weights(s, progress=progress)
    path = Path(s).expanduser()
    if not path.is_file():
        raise InputError(
            f"weights file not found: {path}. Expected 'imagenet', an http(s) URL or a local "
            f"file ({', '.join(_SUFFIXES)}).",
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

    Raises:
        GhostdetError: the weights cannot be got or do not fit (an ``InputError``,
            ``CheckpointError`` or ``ArgumentError`` tagged ``argument="weights"``).
    """
    from ghostdet.models.family import get_family

    with argument_context("weights"):
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
