"""The deploy conversions the backbone families declare, resolved when a model is fused.

Each :class:`~ghostdet.models.family.BackboneFamily` names, in its ``deploy`` field, the module
types of the family and the converter replacing each (``"package.module:attribute"``). The names
are imported here, on first use, so the models import nothing from :mod:`ghostdet.deploy`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from ghostdet.models.family import get_family, list_families

__all__ = ["family_converter"]

Converter = Callable[[nn.Module], nn.Module]


def _resolve(path: str) -> Converter:
    module, _, attribute = path.partition(":")
    found: object = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ImportError(f"the deploy converter {path!r} declared by a backbone family does not exist")
    return found  # type: ignore[return-value]


def family_converter(module: nn.Module) -> Converter | None:
    """The converter a registered family declares for ``module``'s type, or ``None``.

    The families are tried in name order (:func:`~ghostdet.models.family.list_families`) and each
    family's entries in their order; the first ``isinstance`` match wins.

    Raises:
        ImportError: the declared converter cannot be imported.
    """
    for name in list_families():
        for kind, path in get_family(name).deploy.items():
            if isinstance(module, kind):
                return _resolve(path)
    return None
