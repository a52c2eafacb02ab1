"""MLA: multimodal learning with alternating unimodal adaptation (Zhang et al., CVPR 2024).

Spec (docs/methods/mla.md; every equation there comes from the
official code, Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation):

* every batch is trained in M sub-steps, one optimizer step per modality in config
  order; sub-step m encodes only modality m and trains L_m = CE(h(z_m), y) through
  the head h = W z + b shared by all modalities (``SharedHeadFusion``);
* head gradient modification (HGM) on G_W = dL_m/dW only, never on the bias,
  skipped on the very first sub-step of the run: with r = the batch-mean feature
  (detached, global under DDP) and alpha = 0.1^(1 + j/J) (j = batch index in the
  epoch, J = batches per epoch),
  q = P r, P <- P - q q^T / (alpha + r^T q), P <- P / ||P||_F, G_W <- G_W P^T;
  P starts at I, is shared by all modalities and persists across epochs.
"""
from typing import Dict, List, Optional, Set, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from mmbal.balance.functional import EPS, all_reduce_sum
from mmbal.engine.step import BalanceTerms, PassPlan, StepContext
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook

PROJECTIONS = ('owm', 'none')
ORDERS = ('update_then_project', 'project_then_update')
#: reference_compat values: off, the code's element-wise division, and that plus the
#: pinned torch 1.8's zero_grad (zeros instead of None).
COMPAT = (False, True, 'legacy_zero_grad')
#: alpha = ALPHA_BASE ** (1 + j / J) (utils.py L26-27 of the reference).
ALPHA_BASE = 0.1


# --------------------------------------------------------------------------- pure math
def hgm_alpha(batch_idx: int, num_batches: int) -> float:
    """``alpha = 0.1 ** (1 + j / J)``: 0.1 at the first batch of an epoch, ~0.0104 at the last.

    ``num_batches`` may be unknown (0) only at ``batch_idx == 0``, where alpha is 0.1
    for every J.
    """
    if num_batches <= 0:
        if batch_idx != 0:
            raise ValueError(f'MLAHook: alpha = 0.1^(1 + j/J) needs the number of batches '
                             f'per epoch J; got J={num_batches} at batch j={batch_idx}')
        return ALPHA_BASE
    return ALPHA_BASE ** (1.0 + batch_idx / num_batches)


def owm_update(P: torch.Tensor, r: torch.Tensor, alpha: float) -> torch.Tensor:
    """Recursive OWM/RLS update ``P - q q^T / (alpha + r^T q)`` with ``q = P r``.

    Args:
        P: (d, d). r: (d,) mean feature.
    Returns:
        (d, d); symmetric if P is.
    """
    q = P @ r
    return P - torch.outer(q, q) / (alpha + r @ q)


def elementwise_update(P: torch.Tensor, r: torch.Tensor, alpha: float) -> torch.Tensor:
    """The reference code's form: ``P_ij - q_i q_j / (alpha + q_i r_j)`` with ``q = P r``.

    ``torch.mm(k, r)`` in the code is an outer product, so its division is
    element-wise; it equals :func:`owm_update` only when r lies along one axis.
    """
    q = P @ r
    return P - torch.outer(q, q) / (alpha + torch.outer(q, r))


def frobenius_normalize(P: torch.Tensor) -> torch.Tensor:
    """``P / ||P||_F``."""
    return P / torch.linalg.matrix_norm(P).clamp_min(EPS)


