"""The training step as the extension point of balance methods."""
from .api import BalanceTerms, LossGradRequest, NonFiniteError, PassPlan, StepContext
from .train_step import BalanceTrainStep

__all__ = ['BalanceTrainStep', 'BalanceTerms', 'LossGradRequest', 'NonFiniteError', 'PassPlan', 'StepContext']
