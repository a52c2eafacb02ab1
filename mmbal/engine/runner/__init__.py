from .build import build_runner
from .mmbal_runner import MMBalRunner

__all__ = ['MMBalRunner', 'build_runner']