def project_head_grad(grad: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """``G P^T`` for the head weight gradient ``G`` (C, d) and ``P`` (d, d)."""
    return grad @ P.T


def hgm_step(P: torch.Tensor, r: torch.Tensor, alpha: float, grad: torch.Tensor,
             order: str = 'update_then_project', normalize_p: bool = True,
             elementwise: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One head gradient modification.

    Args:
        P: (d, d) current projector.
        r: (d,) mean feature of this sub-step.
        alpha: alpha of this batch.
        grad: (C, d) gradient of the shared head's weight.
        order: ``'update_then_project'`` (the code: the current r also damps the
            current gradient) or ``'project_then_update'`` (classic OWM).
        normalize_p: Divide the updated P by its Frobenius norm (both codes).
        elementwise: The code's element-wise division instead of the OWM form.
    Returns:
        ``(P_new, projected grad, ||P||_F after the update and before normalising)``.
    """
    update = elementwise_update if elementwise else owm_update

    def updated(p):
        p = update(p, r, alpha)
        norm = torch.linalg.matrix_norm(p)
        return (frobenius_normalize(p) if normalize_p else p), norm

    if order == 'update_then_project':
        P, norm = updated(P)
        return P, project_head_grad(grad, P), norm
    if order == 'project_then_update':
        projected = project_head_grad(grad, P)
        P, norm = updated(P)
        return P, projected, norm
    raise ValueError(f'MLAHook: unknown order {order!r}; expected one of {ORDERS}')


def shared_head_of(model) -> nn.Linear:
    """The classifier the model's fusion declares as shared by all modalities."""
    fusion = getattr(model, 'fusion', None)
    head = getattr(fusion, 'shared_head', None)
    if not isinstance(head, nn.Linear):
        raise TypeError(f'MLAHook needs a fusion that declares a shared linear head '
                        f'(fusion.shared_head), e.g. model.fusion=dict(type='
                        f"'SharedHeadFusion', num_classes=C) with model.head=None; the "
                        f'model has {type(fusion).__name__}')
    return head


# --------------------------------------------------------------------------- hook
@HOOKS.register_module()
class MLAHook(BaseBalanceHook):
    """Alternating unimodal sub-steps through one shared head, with head gradient projection.

    Needs ``SharedHeadFusion`` (no separate head), ``accumulative_counts=1`` and,
    under DDP, ``model_wrapper_cfg.find_unused_parameters=True`` (each sub-step
    leaves the other encoders unused).

    Args:
        projection: ``'owm'`` (HGM on; the method the paper's abstract describes and
            the code names) or ``'none'`` (no head projection: what the released
            code runs, since its name test never matches).
        order: ``'update_then_project'`` (both codes, default) or
            ``'project_then_update'`` (classic OWM: project with P from earlier
            sub-steps, then update it).
        normalize_p: Store P / ||P||_F after every update (both codes; default True).
        reference_compat: ``True``: the code's element-wise division in the P
            update. ``'legacy_zero_grad'``: that, and the pinned torch 1.8's
            ``zero_grad`` (zeros, not None): encoders trained in an earlier
            sub-step of the batch hold zero gradients in the later ones, so SGD
            moves them again (momentum, weight decay).
    """

    method = 'mla'

    def __init__(self, projection: str = 'owm', order: str = 'update_then_project',
                 normalize_p: bool = True,
                 reference_compat: Union[bool, str] = False) -> None:
        super().__init__()
        if projection not in PROJECTIONS:
            raise ValueError(f'MLAHook: projection={projection!r}; expected one of '
                             f'{PROJECTIONS}')
        if order not in ORDERS:
            raise ValueError(f'MLAHook: order={order!r}; expected one of {ORDERS}')
        if not isinstance(normalize_p, bool):
            raise ValueError(f'MLAHook: normalize_p must be True or False, got {normalize_p!r}')
        if not any(reference_compat is c or (isinstance(c, str) and reference_compat == c)
                   for c in COMPAT):
            raise ValueError(f'MLAHook: reference_compat={reference_compat!r}; expected one '
                             f'of {COMPAT}')
        self.projection = projection
        self.order = order
        self.normalize_p = normalize_p
        self.reference_compat = reference_compat
        self.elementwise = reference_compat is not False
        self.legacy_zero_grad = reference_compat == 'legacy_zero_grad'
        self.P: Optional[torch.Tensor] = None  # (d, d) float64, created in setup
        self.exp_count = 0  # sub-steps run so far in the whole run (never reset)
        self.last_r: Optional[torch.Tensor] = None  # (d,) mean feature of the current pass
        self._modality: Optional[str] = None
        self._had_grad: Set[int] = set()  # legacy_zero_grad: params with a grad this batch

    # --- setup ----------------------------------------------------------------------------
    def setup(self, model) -> None:
        if len(model.modalities) < 2:
            raise ValueError(f'MLAHook alternates between modalities; the model has '
                             f'{list(model.modalities)}')
        d = shared_head_of(model).in_features
        if self.P is None:
            self.P = torch.eye(d, dtype=torch.float64)
        elif tuple(self.P.shape) != (d, d):
            raise ValueError(f'MLAHook: the projector P has shape {tuple(self.P.shape)} but '
                             f'the shared head takes {d} features')
        print_log(f'MLAHook: {len(model.modalities)} sub-steps per batch '
                  f'({list(model.modalities)}), projection={self.projection}, '
                  f'order={self.order}, normalize_p={self.normalize_p}, '
                  f'reference_compat={self.reference_compat}', logger='current')

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self.check_find_unused_parameters(
            runner, 'trains one modality per sub-step, so under DDP the other encoders are '
            'unused in that pass')
        counts = getattr(runner.optim_wrapper, '_accumulative_counts', 1)
        if counts > 1:
            raise ValueError(f'MLAHook takes one optimizer step per modality per batch, which '
                             f'cannot be combined with optim_wrapper.accumulative_counts='
                             f'{counts}; set accumulative_counts=1')

    # --- the training step's call points ---------------------------------------------------
    def plan_passes(self, ctx: StepContext) -> List[PassPlan]:
        """One sub-step per modality, config order; only that modality is encoded."""
        return [PassPlan(trainable=[m], base_loss=False, logits='analytic', name=m)
                for m in ctx.model.modalities]

    def after_forward(self, ctx: StepContext, outputs, data_samples) -> BalanceTerms:
        """``L_m = CE(h(z_m), y)``; keeps the mean feature r for this pass's edit."""
        trained = list(outputs.gates)
        if len(trained) != 1:
            raise ValueError(f'MLAHook expects one trained modality per pass, got {trained}; '
                             f'is another hook planning the passes?')
        m = trained[0]
        logits = outputs.logits('analytic')[m]
        loss = F.cross_entropy(logits, data_samples['gt_label'])
        self._modality = m
        self.last_r = None
        if self.projection == 'owm' and self.exp_count > 0:
            z = outputs.features[m].detach().flatten(1).double()
            stats = all_reduce_sum(torch.cat([z.sum(dim=0),
                                              z.new_tensor([float(z.shape[0])])]))
            self.last_r = stats[:-1] / stats[-1]
        self.log(f'loss_{m}', loss)
        return BalanceTerms(losses={'loss_mla': loss})

    @torch.no_grad()
    def edit_grads(self, ctx: StepContext) -> None:
        """HGM on the shared head's weight gradient (after this sub-step's backward)."""
        model = ctx.model
        if self.legacy_zero_grad:
            self._zero_instead_of_none(model, ctx.pass_index)
        if self.projection == 'owm' and self.exp_count > 0:
            weight = shared_head_of(model).weight
            if weight.grad is None:
                raise RuntimeError('MLAHook: the shared head has no gradient in this '
                                   'sub-step; its loss must go through fusion.shared_head')
            if self.last_r is None:
                raise RuntimeError('MLAHook: no mean feature for this sub-step; '
                                   'after_forward did not run for it')
            alpha = hgm_alpha(ctx.batch_idx, ctx.num_batches)
            P = self.P.to(weight.device)
            P, grad, norm = hgm_step(P, self.last_r.to(weight.device), alpha,
                                     weight.grad.double(), self.order, self.normalize_p,
                                     self.elementwise)
            weight.grad.copy_(grad.to(weight.grad.dtype))
            self.P = P
            self.log('alpha', alpha)
            self.log(f'p_norm_{self._modality}', norm)
        self.exp_count += 1
        self.last_r = None

    def _zero_instead_of_none(self, model: nn.Module, pass_index: int) -> None:
        """torch 1.8's zero_grad: a parameter that had a grad earlier in the batch holds zeros."""
        if pass_index == 0:
            self._had_grad = set()
        for p in model.parameters():
            if p.grad is not None:
                self._had_grad.add(id(p))
            elif id(p) in self._had_grad:
                p.grad = torch.zeros_like(p)

    # --- state in checkpoints -------------------------------------------------------------
    def state_dict(self) -> Dict[str, object]:
        return {'P': None if self.P is None else self.P.detach().cpu().clone(),
                'exp_count': int(self.exp_count)}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        P = state['P']
        if P is not None:
            P = torch.as_tensor(P, dtype=torch.float64).cpu()
            if self.P is not None and P.shape != self.P.shape:
                raise ValueError(f'MLAHook: the checkpoint\'s P has shape {tuple(P.shape)}, '
                                 f'the shared head needs {tuple(self.P.shape)}')
        self.P = P
        self.exp_count = int(state['exp_count'])
