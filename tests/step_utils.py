"""Drive mmbal's training step in tests the way ``BalanceTrainLoop`` does, without a Runner."""
from typing import Dict, Optional, Sequence

import torch
from mmengine.optim import OptimWrapper

from mmbal.engine.step import BalanceTrainStep, StepContext
from mmbal.registry import MODELS


def tiny_classifier(seed: int = 0):
    """Two MLP encoders (audio 3 -> 5 -> 4, visual 2 -> 3), concat, a 3-class head."""
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4,
                                 hidden_channels=(5, )),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=3)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3)))


def tiny_mmtm_classifier(seed: int = 0):
    """Greedy's model in small: MLP branches (audio 3 -> 5 -> 4, visual 2 -> 3 -> 3), one
    MMTM block after stage 0 (5 + 3 channels, squeeze width 4), late fusion of 3 classes."""
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4,
                                 hidden_channels=(5, )),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=3,
                                  hidden_channels=(3, ))),
        encoder_fusion=dict(type='MMTMFusion', stages=(0, )),
        fusion=dict(type='LateFusion', num_classes=3), head=None))


def sgd_wrapper(model, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0,
                **wrapper_kw) -> OptimWrapper:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    return OptimWrapper(optimizer=opt, **wrapper_kw)


class Stepper:
    """One ``BalanceTrainStep`` over ``model`` (or ``net``, e.g. its DDP wrapper)."""

    def __init__(self, model, hooks: Sequence = (), optim_wrapper=None, net=None,
                 **wrapper_kw) -> None:
        self.model = model
        self.optim_wrapper = optim_wrapper or sgd_wrapper(model, **wrapper_kw)
        self.step = BalanceTrainStep(net if net is not None else model, self.optim_wrapper,
                                     hooks)

    def __call__(self, inputs: Dict[str, torch.Tensor], samples: Dict[str, torch.Tensor],
                 epoch: int = 0, it: int = 0, batch_idx: Optional[int] = None,
                 num_batches: int = 1) -> Dict[str, torch.Tensor]:
        ctx = StepContext(model=self.model, epoch=epoch, iter=it,
                          batch_idx=it if batch_idx is None else batch_idx,
                          num_batches=num_batches, optim_wrapper=self.optim_wrapper)
        return self.step({'inputs': inputs, 'data_samples': samples}, ctx)


def ctx_for(model, epoch: int = 0, it: int = 0) -> StepContext:
    """A context for calling a hook's ``after_forward`` / ``edit_grads`` directly."""
    return StepContext(model=model, epoch=epoch, iter=it)


def capture_step_grads(optim_wrapper, model) -> Dict[str, torch.Tensor]:
    """Record every parameter's ``.grad`` at the moment ``optimizer.step`` runs."""
    captured: Dict[str, torch.Tensor] = {}
    original = optim_wrapper.optimizer.step

    def step(*args, **kwargs):
        captured.clear()
        captured.update({n: None if p.grad is None else p.grad.detach().clone()
                         for n, p in model.named_parameters()})
        return original(*args, **kwargs)

    optim_wrapper.optimizer.step = step
    return captured


def step_grads(model, hooks: Sequence, inputs, samples, epoch: int = 0, it: int = 0,
               **wrapper_kw):
    """``(grads, log)`` of one batch through the step: every parameter's ``.grad`` when
    ``optimizer.step`` runs (after the methods' edits). lr is 0, so with no weight decay
    the parameters stay as they were."""
    wrapper_kw.setdefault('lr', 0.0)
    stepper = Stepper(model, hooks, **wrapper_kw)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    log = stepper(inputs, samples, epoch=epoch, it=it)
    return dict(grads), log


def cpu_amp_wrapper(model, lr: float = 0.1, init_scale: float = 1024.0):
    """An AmpOptimWrapper on CPU: bfloat16 autocast and a CPU GradScaler (tests only;
    mmengine's GPU assert is patched while it is built)."""
    from unittest import mock

    from mmengine.optim import AmpOptimWrapper
    path = 'mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available'
    with mock.patch(path, return_value=True):
        wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=lr),
                                  dtype='bfloat16')
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=init_scale)
    return wrapper
