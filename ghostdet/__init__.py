"""ghostdet: GhostNet (Han et al., CVPR 2020) backbones and detectors on torchvision."""

from ghostdet.ghostify import GhostifySummary, ghostify
from ghostdet.models import get_model, list_models

__version__ = "0.1.0"
__all__ = ["GhostifySummary", "__version__", "get_model", "ghostify", "list_models"]
