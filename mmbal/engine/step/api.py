"""What balance hooks and the training step exchange (see ``train_step.py``).

A hook never runs the loop. The step asks it, at fixed points, for:

* a :class:`PassPlan` list (before any forward): which modalities each pass
  trains, which are only targets, which get no information from the others,
  whether the base loss is on, and whether a pass ends in its own optimizer
  step (sub-steps);
* :class:`BalanceTerms` (after each forward): gate coefficients and noise for
  that pass, extra losses, and requests for per-loss gradients;
* gradient edits (after backward and AMP unscale, before clipping), with the
  per-loss gradients it asked for, in :class:`StepContext`.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

Coefficient = Union[float, torch.Tensor]


@dataclass
class PassPlan:
    """One forward/backward pass of a training step.

    Args:
        trainable: Modalities encoded with gradient; None = all.
        target_only: Modalities encoded under ``no_grad`` (features detached,
            encoders keep ``grad=None``); the others are not encoded.
        base_loss: Train the model's own loss on the fused logits.
        logits: Per-modality logit mode ('analytic' | 'probe') computed inside
            the forward. Under DDP with ``find_unused_parameters=True`` (needed
            by sub-steps) every parameter a loss uses must be used inside the
            forward, so a method that trains on per-modality logits asks here.
        isolated: Modalities whose features in this pass must carry no
            information from the other modalities' inputs. Only an in-encoder
            fusion mixes modalities before the features (``MMTMFusion``: these
            modalities get its running-average excitation, Greedy's re-balancing
            step); for every other model it changes nothing.
        name: Prefix of this pass's log keys when a step has several passes.
    """

    trainable: Optional[Sequence[str]] = None
    target_only: Sequence[str] = ()
    base_loss: bool = True
    logits: Optional[str] = None
    isolated: Sequence[str] = ()
    name: str = ''


@dataclass
class LossGradRequest:
    """Ask for ``d loss / d params`` of one loss term, before the step's backward.

    The step returns it unscaled (AMP), divided like the main loss under
    gradient accumulation and summed over the micro-batches of one update,
    and averaged over ranks under DDP: the same convention as ``param.grad``.
    """

    loss: torch.Tensor
    params: Sequence[nn.Parameter]


@dataclass
class BalanceTerms:
    """A hook's contribution to one pass.

    Args:
        coefficients: ``{m: c}`` gate coefficients (scalar or ``(B,)``); the
            coefficients of several hooks multiply.
        noise: ``{m: (std, seed)}`` Gaussian noise added to the gated gradient.
        losses: Extra terms; keys containing ``'loss'`` are trained (they add
            to the base loss), the others only logged.
        loss_grads: ``{name: LossGradRequest}``; the results reach the hook's
            ``edit_grads`` as ``ctx.loss_grads(hook)[name]``.
    """

    coefficients: Dict[str, Coefficient] = field(default_factory=dict)
    noise: Dict[str, Tuple[Coefficient, int]] = field(default_factory=dict)
    losses: Dict[str, torch.Tensor] = field(default_factory=dict)
    loss_grads: Dict[str, LossGradRequest] = field(default_factory=dict)


@dataclass
class StepContext:
    """Where the run is, and what the step holds for the hooks during one batch.

    Args:
        model: The unwrapped model (never a DDP wrapper).
        epoch: 0-based epoch of this batch.
        iter: 0-based global iteration of this batch.
        batch_idx: 0-based index of the batch in its epoch.
        num_batches: Batches per epoch (``len(train_dataloader)``).
        max_epochs: Length of the schedule in epochs, when epoch-based.
        world_size: Number of DDP processes (1 without DDP).
        optim_wrapper: The run's optim wrapper (read-only for hooks).
        plan: The pass being run.
        pass_index: Its index in this batch's plan.
    """

    model: nn.Module
    epoch: int = 0
    iter: int = 0
    batch_idx: int = 0
    num_batches: int = 0
    max_epochs: Optional[int] = None
    world_size: int = 1
    optim_wrapper: object = None
    plan: PassPlan = field(default_factory=PassPlan)
    pass_index: int = 0
    _loss_grads: Dict[int, Dict[str, List[torch.Tensor]]] = field(default_factory=dict,
                                                                  repr=False)

    def loss_grads(self, hook) -> Dict[str, List[torch.Tensor]]:
        """The per-loss gradients ``hook`` requested, aligned with its params lists."""
        return self._loss_grads.get(id(hook), {})


class NonFiniteError(RuntimeError):
    """A loss term or a gradient of the training step is NaN or infinite.

    Raised by :class:`BalanceTrainStep` with ``nonfinite='raise'`` (the
    default) before the parameters are updated. The message names the
    iteration (1-based, as in the training log), the loss term and who
    returned it, or the parameters whose gradient is non-finite (a modality's
    encoder, the fusion, the head, a method's modules) and the point of the
    step it was found at (after backward, or after a method's ``edit_grads``).
    """
