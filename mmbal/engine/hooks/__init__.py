from .agm_hook import AGMHook
from .aim_hook import AIMHook
from .arl_hook import ARLHook
from .base_balance_hook import BaseBalanceHook
from .checkpoint_hook import SafeCheckpointHook
from .dr_hook import DRHook
from .g2d_hook import G2DHook
from .gblend_hook import GBlendHook
from .greedy_hook import GreedyHook
from .mla_hook import MLAHook
from .mmpareto_hook import MMParetoHook
from .ogm_ge_hook import OGMGEHook
from .pdmp_hook import PDMPHook
from .pmr_hook import PMRHook
from .reconboost_hook import ReconBoostHook

__all__ = ['BaseBalanceHook', 'PDMPHook', 'OGMGEHook', 'ARLHook', 'G2DHook', 'MMParetoHook',
           'MLAHook', 'AIMHook', 'PMRHook', 'AGMHook', 'ReconBoostHook', 'GreedyHook', 'DRHook',
           'GBlendHook', 'SafeCheckpointHook']
