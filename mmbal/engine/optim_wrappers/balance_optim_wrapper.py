"""Optimizer wrappers that let balance hooks edit gradients before clipping and step."""
from typing import List

from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmbal.registry import OPTIM_WRAPPERS


class _BalanceHooksMixin:
    """Keeps the balance hooks whose ``after_backward`` runs before each step."""

    def register_balance_hook(self, hook) -> None:
        hooks: List = self.__dict__.setdefault('_balance_hooks', [])
        if hook not in hooks:
            hooks.append(hook)

    def _after_backward(self) -> None:
        for hook in self.__dict__.get('_balance_hooks', []):
            hook.after_backward(hook.model)


@OPTIM_WRAPPERS.register_module()
class BalanceOptimWrapper(_BalanceHooksMixin, OptimWrapper):
    """``OptimWrapper`` whose step runs the hooks' gradient edits first.

    Order per update: backward (accumulated over ``accumulative_counts``) ->
    balance edits -> gradient clipping -> ``optimizer.step``. Weight decay is
    added inside ``step``, so it is never scaled by an edit.
    """

    def step(self, **kwargs) -> None:
        self._after_backward()
        super().step(**kwargs)


@OPTIM_WRAPPERS.register_module()
class BalanceAmpOptimWrapper(_BalanceHooksMixin, AmpOptimWrapper):
    """``AmpOptimWrapper`` that unscales before the edits, so hooks see true gradients."""

    def step(self, **kwargs) -> None:
        self.loss_scaler.unscale_(self.optimizer)
        self._after_backward()
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)
