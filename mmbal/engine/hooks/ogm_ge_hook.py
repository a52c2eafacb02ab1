"""OGM-GE: on-the-fly gradient modulation with generalization enhancement (Peng et al. 2022).

Spec (docs/methods/ogm_ge.md): score_m = sum_i softmax(s_m)_i[y_i]
over the batch (analytic per-modality logits, all-reduced under DDP);
ratio_m = score_m / mean_{n != m} score_n; eq. 10: k_m = 1 - tanh(alpha *
ratio_m) when ratio_m > 1, else 1. Inside the inclusive epoch window, every
4-D conv-weight gradient of encoder m (``param_filter='conv'``; ``'weights'``:
every >= 2-D weight, ours) becomes g * k_m (+ sigma * eps for GE, on every
encoder, sigma = unbiased std of the unmodulated g + 1e-8). A filter that
selects nothing in an encoder is an error at setup.
Under gradient accumulation the scores are summed over the micro-batches of
an update and k is decided once, from those sums, when the gradients are
edited: k micro-batches of B equal one batch of kB.
Scores, ratios and k are float64 (in float32 a near tie of the two scores can
flip k); k is cast to the gradient's dtype only when it is applied.
"""
from typing import Dict, Optional, Sequence

import torch

from mmbal.balance import all_reduce_sum, gt_confidence, shared_seed
from mmbal.balance.functional import (EPS, PARAM_FILTERS, check_param_filter,
                                      filtered_params)
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

VARIANTS = ('OGM_GE', 'OGM')


def ogm_coefficients(scores: Dict[str, torch.Tensor], alpha: float,
                     reference_compat: bool = False) -> Dict[str, Dict[str, torch.Tensor]]:
    """Ratios and eq. 10 coefficients from per-modality batch scores.

    ``reference_compat`` (M = 2): the reference code's else-branch suppresses
    the first modality on an exact tie (ratio == 1).
    Everything is computed in float64: in float32 the decision flips for
    ``|ratio - 1|`` up to ~4e-8 depending on the order the scores were summed in.
    Returns ``{'ratio': {m: r}, 'k': {m: k}}`` (0-d float64 tensors).
    """
    names: Sequence[str] = list(scores)
    if len(names) < 2:
        raise ValueError('OGM-GE needs at least two modalities')
    scores = {m: torch.as_tensor(scores[m]).double() for m in names}
    ratios, ks = {}, {}
    for i, m in enumerate(names):
        others = torch.stack([scores[n] for n in names if n != m]).mean()
        ratio = scores[m] / (others + EPS)
        # Decide on the raw scores: the eps in the ratio must not move a tie below 1.
        suppress = scores[m] > others
        if reference_compat and len(names) == 2 and i == 0:
            suppress = scores[m] >= others
        ratios[m] = ratio
        ks[m] = torch.where(suppress, 1 - torch.tanh(alpha * ratio), torch.ones_like(ratio))
    return {'ratio': ratios, 'k': ks}


