"""Math shared by balance methods, in one place.

All results are detached: coefficients and scores never carry gradient.
Statistics (confidences, entropies, and the sums and ratios built from them)
are float64 (SPEC "Clarifications": in float32 a near tie of two batch scores
is decided by the summation order, and the entropy of a saturated probe loses
its largest term); callers cast only the final coefficient.
"""
from typing import Iterator, Tuple

import torch
import torch.distributed as dist
from torch import nn

EPS = 1e-8


def gt_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the true class per sample, in float64.

    Args:
        logits: (B, C). labels: (B,).
    Returns:
        (B,) detached float64.
    """
    probs = torch.softmax(logits.detach().double(), dim=1)
    return probs.gather(1, labels.view(-1, 1)).squeeze(1)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (identity without a process group), so replicas agree.

    Any dtype the backend reduces; statistics are float64 (gloo and NCCL sum it).
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shared_seed(base: int, iteration: int, index: int = 0) -> int:
    """A seed that every rank derives identically from the iteration number."""
    return (base * 1_000_003 + iteration * 8191 + index) % (2**63 - 1)


def encoder_conv_weights(encoder: nn.Module) -> Iterator[Tuple[str, nn.Parameter]]:
    """The 4-D convolution weights of an encoder (downsample 1x1 included).

    Methods that modulate "conv weights only" (OGM-GE) use this instead of
    matching parameter names.
    """
    for name, param in encoder.named_parameters():
        if param.dim() == 4:
            yield name, param


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax of each row, ``-sum_c p_c log p_c`` (natural log).

    Computed from ``log_softmax`` in float64, so a probability that underflows
    to 0 contributes 0 rather than NaN, and a saturated row keeps the term of
    its top class (in float32 ``log p_top`` rounds to 0).

    Args:
        logits: (B, C).
    Returns:
        (B,) detached float64.
    """
    logp = torch.log_softmax(logits.detach().double(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)
