"""AIM's block scores, block losses, modality weights and depth coefficients (eqs. 9-12, 14-15).

A block's output is scored against the depth-matched class prototypes: the
logit of class ``k`` is minus the Euclidean distance between the flattened
sample and the flattened depth-``d`` prototype ``k`` (eq. 9). Scores are
detached float64 statistics; losses keep their graph.
"""
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mmbal.models.backbones.base_encoder import BaseEncoder
from .decoupling import cloned_buffers

EPS = 1e-8
Pool = Optional[Callable[[torch.Tensor], torch.Tensor]]


def prototype_logits(h: torch.Tensor, prototypes: torch.Tensor, pool: Pool = None
                     ) -> torch.Tensor:
    """Eq. 9: ``logits[i, k] = -|| flat(h_i) - flat(P_k) ||_2``.

    Args:
        h: ``(B, ...)`` block outputs in the stage layout (all frames of a sample
            in one row after flattening).
        prototypes: ``(K, ...)`` the depth-matched prototypes, same per-sample
            shape as ``h``; treated as constants (detached).
        pool: Applied to both before the distance (ours; default None: the full
            shape, as the method defines it), e.g. the encoder's ``pool``.
    Returns:
        ``(B, K)`` logits, differentiable w.r.t. ``h``.
    """
    prototypes = prototypes.detach().to(h.dtype)
    if pool is not None:
        h, prototypes = pool(h), pool(prototypes)
    if tuple(h.shape[1:]) != tuple(prototypes.shape[1:]):
        raise ValueError(f'prototype_logits: block output per sample {tuple(h.shape[1:])} but '
                         f'prototypes per class {tuple(prototypes.shape[1:])}; expected the '
                         f'same shape (prototypes of the same depth)')
    # The difference-based distance (no |a|^2 + |b|^2 - 2ab cancellation).
    dist = torch.cdist(h.flatten(1).unsqueeze(0), prototypes.flatten(1).unsqueeze(0),
                       compute_mode='donot_use_mm_for_euclid_dist')
    return -dist.squeeze(0)


def carried_logits(encoder: BaseEncoder, stage: int, h: torch.Tensor,
                   classify: Callable[[torch.Tensor], torch.Tensor], frozen: bool = False
                   ) -> torch.Tensor:
    """``score_source='label'``: carry stage ``stage``'s output through the later stages.

    The later stages run on cloned buffers, so the extra passes never move the
    encoder's BN running statistics.

    Args:
        encoder: The modality's encoder.
        stage: Index of the stage that produced ``h`` (0-based).
        h: Its output (stage layout), with its graph.
        classify: The modality's share of the classifier, pooled feature
            ``(B, C_m)`` -> ``(B, num_classes)`` (e.g. its analytic logits);
            with ``frozen`` it must not train anything itself.
        frozen: Run the later stages on detached parameters (for ``L_pdm``,
            which trains the decoupling module only).
    """
    for j in range(stage + 1, encoder.num_stages):
        params = cloned_buffers(encoder, j)
        if frozen:
            params.update((n, p.detach()) for n, p in encoder.stage_parameters(j))
        h = encoder.run_stage(j, h, params)
    return classify(encoder.pool(h))


class _ModalityShare(nn.Module):
    """A modality's analytic logits ``s_m`` as a module, so it can run on other parameters."""

    def __init__(self, fusion: nn.Module, head: Optional[nn.Module], modality: str) -> None:
        super().__init__()
        self.fusion, self.head, self.modality = fusion, head, modality

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fusion.analytic_logits({self.modality: z}, self.head)[self.modality]


