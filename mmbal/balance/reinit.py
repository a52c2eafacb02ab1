"""Re-initialisation from an init snapshot (D&R): parameters only, optimizer state reset.

A method takes the snapshot once the weights are initialised (``before_train``
runs after ``init_weights`` and after a resume), keeps it in its hook
``state_dict`` so a resumed run re-initialises towards the same weights, and
blends a module (an encoder, or one stage view with the encoder's own names)
towards it: ``theta <- (1 - alpha) theta + alpha theta_init``. Buffers (BN
running statistics) are not touched; the optimizer forgets the state
(momentum) of the blended parameters.
"""
from typing import Dict, Iterable, Optional

import torch
from torch import nn


def param_snapshot(module: nn.Module) -> Dict[str, torch.Tensor]:
    """Detached copies of ``module``'s parameters, by name (no buffers)."""
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@torch.no_grad()
def blend_from_snapshot_(module: nn.Module, snapshot: Dict[str, torch.Tensor],
                         alpha: float, optimizer: Optional[torch.optim.Optimizer] = None
                         ) -> None:
    """``theta <- (1 - alpha) theta + alpha snapshot`` for every parameter of ``module``.

    Args:
        module: The module to re-initialise (its parameter names index ``snapshot``).
        snapshot: From :func:`param_snapshot` of the same module (or a superset,
            e.g. the encoder's snapshot for one of its stage views).
        alpha: Strength in [0, 1]; 1 restores the init weights.
        optimizer: If given, the state of the blended parameters is dropped.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f're-initialisation strength alpha={alpha} must be in [0, 1]')
    params = dict(module.named_parameters())
    missing = [n for n in params if n not in snapshot]
    if missing:
        raise KeyError(f'the init snapshot lacks parameters {missing[:5]} of '
                       f'{type(module).__name__}; take it from the same module')
    for name, param in params.items():
        param.mul_(1.0 - alpha).add_(snapshot[name].to(param.device, param.dtype), alpha=alpha)
    if optimizer is not None:
        reset_optimizer_state(optimizer, params.values())


def reset_optimizer_state(optimizer: torch.optim.Optimizer,
                          params: Iterable[nn.Parameter]) -> None:
    """Forget the optimizer state (momentum buffers, ...) of ``params`` only."""
    for p in params:
        optimizer.state.pop(p, None)
