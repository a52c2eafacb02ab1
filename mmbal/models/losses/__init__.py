from .cross_entropy import CrossEntropyLoss
from .regression import RegressionLoss

__all__ = ['CrossEntropyLoss', 'RegressionLoss']
