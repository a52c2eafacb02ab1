"""The epoch-based train loop whose iteration is mmbal's training step."""
from typing import Sequence

from mmengine.dist import get_world_size
from mmengine.runner import EpochBasedTrainLoop

from mmbal.engine.step import BalanceTrainStep, StepContext
from mmbal.registry import LOOPS


@LOOPS.register_module()
class BalanceTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` whose iterations run :class:`BalanceTrainStep`.

    The step gets the run's balance hooks (every hook that declares
    ``balance_method = True``, in the runner's priority order). Hooks see the
    run through a :class:`StepContext`; they never hold the runner. Without
    balance hooks the step is MMEngine's ``train_step`` (same operations, same
    order).
    """

    runs_balance_step = True

    def run(self):
        hooks = [h for h in self.runner.hooks if getattr(h, 'balance_method', False)]
        self.step = BalanceTrainStep(self.runner.model, self.runner.optim_wrapper, hooks)
        return super().run()

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
