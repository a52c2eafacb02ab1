"""Backward into chosen parameters only (AIM's DAP step and L_pdm train their own modules)."""
from typing import Iterable

import torch
from torch import nn


def accumulate_grad(loss: torch.Tensor, params: Iterable[nn.Parameter]) -> None:
    """Add ``d loss / d p`` to ``p.grad`` for ``params`` only; nothing else gets a gradient.

    Unlike ``loss.backward()``, the parameters the graph passes through on the
    way (a frozen network) keep their ``.grad``. A parameter ``loss`` does not
    depend on keeps its ``.grad`` too.
    """
    params = [p for p in params if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for p, g in zip(params, grads):
        if g is None:
            continue
        p.grad = g.detach().clone() if p.grad is None else p.grad + g
