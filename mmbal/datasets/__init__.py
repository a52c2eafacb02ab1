"""Datasets of mmbal (registered in ``mmbal.registry.DATASETS``) and their transforms."""
from . import transforms  # noqa: F401  (registers the pipeline transforms)
from .avdigits import AVDigitsDataset
from .base_dataset import MultimodalDataset

__all__ = ['MultimodalDataset', 'AVDigitsDataset']
