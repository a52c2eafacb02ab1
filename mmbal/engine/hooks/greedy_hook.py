"""Greedy: balanced multi-modal learning (Wu, Jastrzebski, Cho, Geras, ICML 2022).

Spec (docs/methods/greedy.md; the equations come from the official code,
nyukat/greedy_multimodal_learning): a model with one branch (encoder + own
classifier) per modality and MMTM blocks between the encoders' stages
(``MMTMFusion``), trained on ``sum_m CE(h_m(z_m), y)``. After every regular
step's backward the hook measures, per modality m,

    mu(G)   = sum_{theta in G} ||grad theta||^2 / (sum_{theta in G} ||theta||^2 + eps)
    main_m  = the encoder of m and its classifier h_m (no MMTM parameter)
    byp_m   = the MMTM layers that excite m, plus the shared squeeze layers
              (counted for every modality)
    M_m    += mu(main_m),  B_m += mu(byp_m)                 (cumulative, never reset)
    BDR_m   = log10((B_m + eps) / (M_m + eps))

and, once the warm-up epochs are over, when max BDR - min BDR > threshold, the next
``curation_steps`` steps are re-balancing steps for k* = argmax_m BDR_m: their forward
gives branch k* no information from the other modalities (``PassPlan.isolated``; MMTM
uses its running-average excitation for k*), all parameters are still updated, and no
statistic is measured. A decision taken at step t acts from step t + 1.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmbal.balance.functional import EPS
from mmbal.engine.step import BalanceTerms, PassPlan, StepContext
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number


# --------------------------------------------------------------------------- pure math
def learning_speed(params: Sequence[nn.Parameter]) -> torch.Tensor:
    """``sum ||grad||^2 / (sum ||theta||^2 + eps)`` over a group, float64 (no grad = 0)."""
    if not params:
        raise ValueError('GreedyHook: a parameter group for the learning speed is empty')
    zero = torch.zeros((), dtype=torch.float64, device=params[0].device)
    grad_sq = sum((p.grad.detach().double().pow(2).sum() for p in params
                   if p.grad is not None), zero)
    weight_sq = sum((p.detach().double().pow(2).sum() for p in params), zero)
    return (grad_sq / (weight_sq + EPS)).cpu()


def conditional_speeds(bypass: torch.Tensor, main: torch.Tensor) -> torch.Tensor:
    """``BDR_m = log10((B_m + eps) / (M_m + eps))`` of the cumulative sums (M,)."""
    return torch.log10((bypass + EPS) / (main + EPS))


def cared_modality(bdr: torch.Tensor, threshold: float) -> Optional[int]:
    """Index of the modality to re-balance, argmax BDR, or None when max - min <= threshold.

    For two modalities this is the reference rule on ``d = BDR_0 - BDR_1``: 0 if
    ``d > threshold``, 1 if ``d < -threshold``.
    """
    if float(bdr.max() - bdr.min()) > threshold:
        return int(torch.argmax(bdr))
    return None


# --------------------------------------------------------------------------- hook
@HOOKS.register_module()
class GreedyHook(BaseBalanceHook):
    """Balances the branches' conditional learning speeds with MMTM re-balancing steps.

    Needs ``model.encoder_fusion`` declaring ``modality_parameters(m)`` and
    ``shared_parameters()`` (``MMTMFusion``) and a fusion with one classifier per
    branch declaring ``branch_parameters(m)`` (``LateFusion``, ``head=None``).
    Under DDP, ``model_wrapper_cfg.find_unused_parameters=True``: a re-balancing
    step leaves the cared modality's excitation layers unused.

    Args:
        threshold: Re-balance when ``max_m BDR_m - min_m BDR_m`` exceeds it
            (the reference's epsilon, 0.01).
        curation_steps: Re-balancing steps per decision (the reference's Q, 5).
        warmup_epochs: Epochs (from the start) with no re-balancing, while the
            sums still accumulate. The reference's ``starting_epoch=2`` counts
            epochs from 1, so it is one warm-up epoch (the default).
    """

    method = 'greedy'

    def __init__(self, threshold: float = 0.01, curation_steps: int = 5,
                 warmup_epochs: int = 1) -> None:
        super().__init__()
        check_number('GreedyHook', 'threshold', threshold, low=0,
                     meaning='the BDR gap that triggers re-balancing')
        check_number('GreedyHook', 'curation_steps', curation_steps, low=1, integer=True,
                     meaning='re-balancing steps per decision')
        check_number('GreedyHook', 'warmup_epochs', warmup_epochs, low=0, integer=True,
                     meaning='epochs before the first re-balancing')
        self.threshold = float(threshold)
        self.curation_steps = int(curation_steps)
        self.warmup_epochs = int(warmup_epochs)
        self.modalities: List[str] = []
        self.main_sum: Optional[torch.Tensor] = None  # (M,) float64, cumulative mu(main_m)
        self.bypass_sum: Optional[torch.Tensor] = None  # (M,) float64, cumulative mu(byp_m)
        self.cared: Optional[str] = None  # modality of the current re-balancing window
        self.curation_left = 0  # re-balancing steps still to run, from the next one

    # --- setup ----------------------------------------------------------------------------
    def setup(self, model) -> None:
        if len(model.modalities) < 2:
            raise ValueError(f'GreedyHook balances modalities against each other; the model '
                             f'has {list(model.modalities)}')
        self.parameter_groups(model)  # raises on a model without the declared groups
        self.modalities = list(model.modalities)
        m = len(self.modalities)
        if self.main_sum is None:
            self.main_sum = torch.zeros(m, dtype=torch.float64)
            self.bypass_sum = torch.zeros(m, dtype=torch.float64)
        elif self.main_sum.numel() != m:
            raise ValueError(f'GreedyHook: the checkpoint holds sums for '
                             f'{self.main_sum.numel()} modalities; the model has {m}')
        print_log(f'GreedyHook: modalities {self.modalities}, threshold={self.threshold}, '
                  f'curation_steps={self.curation_steps}, warmup_epochs={self.warmup_epochs}',
                  logger='current')

    @staticmethod
    def parameter_groups(model):
        """``(main, bypass)``: ``{m: [params]}`` from the model's declared groups."""
        mmtm = getattr(model, 'encoder_fusion', None)
        if not (callable(getattr(mmtm, 'modality_parameters', None))
                and callable(getattr(mmtm, 'shared_parameters', None))):
            raise TypeError(
                f'GreedyHook needs an in-encoder fusion that declares its per-modality and '
                f'shared parameters, e.g. model.encoder_fusion=dict(type=\'MMTMFusion\', '
                f'stages=(1, 2, 3)); the model has encoder_fusion={type(mmtm).__name__}')
        try:
            branches = {m: model.fusion.branch_parameters(m) for m in model.modalities}
        except NotImplementedError as err:
            raise TypeError(
                f'GreedyHook trains one classifier per branch and needs a fusion that '
                f'declares them, e.g. model.fusion=dict(type=\'LateFusion\', num_classes=C) '
                f'with model.head=None; the model has {type(model.fusion).__name__}') from err
        shared = mmtm.shared_parameters()
        main = {m: [*model.encoders[m].parameters(), *branches[m]] for m in model.modalities}
        bypass = {m: [*mmtm.modality_parameters(m), *shared] for m in model.modalities}
        return main, bypass

    def before_train(self, runner) -> None:
        super().before_train(runner)
        model = runner.model
        if isinstance(model, DistributedDataParallel) and not model.find_unused_parameters:
            raise ValueError(
                'GreedyHook: a re-balancing step leaves the cared modality\'s MMTM excitation '
                'layers unused, so under DDP set model_wrapper_cfg=dict(type='
                "'MMDistributedDataParallel', find_unused_parameters=True) in the config "
                f'(the model is wrapped in {type(model).__name__} with '
                'find_unused_parameters=False)')

    # --- the training step's call points ---------------------------------------------------
    def plan_passes(self, ctx: StepContext) -> List[PassPlan]:
        """The branch losses replace the base loss; a re-balancing step isolates k*."""
        isolated = [self.cared] if self.curation_left > 0 else []
        return [PassPlan(base_loss=False, logits='analytic', isolated=isolated)]

    def after_forward(self, ctx: StepContext, outputs, data_samples) -> BalanceTerms:
        """``loss_branch_m = CE(h_m(z_m), y)`` for every modality."""
        labels = data_samples['gt_label']
        logits = outputs.logits('analytic')
        return BalanceTerms(losses={f'loss_branch_{m}': F.cross_entropy(s, labels)
                                    for m, s in logits.items()})

    @torch.no_grad()
    def edit_grads(self, ctx: StepContext) -> None:
        """Reads the gradients (edits none): the speeds, the sums and the next decision."""
        if self.curation_left > 0:  # this update was a re-balancing step
            self.log('curating', 1.0)
            self.curation_left -= 1
            if self.curation_left == 0:
                self.cared = None
            return
        main, bypass = self.parameter_groups(ctx.model)
        self.main_sum += torch.stack([learning_speed(main[m]) for m in self.modalities])
        self.bypass_sum += torch.stack([learning_speed(bypass[m]) for m in self.modalities])
        bdr = conditional_speeds(self.bypass_sum, self.main_sum)
        for m, value in zip(self.modalities, bdr.tolist()):
            self.log(f'bdr_{m}', value)
        self.log('gap', float(bdr.max() - bdr.min()))
        self.log('curating', 0.0)
        if ctx.epoch < self.warmup_epochs:
            return
        k = cared_modality(bdr, self.threshold)
        if k is not None:
            self.cared = self.modalities[k]
            self.curation_left = self.curation_steps

    # --- state in checkpoints -------------------------------------------------------------
    def state_dict(self) -> Dict[str, object]:
        return {'main_sum': None if self.main_sum is None else self.main_sum.clone(),
                'bypass_sum': None if self.bypass_sum is None else self.bypass_sum.clone(),
                'cared': self.cared, 'curation_left': int(self.curation_left)}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        for key in ('main_sum', 'bypass_sum', 'cared', 'curation_left'):
            if key not in state:
                raise KeyError(f'GreedyHook: the checkpoint\'s greedy state lacks {key!r}; '
                               f'it has {sorted(state)}')
        sums = [torch.as_tensor(state[k], dtype=torch.float64).clone()
                for k in ('main_sum', 'bypass_sum')]
        if sums[0].shape != sums[1].shape or not all(math.isfinite(v) for s in sums
                                                      for v in s.tolist()):
            raise ValueError(f'GreedyHook: the checkpoint\'s sums {sums} are not two finite '
                             f'vectors of one length')
        self.main_sum, self.bypass_sum = sums
        self.cared = state['cared']
        self.curation_left = int(state['curation_left'])
