"""ghostdet: GhostNet (Han et al., CVPR 2020) backbones and detectors on torchvision.

``ghostdet.get_model``, ``ghostdet.list_models`` and ``ghostdet.ghostify`` are loaded on first
use, so that importing a lower layer (``ghostdet.errors``, ``ghostdet.utils``) does not build
the model registry.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["GhostifySummary", "__version__", "get_model", "ghostify", "list_models"]

_LAZY = {
    "get_model": "ghostdet.models",
    "list_models": "ghostdet.models",
    "ghostify": "ghostdet.models.ghostify",
    "GhostifySummary": "ghostdet.models.ghostify",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ghostdet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
