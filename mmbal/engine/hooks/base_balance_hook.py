"""Base class of balance methods: the call points of mmbal's training step."""
import math
import numbers
from typing import Dict, Iterable, List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import is_model_wrapper
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmbal.engine.step import BalanceTerms, PassPlan, StepContext


def check_number(owner: str, field: str, value, low: Optional[float] = None,
                 high: Optional[float] = None, low_open: bool = False,
                 integer: bool = False, meaning: str = '') -> None:
    """Reject a hyperparameter that is not a finite number in ``[low, high]``.

    ``low_open`` excludes ``low``; ``integer`` asks for an int. The error names
    the hook, the field, the value and what is expected, e.g.
    ``OGMGEHook: alpha=nan; expected a finite number >= 0 (alpha of eq. 10)``.
    """
    kind = 'an integer' if integer else 'a finite number'
    bounds = []
    if low is not None:
        bounds.append(f'{">" if low_open else ">="} {low:g}')
    if high is not None:
        bounds.append(f'<= {high:g}')
    expected = ' '.join([kind, ' and '.join(bounds)]).strip()
    if meaning:
        expected += f' ({meaning})'
    number = numbers.Integral if integer else numbers.Real
    ok = (isinstance(value, number) and not isinstance(value, bool)
          and math.isfinite(value)
          and (low is None or (value > low if low_open else value >= low))
          and (high is None or value <= high))
    if not ok:
        raise ValueError(f'{owner}: {field}={value!r}; expected {expected}')


class BaseBalanceHook(Hook):
    """A balance method as a Hook, called by :class:`BalanceTrainStep`.

    Besides MMEngine's call points, the training step calls (see
    ``mmbal/engine/step/train_step.py`` for where):

    * ``plan_passes(ctx) -> list[PassPlan] | None`` before any forward: sub-steps,
      trainable / target-only modalities, base loss on or off;
    * ``after_forward(ctx, outputs, data_samples) -> BalanceTerms | None`` after
      each forward: gate coefficients and noise for that pass, extra losses,
      per-loss gradient requests;
    * ``edit_grads(ctx)`` after backward and AMP unscale, before clipping and
      the optimizer step, once per update.

    A hook never holds the runner or the model: it gets the model as
    ``ctx.model`` (or as an argument of ``setup``). Values passed to
    :meth:`log` appear as ``balance/<method>/<name>`` every iteration.
    State returned by :meth:`state_dict` is saved in checkpoints and restored
    on resume.
    """

    method: str = 'balance'
    balance_method = True  # declared: the train loop hands these hooks to the step
    priority = 'NORMAL'

    def __init__(self) -> None:
        self._pending: Dict[str, torch.Tensor] = {}

    # --- wiring -------------------------------------------------------------
    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'modalities'):
            raise TypeError(f'{type(self).__name__} needs a multimodal model with named '
                            f'modalities (MultimodalClassifier), got {type(model).__name__}')
        self.setup(model)

    def before_train(self, runner) -> None:
        if not getattr(runner.train_loop, 'runs_balance_step', False):
            raise TypeError(f'{type(self).__name__} is a balance method, which mmbal\'s '
                            f'training step runs; the train loop is '
                            f'{type(runner.train_loop).__name__}. Set '
                            f"train_cfg=dict(type='BalanceTrainLoop', max_epochs=...)")

    def setup(self, model) -> None:
        """Check the configured modalities against the model; resolve artifacts."""

    def check_modalities(self, names: Iterable[str], model, what: str) -> List[str]:
        """Raise if a modality named in the hook's config is not one the model encodes."""
        names = list(names)
        for name in names:
            if name not in model.modalities:
                raise ValueError(f'{type(self).__name__}: {what}={name!r} is not a modality of '
                                 f'the model; it has {model.modalities}')
        return names

    def check_find_unused_parameters(self, runner, why: str) -> None:
        """Refuse a DDP wrapper that does not look for unused parameters.

        A method whose passes leave some parameters out of the loss (``why`` says
        which) needs ``find_unused_parameters=True``, or DDP waits for their
        gradients forever.
        """
        model = runner.model
        if isinstance(model, DistributedDataParallel) and not model.find_unused_parameters:
            raise ValueError(
                f'{type(self).__name__} {why}; set model_wrapper_cfg=dict(type='
                "'MMDistributedDataParallel', find_unused_parameters=True) in the config "
                f'(the model is wrapped in {type(model).__name__} with '
                'find_unused_parameters=False)')

    # --- method-owned modules -------------------------------------------------
    def build_modules(self, model) -> Optional[nn.Module]:
        """Modules this method trains with the model's optimizer (auxiliary heads...).

        Called once by ``MMBalRunner`` before the optimizer and the DDP wrapper
        are built; the result becomes ``model.balance_modules[self.method]``
        (in the model's state_dict, so saved and resumed).
        """
        return None

    def optimizers(self) -> List[torch.optim.Optimizer]:
        """Optimizers of modules this method keeps *outside* the model.

        The step steps each after the model's optimizer, once per update,
        with gradients averaged over ranks and the AMP scale divided out. Their
        modules and states belong in :meth:`state_dict` to be resumed.
        """
        return []

    # --- the training step's call points --------------------------------------
    def plan_passes(self, ctx: StepContext) -> Optional[List[PassPlan]]:
        """The passes of this batch, or None to leave the plan to others (one full pass)."""
        return None

    def after_forward(self, ctx: StepContext, outputs, data_samples) -> Optional[BalanceTerms]:
        """This pass's gate coefficients, noise, extra losses and gradient requests."""
        return None

    def edit_grads(self, ctx: StepContext) -> None:
        """Edit ``param.grad`` of ``ctx.model`` (true gradients, before clipping and step)."""

    # --- state in checkpoints -------------------------------------------------
    def state_dict(self) -> dict:
        """Method state that a resumed run needs (tensors, numbers, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = self.state_dict()
        if state:
            store = checkpoint.setdefault('balance_hooks', {})
            if self.method in store:
                raise KeyError(f'two balance hooks save state under {self.method!r}')
            store[self.method] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('balance_hooks', {}).get(self.method)
        if state is not None:
            self.load_state_dict(state)

    # --- logging ------------------------------------------------------------
    def log(self, name: str, value) -> None:
        """Record ``balance/<method>/<name>`` for this iteration."""
        if isinstance(value, torch.Tensor):
            value = value.detach()
        self._pending[name] = value

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        hub = MessageHub.get_current_instance()
        for name, value in self._pending.items():
            hub.update_scalar(f'train/balance/{self.method}/{name}', float(value))
        self._pending = {}
