from .base_fusion import BaseFusion
from .concat import ConcatFusion
from .cosine import CosineFusion
from .film import FiLMFusion
from .gated import GatedFusion
from .late import LateFusion
from .mmtm import MMTM, MMTMFusion
from .shared_head import SharedHeadFusion
from .sum import SumFusion

__all__ = ['BaseFusion', 'ConcatFusion', 'SumFusion', 'LateFusion', 'FiLMFusion', 'GatedFusion',
           'SharedHeadFusion', 'CosineFusion', 'MMTM', 'MMTMFusion']