@HOOKS.register_module()
class OGMGEHook(BaseBalanceHook):
    """Modulate the conv-weight gradients of the dominant encoder(s) by eq. 10.

    Args:
        alpha: alpha of eq. 10 (0.8 on CREMA-D, 0.1 on VGGSound in the reference).
        modulation_starts / modulation_ends: 0-based epochs, both inclusive.
        variant: ``'OGM_GE'`` (with noise) or ``'OGM'`` (without).
        reference_compat: the reference code's tie rule (see :func:`ogm_coefficients`).
        seed: Base seed of the GE noise (identical on every rank).
        param_filter: Which gradients of each encoder are modulated (and get GE
            noise): ``'conv'`` (the paper's: every 4-D convolution weight) or
            ``'weights'`` (ours: every parameter with >= 2 dims, e.g. for MLP
            encoders). Setup raises, naming the encoder, if it selects nothing.
    """

    method = 'ogm_ge'

    def __init__(self, alpha: float, modulation_starts: int = 0, modulation_ends: int = 50,
                 variant: str = 'OGM_GE', reference_compat: bool = False, seed: int = 0,
                 param_filter: str = 'conv') -> None:
        super().__init__()
        check_number('OGMGEHook', 'alpha', alpha, low=0, meaning='alpha of eq. 10')
        for field, value in (('modulation_starts', modulation_starts),
                             ('modulation_ends', modulation_ends)):
            check_number('OGMGEHook', field, value, low=0, integer=True,
                         meaning='a 0-based epoch')
        check_number('OGMGEHook', 'seed', seed, integer=True)
        if variant not in VARIANTS:
            raise ValueError(f'OGMGEHook: unknown variant {variant!r}; expected one of {VARIANTS}')
        if param_filter not in PARAM_FILTERS:
            raise ValueError(f'OGMGEHook: param_filter={param_filter!r}; expected one of '
                             f'{PARAM_FILTERS}')
        if modulation_ends < modulation_starts:
            raise ValueError(f'OGMGEHook: modulation_ends={modulation_ends} is before '
                             f'modulation_starts={modulation_starts}')
        self.alpha = alpha
        self.modulation_starts = modulation_starts
        self.modulation_ends = modulation_ends
        self.variant = variant
        self.reference_compat = reference_compat
        self.seed = seed
        self.param_filter = param_filter
        # score sums of the micro-batches of the current update (all-reduced), and their k
        self.score_sums: Optional[torch.Tensor] = None
        self.k: Dict[str, torch.Tensor] = {}

    def setup(self, model) -> None:
        if not model.fusion.supports_analytic:
            raise ValueError(f'OGMGEHook needs analytic per-modality logits, which '
                             f'{type(model.fusion).__name__} does not have')
        if len(model.modalities) < 2:
            raise ValueError('OGMGEHook needs at least two modalities')
        check_param_filter({m: model.encoders[m] for m in model.modalities},
                           self.param_filter, 'OGMGEHook')

    def in_window(self, epoch: int) -> bool:
        return self.modulation_starts <= epoch <= self.modulation_ends

    def decide(self, modalities: Sequence[str]) -> Dict[str, Dict[str, torch.Tensor]]:
        """Eq. 10 from the score sums accumulated so far in this update."""
        return ogm_coefficients(dict(zip(modalities, self.score_sums)), self.alpha,
                                self.reference_compat)

    def after_forward(self, ctx, outputs, data_samples) -> None:
        """Add this micro-batch's scores to the update's; log ratio and k of the sums so far."""
        model = ctx.model
        labels = data_samples['gt_label']
        logits = outputs.logits('analytic')
        # float64 per-sample confidences, summed and all-reduced in float64
        local = torch.stack([gt_confidence(logits[m], labels).sum() for m in model.modalities])
        scores = all_reduce_sum(local)
        self.score_sums = scores if self.score_sums is None else self.score_sums + scores
        result = self.decide(model.modalities)
        self.k = result['k']
        for m in model.modalities:
            self.log(f'ratio_{m}', result['ratio'][m])
            self.log(f'k_{m}', self.k[m])
        return None

    @torch.no_grad()
    def edit_grads(self, ctx) -> None:
        """Decide k once from the update's score sums, modulate, and start the next update."""
        model = ctx.model
        if self.score_sums is None:
            return
        k_all = self.decide(model.modalities)['k']
        self.score_sums, self.k = None, {}
        if not self.in_window(ctx.epoch):
            return
        for i, m in enumerate(model.modalities):
            k = k_all[m]
            for j, (_, param) in enumerate(filtered_params(model.encoders[m],
                                                           self.param_filter)):
                grad = param.grad
                if grad is None:
                    continue
                if self.variant == 'OGM_GE':
                    sigma = grad.std() + 1e-8
                    gen = torch.Generator(device=grad.device).manual_seed(
                        shared_seed(self.seed, ctx.iter, i * 10_000 + j))
                    noise = torch.randn(grad.shape, generator=gen, device=grad.device,
                                        dtype=grad.dtype)
                    grad.mul_(k.to(grad.dtype)).add_(noise * sigma)
                else:
                    grad.mul_(k.to(grad.dtype))
