"""Datasets of mmbal (registered in ``mmbal.registry.DATASETS``) and their transforms."""
from mmbal import structures  # noqa: F401  (registers sequence_collate)
from . import transforms  # noqa: F401  (registers the pipeline transforms)
from .affect import AffectDataset
from .av_mnist import AVMNISTDataset
from .ave import AVEDataset
from .avdigits import AVDigitsDataset
from .base_dataset import MultimodalDataset
from .cefa import CEFADataset
from .clip_list_dataset import ClipListDataset
from .crema_d import CremaDDataset
from .kinetics_sounds import KineticsSoundsDataset
from .ucf101 import UCF101Dataset
from .vggsound import VGGSoundDataset

__all__ = ['MultimodalDataset', 'AVDigitsDataset', 'ClipListDataset', 'KineticsSoundsDataset',
           'VGGSoundDataset', 'AVMNISTDataset', 'CEFADataset',
           'CremaDDataset', 'AVEDataset', 'UCF101Dataset', 'AffectDataset']
