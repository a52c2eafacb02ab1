"""AIM's parameter decoupling (PAM, eqs. 6-8 and 13): one module per (modality, block).

A block's parameters ``theta`` (every parameter of the stage flattened in
``named_parameters`` order, BN affine included, buffers excluded) are mapped to a
latent ``z = Phi_lat(theta)`` of size 512, masked by ``w = sigmoid(Phi_mask(z))``
and decoded into an auxiliary block ``theta_b = Psi(z * w)`` and a complementary
block ``theta_g = Psi(z * (1 - w))``. Both run through ``torch.func.functional_call``
on cloned buffers, so the real block's BN running statistics never move.

Two graphs, by design:

* the auxiliary loss sees ``theta_b`` built from the *live* ``theta`` through the
  module's *detached* weights, so it trains the block through the module
  (eq. 13: ``dL/dtheta = J^T dL/dtheta_b``) and never the module;
* ``L_pdm = L_g + L_re`` sees the *detached* ``theta`` and input through the
  *live* module, so it trains the module only.
"""
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mmbal.models.backbones.base_encoder import BaseEncoder
from .maps import build_map, grid

LATENT = 512


def cloned_buffers(encoder: BaseEncoder, stage: int) -> Dict[str, torch.Tensor]:
    """Copies of stage ``stage``'s buffers (BN running statistics), keyed like ``run_stage``.

    Running a stage on them in train mode normalises with the batch statistics
    and updates the copies; the encoder's own statistics are left as they are.
    """
    return {n: b.detach().clone() for n, b in encoder.stage_module(stage).named_buffers()}


