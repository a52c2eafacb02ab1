"""Math shared by balance methods, in one place.

All results are detached: coefficients and scores never carry gradient.
Statistics (confidences, entropies, and the sums and ratios built from them)
are float64 (docs/adding_a_method.md, "Call points": in float32 a near tie of two batch scores
is decided by the summation order, and the entropy of a saturated probe loses
its largest term); callers cast only the final coefficient.
"""
from typing import Iterator, List, Tuple

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


#: ``param_filter`` values of methods that edit a parameter group of an encoder:
#: ``'conv'`` = every 4-D convolution weight (OGM-GE's and G2D reference_compat's),
#: ``'weights'`` = every parameter with >= 2 dims (ours: also Linear and Conv1d weights).
PARAM_FILTERS = ('conv', 'weights')


def filtered_params(encoder: nn.Module, param_filter: str) -> List[Tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` group of ``encoder`` that ``param_filter`` selects.

    ``'conv'``: the encoder's declared conv weights (``named_conv_weights()``,
    chosen by module type) that are 4-D, or every 4-D parameter
    (:func:`encoder_conv_weights`) for a module that declares none. ``'weights'``:
    every parameter with two or more dims (never biases or norm affines).
    Selection is by module type and shape, never by parameter names.
    """
    if param_filter == 'conv':
        declared = getattr(encoder, 'named_conv_weights', None)
        source = declared() if callable(declared) else encoder_conv_weights(encoder)
        return [(n, p) for n, p in source if p.dim() == 4]
    if param_filter == 'weights':
        return [(n, p) for n, p in encoder.named_parameters() if p.dim() >= 2]
    raise ValueError(f'param_filter={param_filter!r}; expected one of {PARAM_FILTERS}')


def check_param_filter(encoders, param_filter: str, owner: str) -> None:
    """Raise, naming the encoder, if ``param_filter`` selects nothing in one of ``encoders``.

    A method must never compute and log a coefficient that no parameter receives.

    Args:
        encoders: ``{modality: encoder}``.
        param_filter: One of :data:`PARAM_FILTERS`.
        owner: The method, for the message (e.g. ``'OGMGEHook'``).
    """
    if param_filter not in PARAM_FILTERS:
        raise ValueError(f'{owner}: param_filter={param_filter!r}; expected one of '
                         f'{PARAM_FILTERS}')
    for m, encoder in encoders.items():
        if not filtered_params(encoder, param_filter):
            what = ('4-D convolution weight' if param_filter == 'conv'
                    else 'parameter with >= 2 dims')
            hint = (" Set param_filter='weights' (every >= 2-D weight, ours) to modulate it."
                    if param_filter == 'conv' else '')
            raise ValueError(f'{owner}: param_filter={param_filter!r} selects no parameter of '
                             f'encoder {m!r} ({type(encoder).__name__} has no {what}), so its '
                             f'coefficient would reach nothing.{hint}')


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
