"""ReconBoost: modality-alternating boosting with reconcilement (Hua et al., ICML 2024).

Spec (docs/methods/reconboost.md; the equations follow the official code,
huacong/ReconBoost, since the paper's method section could not be checked):

* epochs are grouped in stages of ``E1 + E2`` epochs; stage ``s`` boosts modality
  ``m_s = order[s mod M]`` for ``E1`` epochs (phase 1), then rectifies the whole
  model for ``E2`` epochs (phase 2); the optimizer state is cleared at the start of
  every phase (a fresh SGD);
* phase 1 trains only ``m_s``'s encoder and the shared head ``h`` on
  ``L = mean_i (w1 - w2 q_i,y) (-log p_i,y) / C`` with ``p = softmax(h(z_m))`` and
  ``q = softmax(beta * sum_{n != m} h(z_n))`` from the other modalities, encoded
  under ``no_grad`` (targets only), plus ``alpha * MSE(softmax(h(z_m)),
  softmax(h(z_prev)))`` against the modality of the previous stage;
* phase 2 trains everything, ``beta`` included, on ``CE(beta * sum_m h(z_m), y)``:
  the model's own loss through ``SharedHeadFusion(eval_fusion='boost')``.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from mmbal.balance import reset_optimizer_state
from mmbal.engine.step import BalanceTerms, PassPlan, StepContext
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

#: The settings a checkpoint's phases depend on; a resume must not change them.
SCHEDULE_KEYS = ('epochs_per_stage', 'correct_epochs', 'order', 'pretrained')


# --------------------------------------------------------------------------- pure math
def boosting_loss(logits: torch.Tensor, ensemble_logits: Optional[torch.Tensor],
                  labels: torch.Tensor, w1: float, w2: float) -> torch.Tensor:
    """``mean_i (1/C) sum_c [-w1 y_ic log p_ic + w2 y_ic q_ic log p_ic]``.

    Equals ``mean_i -(w1 - w2 q_i,y) log p_i,y / C``: the 1/C is the reference's
    mean over classes. ``q`` (detached, float64 until the weight) is the softmax
    of ``ensemble_logits``; None means an empty ensemble, for which q_y = 1.

    Args:
        logits: (B, C) logits of the boosted modality, ``h(z_m)``.
        ensemble_logits: (B, C) ``beta * sum_{n != m} h(z_n)``, or None.
        labels: (B,) class indices.
    Returns:
        () the loss.
    """
    num_classes = logits.shape[1]
    log_p_y = torch.log_softmax(logits, dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    weight = w1 - w2 * ensemble_confidence(ensemble_logits, labels)
    return (-weight.to(logits.dtype) * log_p_y).mean() / num_classes


def ensemble_confidence(ensemble_logits: Optional[torch.Tensor], labels: torch.Tensor
                        ) -> torch.Tensor:
    """``q_i,y = softmax(ensemble_logits)_i[y_i]`` (float64, detached); 1 without an ensemble."""
    if ensemble_logits is None:
        return torch.ones(labels.shape[0], dtype=torch.float64, device=labels.device)
    q = torch.softmax(ensemble_logits.detach().double(), dim=1)
    return q.gather(1, labels.view(-1, 1)).squeeze(1)


def consolidation_loss(logits: torch.Tensor, prev_logits: torch.Tensor,
                       with_grad: bool = True) -> torch.Tensor:
    """``MSE(softmax(logits), softmax(prev_logits))``, the mean over B x C.

    The previous stage's side is always detached; ``with_grad=False`` detaches
    the boosted side too (the reference code), so the term has no gradient.
    """
    p = torch.softmax(logits if with_grad else logits.detach(), dim=1)
    return F.mse_loss(p, torch.softmax(prev_logits.detach(), dim=1))


class Phase(NamedTuple):
    """Where an epoch lies in the schedule."""

    stage: int
    boosting: bool  # phase 1 (True) or phase 2, the global rectification
    modality: str  # the stage's boosted modality
    first_epoch: bool  # the first epoch of its phase: the optimizer state is cleared


def phase_of(epoch: int, epochs_per_stage: int, correct_epochs: int,
             order: Sequence[str]) -> Phase:
    """Stage ``s = e // (E1 + E2)``; phase 1 while ``e mod (E1 + E2) < E1``."""
    length = epochs_per_stage + correct_epochs
    stage, offset = divmod(epoch, length)
    return Phase(stage, offset < epochs_per_stage, order[stage % len(order)],
                 offset in (0, epochs_per_stage))


