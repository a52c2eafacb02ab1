from .balance_optim_wrapper import BalanceAmpOptimWrapper, BalanceOptimWrapper

__all__ = ['BalanceOptimWrapper', 'BalanceAmpOptimWrapper']
