"""The epoch-based train loop whose iteration is mmbal's training step."""
import logging
import math
import numbers
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import get_world_size
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader

from mmbal.engine.step import BalanceTrainStep, StepContext
from mmbal.engine.step.train_step import check_nonfinite_mode
from mmbal.registry import LOOPS


@LOOPS.register_module()
class BalanceTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` whose iterations run :class:`BalanceTrainStep`.

    The step gets the run's balance hooks (every hook that declares
    ``balance_method = True``, in the runner's priority order). Hooks see the
    run through a :class:`StepContext`; they never hold the runner. Without
    balance hooks the step is MMEngine's ``train_step`` (same operations, same
    order).

    Args:
        max_epochs: Length of the schedule (an integer >= 1).
        nonfinite: What a non-finite loss term or gradient does: ``'raise'``
            (default; ``NonFiniteError``) or ``'skip'`` (a warning, and that
            update is dropped). See ``BalanceTrainStep``.
        Others: as ``EpochBasedTrainLoop``.
    """

    runs_balance_step = True

    def __init__(self, runner, dataloader: Union[DataLoader, Dict], max_epochs: int,
                 val_begin: int = 1, val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 nonfinite: str = 'raise') -> None:
        if (isinstance(max_epochs, bool) or not isinstance(max_epochs, numbers.Integral)
                or max_epochs < 1):
            raise ValueError(f'train_cfg.max_epochs={max_epochs!r}: expected an integer >= 1')
        self.nonfinite = check_nonfinite_mode(nonfinite, 'train_cfg.nonfinite')
        super().__init__(runner, dataloader, max_epochs, val_begin, val_interval,
                         dynamic_intervals)

    def run(self):
        check_optimizer_values(self.runner.optim_wrapper.optimizer)
        hooks = [h for h in self.runner.hooks if getattr(h, 'balance_method', False)]
        self.step = BalanceTrainStep(self.runner.model, self.runner.optim_wrapper, hooks,
                                     nonfinite=self.nonfinite)
        model = super().run()
        if self.step.skipped_updates:
            print_log(f'BalanceTrainLoop: {self.step.skipped_updates} updates were skipped '
                      f"for non-finite values (train_cfg.nonfinite='skip')",
                      logger='current', level=logging.WARNING)
        return model

    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        self.runner.call_hook('before_train_iter', batch_idx=idx, data_batch=data_batch)
        ctx = StepContext(model=self.step.module, epoch=self.runner.epoch,
                          iter=self.runner.iter, batch_idx=idx,
                          num_batches=len(self.dataloader), max_epochs=self.max_epochs,
                          world_size=get_world_size(), optim_wrapper=self.runner.optim_wrapper)
        outputs = self.step(data_batch, ctx)
        self.runner.call_hook('after_train_iter', batch_idx=idx, data_batch=data_batch,
                              outputs=outputs)
        self._iter += 1


def check_optimizer_values(optimizer: torch.optim.Optimizer) -> None:
    """Reject a NaN or infinite hyperparameter (lr, momentum, ...) in any param group.

    Read from the built optimizer (after ``paramwise_cfg``, LR scaling and a
    resume), so whatever produced the value, the run does not start with it.
    """
    for index, group in enumerate(optimizer.param_groups):
        for key, value in group.items():
            if key == 'params':
                continue
            for number in value if isinstance(value, (tuple, list)) else (value, ):
                if isinstance(number, torch.Tensor):
                    finite = bool(torch.isfinite(number).all())
                elif isinstance(number, numbers.Real) and not isinstance(number, bool):
                    finite = math.isfinite(number)
                else:
                    continue
                if not finite:
                    raise ValueError(f'optim_wrapper.optimizer: {key}={value!r} in param group '
                                     f'{index}: expected a finite number (set in '
                                     f'optim_wrapper.optimizer or paramwise_cfg)')
