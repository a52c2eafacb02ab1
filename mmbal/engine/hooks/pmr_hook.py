"""PMR: prototypical modal rebalance (Fan et al., CVPR 2023).

Spec (docs/methods/pmr.md):

* prototypes ``c^m_k``: the class-k mean of the encoder output z_m over a
  random ``subset`` of the training split, in eval mode and under no_grad, at
  the start of every epoch (epoch 0 included); from the second computation on
  ``c <- momentum * c_old + (1 - momentum) * c_new`` (eq. 12);
* ``p^m(k|x) = softmax_k(-||z_m - c^m_k||)``, the plain Euclidean distance (eq. 7);
* ``s_m = sum_i p^m(y_i|x_i)`` over the batch (all-reduced under DDP);
  ``rho = s_0 / s_1`` (eq. 8);
* loss added to CE(f, y): ``sum_m alpha * clip(max_n s_n / s_m - 1, 0, 1) * PCE^m``
  (eqs. 9-11) minus, for epochs ``e < per_epochs`` (E_r),
  ``sum_m mu * clip(s_m / min_n s_n - 1, 0, 1) * H^m`` (eq. 13, the dominant
  modality's prototype entropy is maximised). For M = 2 these are eq. 11's
  beta (on m0) and gamma (on m1), swapped for the entropy; M > 2 is ours.

The prototypes are detached, so PCE reaches only its own encoder, and the
fusion and head never see these terms.
"""
import logging
from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmbal.balance.dataset_pass import (PIPELINES, build_split_loader, dataset_pass, mean_of,
                                        per_class_sums)
from mmbal.balance.functional import EPS, all_reduce_sum, shared_seed
from mmbal.engine.step import BalanceTerms
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number


