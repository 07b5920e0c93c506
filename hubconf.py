"""torch.hub entry points: every classifier, backbone and detector of ghostdet's model registry.

Each registered name (:func:`ghostdet.list_models`) is an entry point that calls
:func:`ghostdet.get_model` with the same keyword arguments, so ``torch.hub.load`` builds exactly
what ``ghostdet.get_model`` builds::

    import torch

    model = torch.hub.load("/path/to/ghostdet", "ghostnet_100", source="local", weights="imagenet")
    detector = torch.hub.load("/path/to/ghostdet", "retinanet_ghostnet_fpn", source="local", num_classes=3)

The entry points are the names of :func:`ghostdet.list_models`; each one's docstring
(``torch.hub.help`` for a copy on GitHub) names the builder's arguments and the published
weights it can load, with their top-1, parameters and MACs.

``pretrained=True`` is the older spelling of ``weights="imagenet"`` for classifiers and backbones.
The authors publish ImageNet classifiers only, so a detector has no ``pretrained`` weights: its
trunk takes ``weights_backbone="imagenet"`` and a trained detector file ``weights=PATH``. Loading
is strict, and offline a download fails with one error that names the URL and where to put the
file instead (see the docs' "Pretrained weights").
"""

from __future__ import annotations

import inspect as _inspect
import typing as _typing

dependencies = ["torch", "torchvision"]

import ghostdet.models as _models  # noqa: E402  (torch.hub reads ``dependencies`` first)
from ghostdet.errors import InputError as _InputError  # noqa: E402
from ghostdet.models.family import get_family as _get_family  # noqa: E402
from ghostdet.models.registry import model_entry as _model_entry  # noqa: E402

_KIND_TEXT = {
    "classifier": "classifier",
    "backbone": "FPN backbone (trunk + feature pyramid)",
    "detector": "detector",
}


def _weights_text(name: str) -> str:
    """The published ImageNet checkpoints a name can load, one line each."""
    entry = _model_entry(name)
    if entry.family is None:
        return ""
    family = _get_family(entry.family)
    widths = [entry.defaults["width"]] if "width" in entry.defaults else list(family.weights)
    lines = []
    for width in widths:
        published = family.weights.get(float(width))
        if published is None:
            continue
        top1 = f"top-1 {published.top1:g}%" if published.top1 is not None else "top-1 not published"
        params = f", {published.params / 1e6:.2f}M params" if published.params is not None else ""
        macs = f", {published.macs / 1e6:.0f}M MACs" if published.macs is not None else ""
        lines.append(f"    {width:.1f}x: {published.url} ({top1}{params}{macs})")
    if not lines:
        return f"No published ImageNet weights for {family.title} at this width.\n\n"
    how = (
        'weights_backbone="imagenet"' if entry.kind == "detector" else 'weights="imagenet" or pretrained=True'
    )
    return f"Published ImageNet {family.title} weights ({how}):\n\n" + "\n".join(lines) + "\n\n"


def _entry_point(name: str) -> _typing.Callable[..., _typing.Any]:
    entry = _model_entry(name)

    def load(*, pretrained: bool = False, **kwargs: _typing.Any) -> _typing.Any:
        if pretrained:
            if entry.kind == "detector":
                raise _InputError(
                    f"{name}: no detector weights are published, so pretrained=True has nothing to load; "
                    "pass weights_backbone='imagenet' for the ImageNet trunk, or weights=PATH for a "
                    "trained detector checkpoint",
                    argument="pretrained",
                )
            if kwargs.get("weights") is not None:
                raise _InputError(
                    f"{name}: pass either pretrained=True or weights=..., not both", argument="pretrained"
                )
            kwargs["weights"] = "imagenet"
        return _models.get_model(name, **kwargs)

    bound = ", ".join(f"{k}={v!r}" for k, v in entry.defaults.items())
    title = f'ghostdet {_KIND_TEXT[entry.kind]} ``{name}``: ``ghostdet.get_model("{name}", **kwargs)``'
    load.__name__ = load.__qualname__ = name
    load.__doc__ = (
        f"{title}{f' ({bound} bound)' if bound else ''}.\n\n{_weights_text(name)}"
        f"The builder, ``{entry.builder.__name__}``:\n\n{_inspect.cleandoc(entry.builder.__doc__ or '')}\n"
    )
    return load


globals().update({_name: _entry_point(_name) for _name in _models.list_models()})
