"""One classifier shared by every modality (MLA, Zhang et al. CVPR 2024; ReconBoost, Hua et al.
ICML 2024).

Training on one modality at a time (MLA's sub-steps, ReconBoost's boosting phase)
reads the per-modality logits ``s_m = h(z_m)`` through
:meth:`SharedHeadFusion.analytic_logits`; the forward on all modalities fuses
those logits (MLA: at evaluation; ReconBoost: ``beta * sum_m s_m``, also trained
in its rectification phase).
"""
import math
import numbers
from typing import Dict, Optional, Union

import torch
from torch import nn

from mmbal.registry import MODELS
from .base_fusion import BaseFusion, ordered

EVAL_FUSIONS = ('entropy', 'fixed', 'boost')


# --- pure math (unit-tested against hand computation) ------------------------------------------
def sample_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy of the class softmax, ``-sum_c p log p`` in float64.

    Args:
        logits: (B, C).
    Returns:
        (B,) float64, detached.
    """
    logp = torch.log_softmax(logits.detach().double(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def batch_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The reference code's entropy: softmax over the **batch** (dim 0), summed over all entries.

    Args:
        logits: (B, C).
    Returns:
        () float64, detached: one value for the whole batch.
    """
    logp = torch.log_softmax(logits.detach().double(), dim=0)
    return -(logp.exp() * logp).sum()


def entropy_weights(logits: Dict[str, torch.Tensor]) -> torch.Tensor:
    """``lambda_{m,i} = softmax_m(-H_{m,i})``, per sample, in the order of ``logits``.

    Equals ``exp(max_n H_n,i - H_m,i) / sum_k exp(max_n H_n,i - H_k,i)``: the
    more certain a modality is on a sample, the more its logits count.

    Args:
        logits: ``{m: (B, C)}``.
    Returns:
        (M, B) float64, detached.
    """
    H = torch.stack([sample_entropy(s) for s in logits.values()])
    return torch.softmax(-H, dim=0)


def batch_entropy_weights(logits: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Reference-code variant: one weight per modality per batch, ``softmax_m(-H_m^batch)``.

    Args:
        logits: ``{m: (B, C)}``.
    Returns:
        (M,) float64, detached.
    """
    H = torch.stack([batch_entropy(s) for s in logits.values()])
    return torch.softmax(-H, dim=0)


def build_shared_head(in_channels: int, num_classes: int,
                      hidden_channels: Optional[int]) -> nn.Module:
    """``Linear(d, C)``, or ReconBoost's ``Linear(d, hidden) -> ReLU -> Linear(hidden, C)``."""
    if hidden_channels is None:
        return nn.Linear(in_channels, num_classes)
    return nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.ReLU(),
                         nn.Linear(hidden_channels, num_classes))


