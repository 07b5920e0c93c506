"""ghostdet: GhostNet (Han et al., CVPR 2020) backbones and detectors on torchvision."""

from ghostdet.models import get_model, list_models

__version__ = "0.1.0"
__all__ = ["__version__", "get_model", "list_models"]
