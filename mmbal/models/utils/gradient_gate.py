"""The gradient gate between an encoder and the fusion, one per modality per pass.

Forward is the identity. Backward multiplies the gradient that reaches the
encoder's output by a coefficient set *after* the forward pass (a scalar or
one value per sample), and can add Gaussian noise. Everything after the gate
(fusion, head, probes, distillation terms) reads the gated feature, so one
coefficient scales the encoder's whole gradient.

A gate belongs to one forward pass: :meth:`MultimodalClassifier.run` makes a
fresh one per modality and the backward of that pass reads exactly that
gate's coefficient. Two forwards followed by two backwards therefore each use
their own coefficients (no last-forward-wins state on the model).
"""
from typing import Optional, Union

import torch

Coefficient = Union[float, torch.Tensor]


class _GateFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: torch.Tensor, gate: 'GradientGate') -> torch.Tensor:
        ctx.gate = gate
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.gate.modulate(grad), None


class GradientGate:
    """Scales (and optionally perturbs) the gradient flowing into one encoder in one pass.

    Coefficients start at "none" (identity); :meth:`scale` multiplies into
    them, so several methods in one run compose by product.
    """

    def __init__(self) -> None:
        self.coefficient: Optional[Coefficient] = None
        self.noise_std: Optional[Coefficient] = None
        self.noise_seed: Optional[int] = None

    def scale(self, coefficient: Coefficient) -> None:
        """Multiply the backward coefficient by a scalar or a ``(B,)`` tensor."""
        if isinstance(coefficient, torch.Tensor):
            coefficient = coefficient.detach()
        self.coefficient = (coefficient if self.coefficient is None
                            else self.coefficient * coefficient)

    def add_noise(self, std: Coefficient, seed: int) -> None:
        """Add ``std * N(0, I)`` to the gated gradient, drawn from ``seed``.

        Use a seed every rank derives identically (``mmbal.balance.shared_seed``)
        so that replicas stay identical under DDP. Only one method may add noise.
        """
        if self.noise_std is not None:
            raise RuntimeError('gradient noise was already set for this pass')
        self.noise_std = std.detach() if isinstance(std, torch.Tensor) else std
        self.noise_seed = int(seed)

    def modulate(self, grad: torch.Tensor) -> torch.Tensor:
        out = grad
        if self.coefficient is not None:
            out = out * _per_sample(self.coefficient, grad)
        if self.noise_std is not None:
            gen = torch.Generator(device=grad.device).manual_seed(self.noise_seed)
            noise = torch.randn(grad.shape, generator=gen, device=grad.device, dtype=grad.dtype)
            out = out + noise * _per_sample(self.noise_std, grad)
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Identity in forward; records this gate for the backward of ``x``."""
        if not (torch.is_grad_enabled() and x.requires_grad):
            return x
        return _GateFunction.apply(x, self)


def _per_sample(value: Coefficient, grad: torch.Tensor) -> Coefficient:
    """Broadcast a ``(B,)`` coefficient over the feature dims of ``grad``."""
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        if value.shape[0] != grad.shape[0]:
            raise ValueError(f'a per-sample gate coefficient has {value.shape[0]} entries '
                             f'for a batch of {grad.shape[0]}')
        return value.to(grad.dtype).view(-1, *([1] * (grad.dim() - 1)))
    if isinstance(value, torch.Tensor):
        return value.to(grad.dtype)
    return value
