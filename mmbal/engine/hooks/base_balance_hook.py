"""Base class of balance methods: the call points a method needs and MMEngine lacks."""
from typing import Dict, Iterable, List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import is_model_wrapper


class BaseBalanceHook(Hook):
    """A balance method as a Hook.

    Besides MMEngine's call points (schedules in ``before_train_epoch``...),
    a balance hook gets two more:

    * ``after_forward(model, outputs, data_samples) -> dict``: called in every
      training loss pass with the :class:`ModalityOutputs` of the batch; it
      sets gate coefficients (``model.gates[m].scale(c)``) and returns extra
      loss terms (keys containing ``'loss'`` are trained, others logged).
    * ``after_backward(model)``: called by :class:`BalanceOptimWrapper` after
      backward (after AMP unscaling) and before clipping and the optimizer
      step; for methods that edit parameter gradients. Subclasses that
      implement it set ``edits_param_grads = True``.

    Values passed to :meth:`log` appear in the training log and the
    visualizer backends as ``balance/<method>/<name>`` every iteration.
    """

    method: str = 'balance'
    edits_param_grads: bool = False
    priority = 'NORMAL'

    def __init__(self) -> None:
        self.epoch = 0
        self.iter = 0
        self.model = None
        self._pending: Dict[str, torch.Tensor] = {}

    # --- wiring -------------------------------------------------------------
    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'register_balance_hook'):
            raise TypeError(f'{type(self).__name__} needs a model with gradient gates '
                            f'(MultimodalClassifier), got {type(model).__name__}')
        model.register_balance_hook(self)
        self.model = model
        if self.edits_param_grads:
            wrapper = runner.optim_wrapper
            if not hasattr(wrapper, 'register_balance_hook'):
                raise TypeError(
                    f'{type(self).__name__} edits parameter gradients after backward: set '
                    f"optim_wrapper.type='BalanceOptimWrapper' (or 'BalanceAmpOptimWrapper'), "
                    f'got {type(wrapper).__name__}')
            wrapper.register_balance_hook(self)
        self.setup(model)

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

    # --- schedule -----------------------------------------------------------
    def before_train_epoch(self, runner) -> None:
        self.epoch = runner.epoch

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.iter = runner.iter

    # --- balance call points ------------------------------------------------
    def after_forward(self, model, outputs, data_samples) -> Optional[dict]:
        return None

    def after_backward(self, model) -> None:
        pass

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
