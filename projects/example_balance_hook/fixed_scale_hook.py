"""A balance method written outside mmbal: fixed per-modality gradient scales.

It shows the whole contract of a balance hook: subclass ``BaseBalanceHook``,
register it in mmbal's ``HOOKS`` registry, check the modalities it names in
``setup``, and hand gate coefficients to the training step from
``after_forward``.
"""
from typing import Dict

from mmbal.engine import BalanceTerms, BaseBalanceHook
from mmbal.registry import HOOKS


@HOOKS.register_module()
class FixedGradientScaleHook(BaseBalanceHook):
    """Multiply the gradient reaching each named encoder by a constant.

    Args:
        coefficients: ``{modality: scale}``; modalities not named keep 1.
    """

    method = 'fixed_scale'

    def __init__(self, coefficients: Dict[str, float]) -> None:
        super().__init__()
        self.coefficients = dict(coefficients)

    def setup(self, model) -> None:
        self.check_modalities(self.coefficients, model, 'coefficients')

    def after_forward(self, ctx, outputs, data_samples) -> BalanceTerms:
        for modality, scale in self.coefficients.items():
            self.log(f'scale_{modality}', scale)
        return BalanceTerms(coefficients=dict(self.coefficients))
