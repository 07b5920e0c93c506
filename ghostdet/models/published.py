"""Loading the published checkpoints of the GhostNet variants (GhostNetV2, GhostNetV3).

Each variant keeps its own width -> URL table; this module turns ``weights="imagenet"`` into the
right download and otherwise loads files exactly like V1 (:mod:`ghostdet.models.weights`):
``weights_only=True`` / safetensors, thop entries dropped, one strict-loading error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from os import PathLike

from torch import Tensor, nn

from ghostdet.models.weights import (
    WeightsMismatchError,
    download_weights,
    load_state_dict_file,
    load_strict,
    resolve_weights,
)

__all__ = ["load_published_weights"]


def load_published_weights(
    model: nn.Module,
    weights: str | PathLike,
    urls: Mapping[float, str],
    name: str,
    width: float,
    progress: bool = True,
    skip_classifier: bool | None = None,
    rename: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
) -> None:
    """Load ``weights`` into ``model`` strictly.

    Args:
        model: the network.
        weights: ``"imagenet"`` (the published checkpoint for ``width`` in ``urls``), an http(s)
            URL or a local ``.pth``/``.pt``/``.bin``/``.tar``/``.safetensors`` file.
        urls: published checkpoints, keyed by width.
        name: the model family, for error messages (e.g. ``"GhostNetV2"``).
        width: the model's width multiplier.
        progress: show a download progress bar.
        skip_classifier: leave ``classifier.*`` out of loading. ``None`` skips it only when the
            checkpoint's classifier has a different number of classes than the model.
        rename: maps the file's state dict to the model's names (e.g. a release's older names).

    Raises:
        ValueError: ``"imagenet"`` for a width without a published checkpoint.
        WeightsDownloadError: the download failed (naming the URL and how to pass a local file).
        WeightsMismatchError: any missing, unexpected or shape-mismatched key.
    """
    if os.fspath(weights).lower() == "imagenet":
        url = urls.get(float(width))
        if url is None:
            published = ", ".join(f"{w:g}" for w in urls)
            raise ValueError(
                f"no published ImageNet weights for {name} width {width:g} (published: {published}). "
                "Pass weights=None to train from scratch, or a local checkpoint file."
            )
        path = download_weights(url, progress=progress)
    else:
        path = resolve_weights(weights, width, progress=progress)
    state_dict = load_state_dict_file(path)
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
