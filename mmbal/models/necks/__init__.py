from .base_fusion import BaseFusion
from .concat import ConcatFusion
from .cosine import CosineFusion
from .cross_attention import CrossAttentionFusion
from .film import FiLMFusion
from .gated import GatedFusion
from .late import LateFusion
from .mmtm import MMTM, MMTMFusion
from .se import SEFusion
from .shared_head import SharedHeadFusion
from .step_fusion import StepFusion
from .sum import SumFusion
from .transformer_fusion import TransformerFusion

__all__ = ['BaseFusion', 'ConcatFusion', 'SumFusion', 'LateFusion', 'FiLMFusion', 'GatedFusion',
           'SharedHeadFusion', 'CosineFusion', 'StepFusion', 'CrossAttentionFusion',
           'TransformerFusion', 'SEFusion', 'MMTM', 'MMTMFusion']