# --------------------------------------------------------------------------- hook
@HOOKS.register_module()
class ReconBoostHook(BaseBalanceHook):
    """Alternating boosting phases and global rectification through one shared head.

    Needs ``SharedHeadFusion(eval_fusion='boost')`` (one head ``h`` and the learnable
    ``beta``) with ``model.head=None``, and under DDP
    ``model_wrapper_cfg.find_unused_parameters=True`` (phase 1 leaves the other
    encoders and ``beta`` unused). Any number M >= 2 of modalities.

    Args:
        epochs_per_stage: E1, the epochs of phase 1 per stage (the reference's
            ``--epochs_per_stage``).
        correct_epochs: E2, the epochs of phase 2 per stage (``--correct_epoch``);
            0 runs no rectification.
        w1: Weight of the plain cross-entropy of the boosted modality (``--weight1``).
        w2: Weight of the reconcilement term, ``w2 q_y`` (``--weight2``).
        alpha: Weight of the consolidation (``GA``) term (``--alpha``); 0 switches it off.
        order: The modalities in boosting order, each once; default: the config
            order of ``model.encoders``.
        pretrained: The encoders start from unimodal checkpoints (the reference's
            ``--use_pretrain``), so every modality is in the ensemble from stage 0.
            Otherwise a modality joins the ensemble once it has been boosted, and
            stage 0 has an empty ensemble: q_y = 1, weight w1 - w2 for every sample.
        reference_compat: The consolidation term as the released code computes it:
            both sides detached, so it has no gradient (only its value is logged).
    """

    method = 'reconboost'

    def __init__(self, epochs_per_stage: int = 4, correct_epochs: int = 4, w1: float = 5.0,
                 w2: float = 1.0, alpha: float = 0.5, order: Optional[Sequence[str]] = None,
                 pretrained: bool = False, reference_compat: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        check_number(name, 'epochs_per_stage', epochs_per_stage, low=1, integer=True,
                     meaning='E1, epochs of the boosting phase per stage')
        check_number(name, 'correct_epochs', correct_epochs, low=0, integer=True,
                     meaning='E2, epochs of the rectification phase per stage')
        check_number(name, 'w1', w1, low=0, meaning='weight of the cross-entropy term')
        check_number(name, 'w2', w2, low=0, meaning='weight of the reconcilement term')
        check_number(name, 'alpha', alpha, low=0, meaning='weight of the consolidation term')
        for field, value in (('pretrained', pretrained), ('reference_compat', reference_compat)):
            if not isinstance(value, bool):
                raise ValueError(f'{name}: {field} must be True or False, got {value!r}')
        if order is not None and (isinstance(order, str) or not isinstance(order, Sequence)):
            raise ValueError(f'{name}: order={order!r}; expected a list of modality names')
        self.epochs_per_stage = epochs_per_stage
        self.correct_epochs = correct_epochs
        self.w1, self.w2, self.alpha = float(w1), float(w2), float(alpha)
        self.order: Optional[List[str]] = None if order is None else list(order)
        self.pretrained = pretrained
        self.reference_compat = reference_compat

    # --- setup ----------------------------------------------------------------------------
    def setup(self, model) -> None:
        name = type(self).__name__
        modalities = list(model.modalities)
        if len(modalities) < 2:
            raise ValueError(f'{name} boosts one modality against the others; the model has '
                             f'{modalities}')
        if not isinstance(getattr(model.fusion, 'beta', None), nn.Parameter) or \
                model.head is not None:
            raise TypeError(f"{name} needs one shared head and the learnable beta: model.fusion="
                            f"dict(type='SharedHeadFusion', eval_fusion='boost', boost_rate=1.0, "
                            f'num_classes=C) with model.head=None; the model has '
                            f'{type(model.fusion).__name__} and head {type(model.head).__name__}')
        if self.order is None:
            self.order = modalities
        self.check_modalities(self.order, model, 'order')
        if sorted(self.order) != sorted(modalities):
            raise ValueError(f'{name}: order={self.order} must name every modality of the model '
                             f'{modalities} exactly once')
        print_log(f'{name}: stages of {self.epochs_per_stage} boosting + {self.correct_epochs} '
                  f'rectification epochs, order {self.order}, w1={self.w1}, w2={self.w2}, '
                  f'alpha={self.alpha}, pretrained={self.pretrained}, '
                  f'reference_compat={self.reference_compat}', logger='current')

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self.check_find_unused_parameters(
            runner, 'trains one encoder per boosting phase, so under DDP the other encoders '
            'and beta are unused in that phase')

    def phase(self, epoch: int) -> Phase:
        return phase_of(epoch, self.epochs_per_stage, self.correct_epochs, self.order)

    def before_train_epoch(self, runner) -> None:
        """A fresh optimizer at every phase start: all its state (momentum) is dropped.

        A run resumed inside a phase keeps the optimizer state of its checkpoint.
        """
        phase = self.phase(runner.epoch)
        if phase.first_epoch:
            optimizer = runner.optim_wrapper.optimizer
            reset_optimizer_state(optimizer, [p for group in optimizer.param_groups
                                              for p in group['params']])

    # --- the training step's call points ---------------------------------------------------
    def ensemble(self, stage: int, boosted: str) -> List[str]:
        """The other modalities whose learners are in the ensemble at ``stage``."""
        members = self.order if self.pretrained else self.order[:stage]
        return [n for n in self.order if n in members and n != boosted]

    def plan_passes(self, ctx: StepContext) -> Optional[List[PassPlan]]:
        """Phase 1: only the boosted modality is trained (the others are encoded by
        ``after_forward`` under ``no_grad``); phase 2: the model's own pass and loss."""
        phase = self.phase(ctx.epoch)
        if not phase.boosting:
            return None
        return [PassPlan(trainable=[phase.modality], base_loss=False, logits='analytic',
                         name=phase.modality)]

    def after_forward(self, ctx: StepContext, outputs, data_samples) -> Optional[BalanceTerms]:
        model = ctx.model
        phase = self.phase(ctx.epoch)
        beta = model.fusion.beta.detach()
        self.log('beta', beta)
        self.log('stage', phase.stage)
        if not phase.boosting:
            return None
        m, labels = phase.modality, data_samples['gt_label']
        logits = outputs.logits('analytic')[m]
        members = self.ensemble(phase.stage, m)
        prev = self.order[(phase.stage - 1) % len(self.order)] if phase.stage > 0 else None
        targets = self._target_logits(model, outputs.inputs,
                                      members + ([prev] if prev and prev not in members else []))
        ensemble = (beta * torch.stack([targets[n] for n in members]).sum(dim=0)
                    if members else None)
        losses = {'loss_boost': boosting_loss(logits, ensemble, labels, self.w1, self.w2)}
        self.log('q_y', ensemble_confidence(ensemble, labels).mean())
        if prev is not None and self.alpha > 0:
            ga = consolidation_loss(logits, targets[prev], not self.reference_compat)
            losses['loss_ga'] = self.alpha * ga
        return BalanceTerms(losses=losses)

    @staticmethod
    def _target_logits(model, inputs: Dict[str, torch.Tensor], modalities: Sequence[str]
                       ) -> Dict[str, torch.Tensor]:
        """``h(z_n)`` of target-only modalities: encoded under ``no_grad`` (their encoders
        keep ``grad=None``; BN layers stay in train mode, as in the reference)."""
        if not modalities:
            return {}
        with torch.no_grad():
            return model.fusion.analytic_logits(model.encode(inputs, modalities))

    # --- state in checkpoints -------------------------------------------------------------
    def state_dict(self) -> Dict[str, object]:
        """The schedule: the phase of every epoch follows from it (and from the epoch)."""
        return {'epochs_per_stage': self.epochs_per_stage,
                'correct_epochs': self.correct_epochs,
                'order': None if self.order is None else list(self.order),
                'pretrained': self.pretrained}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Refuse a resume whose schedule differs: its phases would not line up."""
        mine = self.state_dict()
        for key in SCHEDULE_KEYS:
            if key not in state:
                raise KeyError(f'{type(self).__name__}: the checkpoint\'s ReconBoost state lacks '
                               f'{key!r}; it has {sorted(state)}')
            if mine[key] is not None and state[key] != mine[key]:
                raise ValueError(f'{type(self).__name__}: the checkpoint was trained with '
                                 f'{key}={state[key]!r}, this config has {key}={mine[key]!r}; '
                                 f'resuming would misplace the boosting phases. Resume with '
                                 f'the checkpoint\'s {key}')
        if self.order is None:
            self.order = list(state['order'])
