from .base_balance_hook import BaseBalanceHook
from .ogm_ge_hook import OGMGEHook
from .pdmp_hook import PDMPHook

__all__ = ['BaseBalanceHook', 'PDMPHook', 'OGMGEHook']