@MODELS.register_module()
class SharedHeadFusion(BaseFusion):
    """One head ``h`` applied to every modality's feature.

    Per-modality logits (analytic): ``s_m = h(z_m)`` for every modality
    present in ``features``. The fused output (the forward on all modalities)
    combines them:

    * ``eval_fusion='entropy'`` (default): per sample,
      ``f_i = sum_m lambda_{m,i} s_{m,i}`` with ``lambda_{., i} = softmax_m(-H_{m,i})``
      and ``H_{m,i}`` the entropy of ``softmax(s_{m,i})`` over classes; the
      weights are computed under ``no_grad`` (float64, then cast).
    * ``eval_fusion='fixed'``: ``f = sum_m w_m s_m`` with ``weights`` (the
      reference uses audio 0.55 / visual 0.45 on CREMA-D).
    * ``eval_fusion='boost'`` (ReconBoost): ``f = beta * sum_m s_m`` with a
      learnable scalar ``beta`` (``self.beta``, initialised to ``boost_rate``);
      ``f`` is differentiable in ``beta`` and in every ``s_m``. The analytic
      logits do not carry ``beta`` (argmax-equal while ``beta > 0``; log it).

    Args:
        in_channels: Feature size per modality; all must be equal (one head).
        num_classes: Number of classes C.
        eval_fusion: ``'entropy'``, ``'fixed'`` or ``'boost'``.
        weights: ``{modality: w_m}`` for ``'fixed'``, one entry per modality.
        boost_rate: Initial ``beta`` for ``'boost'`` (a finite number > 0; the
            reference uses 1.0, BalanceBenchmark 0.01).
        hidden_channels: None: ``h = Linear(d, C)``; an int: ``h = Linear(d,
            hidden) -> ReLU -> Linear(hidden, C)`` (ReconBoost's reference head,
            hidden 256). MLA's head projection needs the single Linear.
        reference_compat: Entropy fusion as the reference code computes it:
            softmax over the **batch** dimension and entropy summed over the
            whole batch, so every sample of a batch gets the same weights,
            which depend on the batch's composition.
    """

    supports_analytic = True
    outputs_logits = True

    def __init__(self, in_channels: Dict[str, int], num_classes: int,
                 eval_fusion: str = 'entropy', weights: Optional[Dict[str, float]] = None,
                 boost_rate: Optional[float] = None, hidden_channels: Optional[int] = None,
                 reference_compat: bool = False, init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        dims = set(self.in_channels.values())
        if len(dims) != 1:
            raise ValueError(f'SharedHeadFusion: one head is shared by all modalities, so '
                             f'their features must have the same size; in_channels='
                             f'{self.in_channels}. Give the encoders equal out_channels')
        if eval_fusion not in EVAL_FUSIONS:
            raise ValueError(f'SharedHeadFusion: eval_fusion={eval_fusion!r}; expected one of '
                             f'{EVAL_FUSIONS}')
        if eval_fusion == 'fixed':
            if weights is None or sorted(weights) != sorted(self.modalities):
                raise ValueError(f"SharedHeadFusion: eval_fusion='fixed' needs weights with one "
                                 f'entry per modality {self.modalities}, got {weights!r}')
        elif weights is not None:
            raise ValueError(f"SharedHeadFusion: weights={weights!r} are only used with "
                             f"eval_fusion='fixed' (eval_fusion={eval_fusion!r})")
        if eval_fusion == 'boost':
            if not (isinstance(boost_rate, numbers.Real) and not isinstance(boost_rate, bool)
                    and math.isfinite(boost_rate) and boost_rate > 0):
                raise ValueError(f"SharedHeadFusion: eval_fusion='boost' needs boost_rate, the "
                                 f'initial beta: a finite number > 0, got {boost_rate!r}')
        elif boost_rate is not None:
            raise ValueError(f"SharedHeadFusion: boost_rate={boost_rate!r} is only used with "
                             f"eval_fusion='boost' (eval_fusion={eval_fusion!r})")
        if hidden_channels is not None and (
                not isinstance(hidden_channels, int) or isinstance(hidden_channels, bool)
                or hidden_channels < 1):
            raise ValueError(f'SharedHeadFusion: hidden_channels={hidden_channels!r}; expected '
                             f'None (one Linear) or a positive integer')
        if not isinstance(reference_compat, bool):
            raise ValueError(f'SharedHeadFusion: reference_compat must be True or False, got '
                             f'{reference_compat!r}')
        self.eval_fusion = eval_fusion
        self.weights = None if weights is None else {m: float(weights[m])
                                                     for m in self.modalities}
        self.reference_compat = reference_compat
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.fc = build_shared_head(dims.pop(), num_classes, hidden_channels)
        self.beta = (nn.Parameter(torch.tensor(float(boost_rate)))
                     if eval_fusion == 'boost' else None)

    @property
    def shared_head(self) -> Union[nn.Linear, nn.Sequential]:
        """The classifier shared by all modalities (MLA projects its weight gradient)."""
        return self.fc

    def analytic_logits(self, features: Dict[str, torch.Tensor],
                        head: Optional[nn.Module] = None) -> Dict[str, torch.Tensor]:
        """``{m: (B, C)}`` = ``h(z_m)`` for every modality present (a pass may encode only some)."""
        return {m: self.fc(features[m]) for m in self.modalities if m in features}

    def fusion_weights(self, logits: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Weights ``(M, B)`` (or ``(M, 1)``) of the entropy and fixed fusions, detached."""
        batch = next(iter(logits.values())).shape[0]
        if self.eval_fusion == 'fixed':
            w = torch.tensor([self.weights[m] for m in logits], dtype=torch.float64)
            return w.view(-1, 1).expand(-1, batch)
        if self.reference_compat:
            return batch_entropy_weights(logits).view(-1, 1).expand(-1, batch)
        return entropy_weights(logits)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Fused logits ``(B, C)`` from ``{m: (B, d)}`` (all modalities)."""
        ordered(features, self.modalities)  # every modality must be present
        logits = self.analytic_logits(features)
        if self.eval_fusion == 'boost':
            return self.beta * torch.stack(list(logits.values())).sum(dim=0)
        with torch.no_grad():
            weights = self.fusion_weights(logits)
        fused = 0
        for w, s in zip(weights, logits.values()):
            fused = fused + w.to(device=s.device, dtype=s.dtype).unsqueeze(1) * s
        return fused
