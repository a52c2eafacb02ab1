"""mmbal: multimodal learning under modality imbalance, built on MMEngine."""
from .version import __version__

__all__ = ['__version__']