class BlockParams:
    """Names, shapes and flattening of one encoder stage's parameters.

    Args:
        encoder: The encoder.
        stage: Stage index (0-based; AIM's block ``d = stage + 1``).
    """

    def __init__(self, encoder: BaseEncoder, stage: int) -> None:
        self.encoder, self.stage = encoder, stage
        named = list(encoder.stage_parameters(stage))
        if not named:
            raise ValueError(f'{type(encoder).__name__} stage {stage} has no parameters; '
                             f'AIM decouples block parameters')
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.num_params = sum(self.numels)

    def live(self) -> List[torch.Tensor]:
        """The stage's parameters now (with their graph), in ``names`` order."""
        params = dict(self.encoder.stage_parameters(self.stage))
        return [params[n] for n in self.names]

    def flatten(self) -> torch.Tensor:
        """``theta``: the live parameters flattened into one ``(N,)`` vector."""
        return torch.cat([p.reshape(-1) for p in self.live()])

    def unflatten(self, theta: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``(N,)`` -> ``{name: tensor}`` in the stage's shapes."""
        if theta.shape != (self.num_params, ):
            raise ValueError(f'BlockParams: theta of shape {tuple(theta.shape)}; stage '
                             f'{self.stage} has {self.num_params} parameters')
        chunks = torch.split(theta, self.numels)
        return {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes)}

    def run(self, h: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The stage with parameters ``theta`` on ``h`` (stage layout), on cloned buffers.

        In train mode BN normalises with the batch statistics and updates the
        clones; the encoder's own running statistics are left as they are.
        """
        return self.encoder.run_stage(self.stage, h, {**self.unflatten(theta),
                                                      **cloned_buffers(self.encoder, self.stage)})


class DecouplingModule(nn.Module):
    """``theta -> z = Phi_lat(theta) -> w = sigmoid(Phi_mask(z))``; ``Psi`` decodes.

    Args:
        num_params: N, the block's parameter count.
        latent: Size of ``z`` (512 in the method).
        pdm_map: ``'kron'`` (ours: a sum of Kronecker products, one linear
            layer, full-size decoder bias) or ``'dense'`` (the literal
            ``Linear(N, 512)`` / ``Linear(512, N)``, ~1025 N weights).
        rank: Kronecker terms per map (``'kron'`` only).

    ``Phi_mask`` is one ``Linear(latent, latent)`` (ours: the method does not
    give its form).
    """

    def __init__(self, num_params: int, latent: int = LATENT, pdm_map: str = 'kron',
                 rank: int = 8) -> None:
        super().__init__()
        self.num_params, self.latent = num_params, latent
        self.encoder = build_map(pdm_map, num_params, latent, rank)   # Phi_lat
        self.mask = nn.Linear(latent, latent)                         # Phi_mask
        self.decoder = build_map(pdm_map, latent, num_params, rank)   # Psi

    def forward(self, theta: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``theta_b``, ``theta_g``, ``theta_rec = Psi(z)`` (``(N,)`` each), ``mask`` (latent)."""
        z = self.encoder(theta)
        w = torch.sigmoid(self.mask(z))
        return dict(theta_b=self.decoder(z * w), theta_g=self.decoder(z * (1 - w)),
                    theta_rec=self.decoder(z), mask=w)

    def auxiliary(self, theta: torch.Tensor) -> torch.Tensor:
        """``theta_b`` from ``theta`` (live) through this module's detached weights (eq. 13)."""
        frozen = {n: p.detach() for n, p in self.named_parameters()}
        return functional_call(self, frozen, (theta, ))['theta_b']


def pam_terms(module: DecouplingModule, block: BlockParams, h_in: torch.Tensor,
              labels: torch.Tensor, logits_fn: Callable[[torch.Tensor], torch.Tensor]
              ) -> Dict[str, torch.Tensor]:
    """The PAM quantities of one (modality, block).

    Args:
        module: The block's decoupling module.
        block: The block's parameters.
        h_in: The block's input (stage layout), not detached: the auxiliary
            loss reaches the earlier blocks through it, like the block's own loss.
        labels: ``(B,)``.
        logits_fn: Block output -> ``(B, K)`` logits (eq. 9 against the depth
            prototypes, or the carried logits of ``score_source='label'``).
    Returns:
        ``aux_logits`` (graph to ``theta`` and ``h_in``, not to the module),
        ``loss_g`` (CE of the complementary block on the detached input),
        ``loss_re`` (``||theta - Psi(Phi_lat(theta))||^2``, summed), ``loss_pdm``
        (their sum) and ``mask_mean`` (detached float64). ``loss_pdm`` reaches
        the module only, provided ``logits_fn`` has no live parameters of its own
        (eq. 9 logits have none; for carried logits pass ``frozen=True``).
    """
    if module.num_params != block.num_params:
        raise ValueError(f'pam_terms: the module maps {module.num_params} parameters but '
                         f'stage {block.stage} has {block.num_params}')
    theta = block.flatten()
    aux_logits = logits_fn(block.run(h_in, module.auxiliary(theta)))
    out = module(theta.detach())
    comp_logits = logits_fn(block.run(h_in.detach(), out['theta_g']))
    loss_g = F.cross_entropy(comp_logits, labels.long())
    loss_re = (theta.detach() - out['theta_rec']).pow(2).sum()
    return dict(aux_logits=aux_logits, loss_g=loss_g, loss_re=loss_re,
                loss_pdm=loss_g + loss_re,
                mask_mean=out['mask'].detach().to(torch.float64).mean())


def map_size(num_params: int, latent: int = LATENT, pdm_map: str = 'kron',
             rank: int = 8) -> Tuple[int, int]:
    """``(parameter count, float32 bytes)`` of one decoupling module, without building it."""
    mask = latent * latent + latent
    if pdm_map == 'dense':
        count = 2 * num_params * latent + latent + num_params + mask
    elif pdm_map == 'kron':
        (n1, n2), (a1, a2) = grid(num_params), grid(latent)
        count = 2 * rank * (a1 * n1 + a2 * n2) + latent + num_params + mask
    else:
        build_map(pdm_map, 1, 1)  # raises the error naming the choices
    return count, 4 * count
