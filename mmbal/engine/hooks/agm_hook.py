"""AGM: adaptive gradient modulation with Shapley mono-modal logits (Li et al., ICCV 2023).

Spec (docs/methods/agm.md), pinned to the official code (the paper could not be read):

* coalition logits v(S) = f(x_S, 0): the network on the batch with the modalities
  outside S muted (all-zero inputs after the data preprocessor; ``mask='feature'``,
  ours: zero features), in eval mode and with autograd on; v(all) = T, the
  train-mode fused logits; v(empty) = 0;
* Shapley mono-modal logits phi_m = sum_{S in M\\{m}} |S|! (M-|S|-1)! / M!
  [v(S + m) - v(S)], so sum_m phi_m = T (M = 2: phi_a = (T - f(0, v) + f(a, 0)) / 2);
* s_m = batch mean of -log max(softmax(phi_m)[y], 1e-8) (all-reduced under DDP),
  r_m = exp(M/(M-1) (mean(s) - s_m)), r*_m the same from t, the cumulative mean of
  s_m over all previous iterations (0 at the first);
  k_m = exp(alpha min(r*_m - r_m, c)); then t is updated with this iteration's s;
* inside the epoch window the loss is CE(sum_m G_{k_m}(phi_m), y), with G_k the
  identity forward and x k backward: the hook returns the surrogate
  ``loss_agm = loss(sum_m G_{k_m}(phi_m)) - loss(T)`` (value 0 up to rounding), so
  that the model's loss(T) plus it has exactly AGM's gradient;
* after backward: if an element of the classifier's weight gradient exceeds the
  threshold in absolute value, every gradient of the model is clipped to a global
  norm (the code's CREMA-D rule: 1 and 1).
"""
import itertools
import math
from typing import Dict, FrozenSet, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from torch import nn

from mmbal.balance import all_reduce_sum, eval_mode, gt_confidence
from mmbal.engine.step import BalanceTerms
from mmbal.models.utils import GradientGate
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

MASKS = ('input', 'feature')
#: Floor of the true-class probability in the score (the code's 1e-8).
PROB_FLOOR = 1e-8
Coalition = FrozenSet[str]


# --------------------------------------------------------------------------- pure math
def coalitions(modalities: Sequence[str]) -> List[Coalition]:
    """Every non-empty proper subset of ``modalities``: the 2^M - 2 muted passes."""
    names = list(modalities)
    return [frozenset(c) for size in range(1, len(names))
            for c in itertools.combinations(names, size)]


def shapley_logits(values: Dict[Coalition, torch.Tensor],
                   modalities: Sequence[str]) -> Dict[str, torch.Tensor]:
    """``phi_m = sum_{S in M\\{m}} |S|!(M-|S|-1)!/M! [v(S + m) - v(S)]`` with v(empty) = 0.

    Args:
        values: Logits of every non-empty coalition (``frozenset`` of modality
            names; the full set is the fused logits T).
        modalities: All modalities, M >= 2.
    Returns:
        ``{m: phi_m}``; they add up to v(all).
    """
    names = list(modalities)
    n = len(names)
    if n < 2:
        raise ValueError(f'AGM is defined for two or more modalities, got {names}')
    missing = [sorted(s) for s in coalitions(names) + [frozenset(names)] if s not in values]
    if missing:
        raise KeyError(f'shapley_logits: no logits for the coalitions {missing}')
    phi = {}
    for m in names:
        others = [o for o in names if o != m]
        total = 0
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for rest in itertools.combinations(others, size):
                without = frozenset(rest)
                gain = values[without | {m}] - (values[without] if without else 0)
                total = total + weight * gain
        phi[m] = total
    return phi


