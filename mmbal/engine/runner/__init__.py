from .balance_loop import BalanceTrainLoop
from .build import build_runner
from .mmbal_runner import MMBalRunner

__all__ = ['MMBalRunner', 'BalanceTrainLoop', 'build_runner']