def frozen_share(model: nn.Module, modality: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The modality's share of the classifier (its analytic logits) on detached parameters.

    For ``score_source='label'``: pooled feature ``(B, C_m)`` -> ``(B, num_classes)``;
    the gradient reaches the feature, never the fusion or the head.
    """
    if not getattr(model.fusion, 'supports_analytic', False):
        raise ValueError(f"score_source='label' needs the analytic per-modality logits of the "
                         f'fusion, which {type(model.fusion).__name__} does not have')
    share = _ModalityShare(model.fusion, model.head, modality)
    frozen = {n: p.detach() for n, p in share.named_parameters()}
    return lambda z: functional_call(share, frozen, (z, ))


def block_score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 9 score: batch mean of ``softmax(logits)[y]``, detached float64, 0-d."""
    prob = torch.softmax(logits.detach().to(torch.float64), dim=1)
    return prob.gather(1, labels.reshape(-1, 1).long()).mean()


def block_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 10: ``CE(logits, y)`` (batch mean), with its graph."""
    return F.cross_entropy(logits, labels.long())


def block_weights(scores: torch.Tensor, aux_scores: Optional[torch.Tensor] = None
                  ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Eqs. 11-12: ``[rho, rho~] = softmax(-s, -s~)`` over the 2M values of one depth.

    Args:
        scores: ``(M,)`` original-block scores ``s_d^m``.
        aux_scores: ``(M,)`` auxiliary-block scores ``s~_d^m``; None for
            ``pam=False`` (softmax over the M original blocks only).
    Returns:
        ``(rho (M,), rho~ (M,) or None)``, detached float64.
    """
    s = scores.detach().to(torch.float64).reshape(-1)
    if aux_scores is None:
        return torch.softmax(-s, dim=0), None
    s_aux = aux_scores.detach().to(torch.float64).reshape(-1)
    if s_aux.shape != s.shape:
        raise ValueError(f'block_weights: {s.numel()} original scores but {s_aux.numel()} '
                         f'auxiliary scores; expected one of each per modality')
    rho = torch.softmax(-torch.cat([s, s_aux]), dim=0)
    return rho[:s.numel()], rho[s.numel():]


def depth_coefficient(scores: torch.Tensor, dam: bool = True) -> torch.Tensor:
    """Eqs. 14-15: ``alpha_d = std(s_d) / (mean(s_d) + eps)`` (population std), detached.

    Only the original-block scores enter. ``dam=False`` gives 1.
    """
    s = scores.detach().to(torch.float64).reshape(-1)
    if not dam:
        return torch.ones((), dtype=torch.float64, device=s.device)
    return s.std(unbiased=False) / (s.mean() + EPS)


def depth_loss(losses: Sequence[torch.Tensor], rho: torch.Tensor,
               aux_losses: Optional[Sequence[torch.Tensor]] = None,
               rho_aux: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Eq. 12: ``L_d = sum_m rho_d^m L_d^m + rho~_d^m L~_d^m`` (the second sum only with PAM)."""
    if (aux_losses is None) != (rho_aux is None):
        raise ValueError('depth_loss: give both aux_losses and rho_aux, or neither')
    if len(losses) != rho.numel():
        raise ValueError(f'depth_loss: {len(losses)} losses for {rho.numel()} weights')
    total = sum(w.to(l.dtype) * l for w, l in zip(rho, losses))
    if aux_losses is not None:
        if len(aux_losses) != rho_aux.numel():
            raise ValueError(f'depth_loss: {len(aux_losses)} auxiliary losses for '
                             f'{rho_aux.numel()} weights')
        total = total + sum(w.to(l.dtype) * l for w, l in zip(rho_aux, aux_losses))
    return total


def modulation_loss(alphas: Sequence[torch.Tensor], depth_losses: Sequence[torch.Tensor]
                    ) -> torch.Tensor:
    """Eq. 15: ``L_mod = sum_d alpha_d L_d``."""
    if len(alphas) != len(depth_losses):
        raise ValueError(f'modulation_loss: {len(alphas)} coefficients for '
                         f'{len(depth_losses)} depth losses')
    return sum(a.to(l.dtype) * l for a, l in zip(alphas, depth_losses))