def ce_sums(phi: Dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """``[sum_i -log max(softmax(phi_m)_i[y_i], 1e-8) for m] + [B]``, float64, detached."""
    sums = [-gt_confidence(p, labels).clamp(min=PROB_FLOOR).log().sum() for p in phi.values()]
    count = torch.tensor(float(labels.shape[0]), dtype=torch.float64, device=labels.device)
    return torch.stack([*sums, count])


def agm_coefficients(scores: torch.Tensor, targets: torch.Tensor, alpha: float,
                     clamp: Optional[float]) -> Dict[str, torch.Tensor]:
    """Ratios and coefficients of one iteration (``(M,)`` float64 each).

    ``r = exp(M/(M-1) (mean(s) - s))`` (a modality whose loss is below the
    others' gets r > 1), ``r* = exp(M/(M-1) (mean(t) - t))``,
    ``k = exp(alpha min(r* - r, clamp))`` (no lower bound; ``clamp=None``: no
    upper bound either).
    """
    scores, targets = scores.double(), targets.double()
    m = scores.numel()
    if m < 2 or targets.numel() != m:
        raise ValueError(f'AGM coefficients need M >= 2 scores and as many targets; got '
                         f'{m} and {targets.numel()}')
    factor = m / (m - 1)
    ratio = torch.exp(factor * (scores.mean() - scores))
    target_ratio = torch.exp(factor * (targets.mean() - targets))
    gap = target_ratio - ratio
    if clamp is not None:
        gap = gap.clamp(max=clamp)
    return {'ratio': ratio, 'target_ratio': target_ratio, 'k': torch.exp(alpha * gap)}


def cumulative_mean(targets: torch.Tensor, scores: torch.Tensor, i: int) -> torch.Tensor:
    """``t (i-1)/i + s/i``: the mean of s over iterations 1..i given the mean over 1..i-1."""
    if i < 1:
        raise ValueError(f'the cumulative mean needs a 1-based iteration, got {i}')
    return targets * ((i - 1) / i) + scores / i


def modulated_output(phi: Dict[str, torch.Tensor],
                     k: Dict[str, torch.Tensor]) -> torch.Tensor:
    """``sum_m G_{k_m}(phi_m)``: equals sum_m phi_m forward; phi_m's gradient is x k_m."""
    out = 0
    for m, p in phi.items():
        gate = GradientGate()
        gate.scale(k[m])
        out = out + gate(p)
    return out


def classifier_weights(model) -> List[nn.Parameter]:
    """The classifier's weights: every >= 2-D parameter of the head (of the fusion without one)."""
    owner = model.head if model.head is not None else model.fusion
    return [p for p in owner.parameters() if p.dim() >= 2]


# --------------------------------------------------------------------------- the hook
@HOOKS.register_module()
class AGMHook(BaseBalanceHook):
    """Scale the gradient of each Shapley mono-modal logit by AGM's coefficient.

    Costs 2M extra encoder forwards per batch (each encoder in eval mode on its
    real input and on one all-zero sample) and 2^M - 2 extra fusion/head passes,
    with their backward inside the window.

    Args:
        alpha: alpha of k = exp(alpha min(r* - r, c)) (maintainer: 1.5 on CREMA-D).
        clamp: c, the upper clamp of r* - r (code: 10 CREMA-D, 7 UR-Funny); None: none.
        modulation_starts / modulation_ends: 0-based epochs, both inclusive, in which
            k is applied; ``modulation_ends=None``: to the end of the run. Scores,
            k and the cumulative means are computed every iteration.
        mask: ``'input'`` (the code's): a muted modality's input is all zeros and
            every coalition is re-encoded in eval mode; ``'feature'`` (ours): its
            feature is zero, the other features are the pass's own.
        clip_threshold: Clip when an element of the classifier's weight gradient is
            above this in absolute value (code: 1 CREMA-D, 5 UR-Funny); None: never.
        clip_max_norm: The global norm every gradient of the model is clipped to then.
        reference_compat: The code's stale coefficient: outside the window the last
            k applied keeps applying (ours: k = 1 there).
    """

    method = 'agm'

    def __init__(self, alpha: float = 1.5, clamp: Optional[float] = 10.0,
                 modulation_starts: int = 0, modulation_ends: Optional[int] = None,
                 mask: str = 'input', clip_threshold: Optional[float] = 1.0,
                 clip_max_norm: float = 1.0, reference_compat: bool = False) -> None:
        super().__init__()
        check_number('AGMHook', 'alpha', alpha, low=0, meaning='alpha of k = exp(alpha ...)')
        if clamp is not None:
            check_number('AGMHook', 'clamp', clamp, low=0, low_open=True,
                         meaning='upper clamp of r* - r, or None')
        check_number('AGMHook', 'modulation_starts', modulation_starts, low=0, integer=True,
                     meaning='a 0-based epoch')
        if modulation_ends is not None:
            check_number('AGMHook', 'modulation_ends', modulation_ends, low=modulation_starts,
                         integer=True, meaning='a 0-based epoch >= modulation_starts, or None')
        if mask not in MASKS:
            raise ValueError(f'AGMHook: mask={mask!r}; expected one of {MASKS}')
        if clip_threshold is not None:
            check_number('AGMHook', 'clip_threshold', clip_threshold, low=0, low_open=True,
                         meaning='classifier weight-gradient bound, or None')
        check_number('AGMHook', 'clip_max_norm', clip_max_norm, low=0, low_open=True,
                     meaning='global gradient norm of the conditional clip')
        self.alpha = float(alpha)
        self.clamp = None if clamp is None else float(clamp)
        self.modulation_starts = modulation_starts
        self.modulation_ends = modulation_ends
        self.mask = mask
        self.clip_threshold = None if clip_threshold is None else float(clip_threshold)
        self.clip_max_norm = float(clip_max_norm)
        self.reference_compat = bool(reference_compat)
        self.modalities: List[str] = []
        # Resumable state: t_m, the number of iterations in t, the k applied last.
        self.targets: Dict[str, float] = {}
        self.count = 0
        self.applied: Dict[str, float] = {}

    # --- setup and state -------------------------------------------------------------------
    def setup(self, model) -> None:
        if len(model.modalities) < 2:
            raise ValueError(f'AGMHook: AGM needs two or more modalities; the model has '
                             f'{model.modalities}')
        if self.clip_threshold is not None and not classifier_weights(model):
            owner = 'head' if model.head is not None else 'fusion'
            raise ValueError(f'AGMHook: the conditional clip reads the classifier weight '
                             f'gradient, but the model\'s {owner} '
                             f'({type(getattr(model, owner)).__name__}) has no parameter with '
                             f'>= 2 dims; set clip_threshold=None')
        self.modalities = list(model.modalities)
        if self.targets:
            self._check_state_modalities(self.targets)
        else:
            self.targets = dict.fromkeys(self.modalities, 0.0)
            self.applied = dict.fromkeys(self.modalities, 1.0)
        print_log(f'AGMHook: {len(coalitions(self.modalities))} muted passes (mask='
                  f'{self.mask}), alpha={self.alpha:g}, clamp={self.clamp}, window epochs '
                  f'{self.modulation_starts}..{self.modulation_ends}, clip '
                  f'{self.clip_threshold}/{self.clip_max_norm:g}, reference_compat='
                  f'{self.reference_compat}', logger='current')

    def _check_state_modalities(self, state: Dict[str, float]) -> None:
        if self.modalities and list(state) != self.modalities:
            raise ValueError(f'AGMHook: the checkpoint\'s AGM state is for modalities '
                             f'{list(state)}, the model has {self.modalities}')

    def state_dict(self) -> dict:
        return {'targets': dict(self.targets), 'count': int(self.count),
                'applied': dict(self.applied)}

    def load_state_dict(self, state: dict) -> None:
        missing = [k for k in ('targets', 'count', 'applied') if k not in state]
        if missing:
            raise KeyError(f'AGMHook: the checkpoint\'s AGM state lacks {missing}')
        self._check_state_modalities(state['targets'])
        self.targets = {m: float(v) for m, v in state['targets'].items()}
        self.count = int(state['count'])
        self.applied = {m: float(v) for m, v in state['applied'].items()}

    # --- per pass ------------------------------------------------------------------------------
    def in_window(self, epoch: int) -> bool:
        return self.modulation_starts <= epoch and (self.modulation_ends is None
                                                    or epoch <= self.modulation_ends)

    def coalition_logits(self, model, outputs) -> Dict[Coalition, torch.Tensor]:
        """v(S) of every non-empty S: T for the full set, eval-mode muted passes for the rest."""
        names = self.modalities
        values = {frozenset(names): outputs.fused_logits}
        if self.mask == 'input':
            if outputs.inputs is None:
                raise ValueError('AGMHook: mask=\'input\' needs the pass\'s inputs '
                                 '(ModalityOutputs.inputs is None)')
            with eval_mode(model.encoders, model.fusion, model.head):
                real = {m: model.encoders[m](outputs.inputs[m]) for m in names}
                # Eval mode is per sample: one all-zero sample stands for the whole batch.
                muted = {m: model.encoders[m](torch.zeros_like(outputs.inputs[m][:1]))
                         .expand_as(real[m]) for m in names}
                for s in coalitions(names):
                    values[s] = model.classify({m: real[m] if m in s else muted[m]
                                                for m in names})
        else:
            feats = outputs.features
            with eval_mode(model.fusion, model.head):
                for s in coalitions(names):
                    values[s] = model.classify({m: feats[m] if m in s
                                                else torch.zeros_like(feats[m]) for m in names})
        return values

    def after_forward(self, ctx, outputs, data_samples) -> BalanceTerms:
        """phi, s, k (then t) of this batch; inside the window the surrogate loss."""
        model = ctx.model
        if not self.modalities:
            raise RuntimeError('AGMHook: setup(model) was not called (the Runner calls it in '
                               'before_run)')
        if (outputs.fused_logits is None or set(outputs.gates) != set(self.modalities)
                or not ctx.plan.base_loss):
            raise ValueError(f'AGMHook needs passes that train every modality with the base '
                             f'loss on; this pass trains {list(outputs.gates)} of '
                             f'{self.modalities} (base_loss={ctx.plan.base_loss})')
        labels = data_samples['gt_label']
        in_window = self.in_window(ctx.epoch)
        if not in_window and not self.reference_compat:
            self.applied = dict.fromkeys(self.modalities, 1.0)
        stale = not in_window and any(k != 1.0 for k in self.applied.values())
        # Outside the window with k = 1 the muted passes get no gradient: skip their graph.
        with torch.set_grad_enabled(torch.is_grad_enabled() and (in_window or stale)):
            phi = shapley_logits(self.coalition_logits(model, outputs), self.modalities)
        sums = all_reduce_sum(ce_sums(phi, labels))
        scores = sums[:-1] / sums[-1]
        targets = torch.tensor([self.targets[m] for m in self.modalities],
                               dtype=torch.float64, device=scores.device)
        result = agm_coefficients(scores, targets, self.alpha, self.clamp)
        # t is updated after k: r* uses the iterations before this one only.
        self.count += 1
        new_targets = cumulative_mean(targets, scores, self.count)
        self.targets = dict(zip(self.modalities, new_targets.tolist()))
        if in_window:
            self.applied = dict(zip(self.modalities, result['k'].tolist()))
        for i, m in enumerate(self.modalities):
            self.log(f'score_{m}', scores[i])
            self.log(f'target_{m}', targets[i])
            self.log(f'ratio_{m}', result['ratio'][i])
            self.log(f'target_ratio_{m}', result['target_ratio'][i])
            self.log(f'k_{m}', result['k'][i])
            self.log(f'applied_k_{m}', self.applied[m])
        if not (in_window or stale):
            return BalanceTerms()
        k = {m: torch.tensor(self.applied[m], dtype=torch.float64) for m in self.modalities}
        loss = (model.loss_module(modulated_output(phi, k), labels)
                - model.loss_module(outputs.fused_logits, labels))
        return BalanceTerms(losses={'loss_agm': loss})

    # --- after backward ----------------------------------------------------------------------
    @torch.no_grad()
    def edit_grads(self, ctx) -> None:
        """The conditional clip: a classifier weight-gradient element beyond the threshold
        clips every gradient of the model to ``clip_max_norm``."""
        if self.clip_threshold is None:
            return
        model = ctx.model
        hit = any(bool((p.grad.abs() > self.clip_threshold).any())
                  for p in classifier_weights(model) if p.grad is not None)
        self.log('clipped', float(hit))
        if hit:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                           self.clip_max_norm)