# --- pure math (unit-tested against hand computation) ------------------------------------------
def prototype_log_probs(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``log softmax_k(-||z - c_k||)`` (eq. 7): plain Euclidean distance, no temperature.

    Args:
        features: (B, d), with gradient. prototypes: (K, d), detached.
    Returns:
        (B, K) log-probabilities, in the features' dtype.
    """
    protos = prototypes.detach().to(device=features.device, dtype=features.dtype)
    dist = torch.cdist(features, protos, compute_mode='donot_use_mm_for_euclid_dist')
    return torch.log_softmax(-dist, dim=1)


def prototype_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Batch mean of the per-sample entropy of ``p^m(.|x)`` (natural log), with gradient."""
    return -(log_probs.exp() * log_probs).sum(dim=1).mean()


def pmr_weights(scores: torch.Tensor, alpha: float, mu: float,
                reference_compat: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """The PCE and entropy weights of every modality from its score ``s_m``.

    Paper (eqs. 11, 13; M > 2 ours): ``alpha * clip(max_n s_n / s_m - 1, 0, 1)`` and
    ``mu * clip(s_m / min_n s_n - 1, 0, 1)``. ``reference_compat`` (two
    modalities): the PCE weight is ``alpha`` on the slower modality (0 on both
    at a tie) and there is no entropy term.

    Args:
        scores: (M,) float64 ``s_m = sum_i p^m(y_i|x_i)``.
    Returns:
        ``(pce (M,), entropy (M,))`` float64, detached.
    """
    scores = scores.detach().double()
    if reference_compat:
        if scores.numel() != 2:
            raise ValueError(f'pmr_weights: reference_compat follows the two-modality '
                             f'reference code; got {scores.numel()} scores')
        slow = torch.stack([scores[0] < scores[1], scores[1] < scores[0]]).double()
        return alpha * slow, torch.zeros_like(scores)
    pce = (scores.max() / (scores + EPS) - 1).clamp(0, 1)
    per = (scores / (scores.min() + EPS) - 1).clamp(0, 1)
    return alpha * pce, mu * per


def momentum_update(old: Optional[torch.Tensor], new: torch.Tensor, present: torch.Tensor,
                    momentum: float) -> torch.Tensor:
    """``momentum * old + (1 - momentum) * new`` for the classes ``present``; the rest keep ``old``.

    Args:
        old: (K, d) previous prototypes, or None at the first computation
            (then ``new`` is returned as it is and every class must be present).
        new: (K, d) class means of this pass (any value in the rows of absent classes).
        present: (K,) bool, classes with at least one sample in the pass.
    """
    if old is None:
        if not bool(present.all()):
            missing = (~present).nonzero().flatten().tolist()
            raise ValueError(f'PMRHook: classes {missing} have no sample in the prototype '
                             f'subset at the first computation, so they have no prototype; '
                             f'raise subset (the fraction of the training split)')
        return new
    old = old.to(new)
    mixed = momentum * old + (1 - momentum) * new
    return torch.where(present.view(-1, 1), mixed, old)


@HOOKS.register_module()
class PMRHook(BaseBalanceHook):
    """Prototype cross-entropy on the slower modality, prototype entropy on the faster.

    Args:
        per_epochs: E_r: the entropy term (PER) applies for epochs ``e < E_r``
            (0-based). Required: no source gives it. Unused under
            ``reference_compat`` (the reference code has no PER).
        alpha: PCE weight (paper: 1 or 2).
        mu: PER weight (paper: 1e-2 or 1e-3).
        momentum: epsilon of eq. 12 (the reference code's 0.2; the paper gives none).
        subset: Fraction of the training split the prototypes are computed
            from, redrawn every epoch from a seed shared by every rank (paper: 10 %).
        pipeline: Transforms of that pass: ``'eval'`` (the test-time view, ours)
            or ``'train'`` (the training augmentations, the reference code's).
            None: ``'eval'``, or ``'train'`` under ``reference_compat``.
        window: ``(first, last)`` epochs (0-based, inclusive) in which the
            coefficients apply; None: every epoch (the paper). The reference
            code's is ``(0, 100)``.
        seed: Base seed of the subset draw.
        reference_compat: The official code: binary PCE weights (``alpha`` on
            the slower modality), no PER, and no momentum for the prototypes
            used in epoch 1. Two modalities only.
    """

    method = 'pmr'

    def __init__(self, per_epochs: Optional[int] = None, alpha: float = 1.0, mu: float = 1e-2,
                 momentum: float = 0.2, subset: float = 0.1, pipeline: Optional[str] = None,
                 window: Optional[Sequence[int]] = None, seed: int = 0,
                 reference_compat: bool = False) -> None:
        super().__init__()
        if not isinstance(reference_compat, bool):
            raise ValueError(f'PMRHook: reference_compat must be True or False, got '
                             f'{reference_compat!r}')
        if per_epochs is None and not reference_compat:
            raise ValueError('PMRHook: per_epochs (E_r, the epochs with the entropy term) is '
                             'required; no source gives it')
        if per_epochs is not None:
            check_number('PMRHook', 'per_epochs', per_epochs, low=0, integer=True,
                         meaning='E_r: PER for epochs e < E_r')
        check_number('PMRHook', 'alpha', alpha, low=0, meaning='PCE weight')
        check_number('PMRHook', 'mu', mu, low=0, meaning='PER weight')
        check_number('PMRHook', 'momentum', momentum, low=0, high=1, meaning='eq. 12 epsilon')
        check_number('PMRHook', 'subset', subset, low=0, low_open=True, high=1,
                     meaning='fraction of the training split')
        check_number('PMRHook', 'seed', seed, integer=True)
        if pipeline is not None and pipeline not in PIPELINES:
            raise ValueError(f'PMRHook: pipeline={pipeline!r}; expected one of {PIPELINES} '
                             f'or None')
        if window is not None:
            ok = (isinstance(window, (list, tuple)) and len(window) == 2
                  and all(isinstance(e, int) and not isinstance(e, bool) for e in window)
                  and 0 <= window[0] <= window[1])
            if not ok:
                raise ValueError(f'PMRHook: window={window!r}; expected (first, last) epochs '
                                 f'with 0 <= first <= last, or None')
        self.per_epochs = per_epochs
        self.alpha, self.mu, self.momentum = float(alpha), float(mu), float(momentum)
        self.subset, self.seed = float(subset), int(seed)
        self.pipeline = pipeline or ('train' if reference_compat else 'eval')
        self.window = None if window is None else tuple(window)
        self.reference_compat = reference_compat
        self.prototypes: Optional[Dict[str, torch.Tensor]] = None
        self.prototype_epoch: Optional[int] = None

    # --- setup -----------------------------------------------------------------------------
    def setup(self, model) -> None:
        modalities = list(model.modalities)
        if len(modalities) < 2:
            raise ValueError(f'PMRHook compares modalities; the model has only {modalities}')
        if self.reference_compat and len(modalities) != 2:
            raise ValueError(f'PMRHook(reference_compat=True) follows the two-modality '
                             f'reference code; the model has {len(modalities)} modalities '
                             f'{modalities}. Use reference_compat=False (M > 2: ours)')
        print_log(f'PMRHook: alpha={self.alpha:g}, mu={self.mu:g}, E_r={self.per_epochs}, '
                  f'momentum={self.momentum:g}, subset={self.subset:g} of the training split '
                  f'({self.pipeline} transforms), window={self.window}, '
                  f'reference_compat={self.reference_compat}', logger='current')
        if self.reference_compat and self.per_epochs is not None:
            print_log(f'PMRHook: per_epochs={self.per_epochs} is unused: the reference code '
                      f'(reference_compat=True) has no entropy term', logger='current',
                      level=logging.WARNING)

    # --- prototypes ------------------------------------------------------------------------
    def before_train_epoch(self, runner) -> None:
        if self.prototype_epoch == runner.epoch:
            return  # resumed inside an epoch whose prototypes the checkpoint holds
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        cfg = getattr(runner, 'cfg', None)
        if cfg is None or cfg.get('train_dataloader') is None:
            raise ValueError('PMRHook computes its prototypes from the training split of the '
                             'runner config (cfg.train_dataloader), which is missing')
        loader = build_split_loader(
            cfg, 'train', pipeline=self.pipeline, fraction=self.subset,
            seed=shared_seed(self.seed, runner.epoch),
            num_workers=int(cfg.train_dataloader.get('num_workers', 0) or 0))
        self.update_prototypes(model, loader, runner.epoch)

    def update_prototypes(self, model, loader: Iterable, epoch: int) -> Dict[str, torch.Tensor]:
        """Recompute the prototypes from ``loader`` (this rank's share of the subset).

        One :func:`mmbal.balance.dataset_pass` (no_grad, eval mode, class sums
        all-reduced), then eq. 12's momentum. A class absent from the pass keeps
        its previous prototype (ours; the reference code divides by zero).
        """
        modalities = list(model.modalities)
        num_classes = model.num_classes

        def class_sums(data) -> Dict[str, torch.Tensor]:
            labels = data['data_samples']['gt_label']
            feats = model.encode(data['inputs'], modalities)
            out = {}
            for m in modalities:
                out[f'sum/{m}'], counts = per_class_sums(feats[m], labels, num_classes)
            out['class_count'] = counts
            return out

        sums = dataset_pass(loader, class_sums, model=model)
        counts = sums['class_count']
        present = counts > 0
        smooth = self.prototypes is not None and not (self.reference_compat and epoch <= 1)
        new = {}
        for m in modalities:
            mean = mean_of(sums[f'sum/{m}'], counts)  # NaN rows of absent classes are not kept
            old = self.prototypes[m] if self.prototypes is not None else None
            new[m] = momentum_update(old, mean, present,
                                     self.momentum if smooth else 0.0)
        self.prototypes, self.prototype_epoch = new, int(epoch)
        if not bool(present.all()):
            print_log(f'PMRHook: epoch {epoch}: classes {(~present).nonzero().flatten().tolist()} '
                      f'have no sample in the prototype subset; they keep their prototypes',
                      logger='current', level=logging.WARNING)
        return new

    # --- per iteration ---------------------------------------------------------------------
    def active(self, epoch: int) -> bool:
        """Whether the coefficients apply in ``epoch`` (the window; every epoch without one)."""
        return self.window is None or self.window[0] <= epoch <= self.window[1]

    def after_forward(self, ctx, outputs, data_samples) -> BalanceTerms:
        if self.prototypes is None:
            raise RuntimeError('PMRHook: no prototypes yet; they are computed from the '
                               'training split in before_train_epoch (or call '
                               'hook.update_prototypes(model, loader, epoch))')
        modalities = list(ctx.model.modalities)
        labels = data_samples['gt_label'].view(-1, 1).long()
        log_probs = {}
        for m in modalities:
            protos = self.prototypes[m]
            if protos.shape[1] != outputs.features[m].shape[1]:
                raise ValueError(f'PMRHook: the prototypes of {m!r} have {protos.shape[1]} '
                                 f'channels; the encoder outputs {outputs.features[m].shape[1]}')
            log_probs[m] = prototype_log_probs(outputs.features[m], protos)
        scores = all_reduce_sum(torch.stack(
            [lp.detach().double().gather(1, labels).exp().sum() for lp in log_probs.values()]))
        pce_w, per_w = pmr_weights(scores, self.alpha, self.mu, self.reference_compat)
        use_per = (not self.reference_compat and self.active(ctx.epoch)
                   and ctx.epoch < self.per_epochs)
        if not self.active(ctx.epoch):
            pce_w = torch.zeros_like(pce_w)
        if not use_per:
            per_w = torch.zeros_like(per_w)

        pce_loss, per_loss = 0, 0
        for i, (m, lp) in enumerate(log_probs.items()):
            pce = F.nll_loss(lp, labels.view(-1))
            entropy = prototype_entropy(lp)
            if pce_w[i] > 0:
                pce_loss = pce_loss + pce_w[i].to(pce.dtype) * pce
            if per_w[i] > 0:
                per_loss = per_loss - per_w[i].to(entropy.dtype) * entropy
            self.log(f'pce_weight_{m}', pce_w[i])
            self.log(f'per_weight_{m}', per_w[i])
            self.log(f'pce_{m}', pce)
            self.log(f'entropy_{m}', entropy)
            self.log(f'proto_acc_{m}',
                     (lp.detach().argmax(1) == labels.view(-1)).double().mean() * 100)
        if len(modalities) == 2:
            self.log('rho', scores[0] / (scores[1] + EPS))
        losses = {}
        if isinstance(pce_loss, torch.Tensor):
            losses['loss_pmr_pce'] = pce_loss
        if isinstance(per_loss, torch.Tensor):
            losses['loss_pmr_per'] = per_loss
        return BalanceTerms(losses=losses)

    # --- state in checkpoints --------------------------------------------------------------
    def state_dict(self) -> dict:
        if self.prototypes is None:
            return {}
        return {'prototypes': {m: p.detach().cpu() for m, p in self.prototypes.items()},
                'epoch': self.prototype_epoch}

    def load_state_dict(self, state: dict) -> None:
        protos = state.get('prototypes')
        if not isinstance(protos, dict) or not all(isinstance(p, torch.Tensor) and p.dim() == 2
                                                   for p in protos.values()):
            raise ValueError(f'PMRHook: the checkpoint\'s balance_hooks.pmr.prototypes must map '
                             f'modalities to (K, d) tensors, got {type(protos).__name__}')
        self.prototypes = {m: p.clone() for m, p in protos.items()}
        self.prototype_epoch = state.get('epoch')
