"""ARL: asymmetric representation learning (Wei et al., ICCV 2025).

Spec (docs/methods/arl.md): probe logits p_m (the shared fusion and head with
every other modality zeroed; through concat W_m z_m + b with the full bias b;
sum and late fusion use the modality's own branch, W_m z_m + b_m and h_m(z_m),
see ``ModalityOutputs.logits('probe')``) train a unimodal loss
u_m = CE(p_m, y) (eq. 21), so the loss is L = CE(f, y) + gamma * sum_m u_m
(eq. 22). From the same probes and the current batch: H_m = mean per-sample
entropy of softmax(p_m), q_m = 1 / H_m (eq. 17), d_m = mean softmax(p_m)[y]
(eq. 4), and for M = 2 (m0 = first configured modality) eq. 18:
[a_0, a_1] = softmax([T q_0/q_1, T d_0/d_1]). The whole gradient reaching
encoder m (fused loss and probe losses alike) becomes g + a_m g (eqs. 19-20):
one gate on z_m with coefficient 1 + a_m.
H, q, d, their ratios and a are float64 (q = 1/H of a saturated probe has no
precision left in float32); the gate gets a Python float.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log

from mmbal.balance.functional import EPS, all_reduce_sum, entropy, gt_confidence
from mmbal.engine.step import BalanceTerms
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

COEF_FORMS = ('eq18', 'share_ratio')
#: reference_compat: the reference code's fixed coefficient, warm-up end and clip norm.
REFERENCE_A = 0.5
REFERENCE_START = 5
REFERENCE_CLIP_NORM = 40.0
#: reference_compat logging: the floor of the normalised entropies.
REFERENCE_H_FLOOR = 0.3


# --------------------------------------------------------------------------- pure math
def entropy_q(H: torch.Tensor) -> torch.Tensor:
    """Eq. 17: q_m = 1 / max(H_m, eps) for a vector of mean entropies ``(M,)``, in float64."""
    return 1.0 / H.double().clamp(min=EPS)


def eq18_coefficients(q: torch.Tensor, d: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq. 18 for M = 2, literally: ``[a_0, a_1] = softmax([T q_0/q_1, T d_0/d_1])``.

    Not symmetric under swapping the modalities: a_0 comes from the q ratio and
    a_1 from the d ratio, both with the first configured modality on top.

    Args:
        q, d: ``(2,)`` in config order.
    Returns:
        ``(2,)`` float64 coefficients a.
    """
    if q.numel() != 2 or d.numel() != 2:
        raise ValueError(f"eq. 18 is defined for two modalities, got {q.numel()}; use "
                         f"coef_form='share_ratio' for M > 2")
    q, d = q.double(), d.double()
    logits = torch.stack([temperature * q[0] / (q[1] + EPS),
                          temperature * d[0] / (d[1] + EPS)])
    return torch.softmax(logits, dim=0)


def share_ratio_coefficients(q: torch.Tensor, d: torch.Tensor,
                             temperature: float) -> torch.Tensor:
    """Ours (any M >= 2): ``a = softmax_m(T q^_m / d^_m)``, q^ = q/sum q, d^ = d/sum d.

    Args:
        q, d: ``(M,)`` in config order.
    Returns:
        ``(M,)`` float64 coefficients a.
    """
    q, d = q.double(), d.double()
    q_hat = q / (q.sum() + EPS)
    d_hat = d / (d.sum() + EPS)
    return torch.softmax(temperature * q_hat / (d_hat + EPS), dim=0)


def reference_weights(H: torch.Tensor, l1: torch.Tensor,
                      temperature: float) -> Dict[str, torch.Tensor]:
    """What the reference script computes and only prints (M = 2; logged under reference_compat).

    H^_m = max(H_m / sum H, 0.3); q^ = (1/H^) normalised to sum 1; d^ = the
    batch-mean L1 norm of p_m normalised to sum 1;
    w = softmax([T d^_1 q^_0, T d^_0 q^_1]). float64.
    """
    H, l1 = H.double(), l1.double()
    h_hat = (H / (H.sum() + EPS)).clamp(min=REFERENCE_H_FLOOR)
    inv = 1.0 / h_hat
    q_hat = inv / (inv.sum() + EPS)
    d_hat = l1 / (l1.sum() + EPS)
    w = torch.softmax(torch.stack([temperature * d_hat[1] * q_hat[0],
                                   temperature * d_hat[0] * q_hat[1]]), dim=0)
    return {'H_hat': h_hat, 'q_hat': q_hat, 'd_hat': d_hat, 'w': w}


def probe_statistics(probes: Dict[str, torch.Tensor], labels: torch.Tensor,
                     modalities: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Batch means ``(M,)`` of the probes' entropy H, gt confidence d and L1 norm, float64.

    Sums and the sample count are all-reduced in one float64 call, so under DDP
    every rank gets the statistics of the global batch.
    """
    local = torch.stack(
        [entropy(probes[m]).sum() for m in modalities]
        + [gt_confidence(probes[m], labels).sum() for m in modalities]
        + [probes[m].detach().double().abs().sum() for m in modalities]
        + [torch.tensor(float(labels.shape[0]), dtype=torch.float64, device=labels.device)])
    total = all_reduce_sum(local)
    M = len(modalities)
    count = total[-1]
    return {'H': total[:M] / count, 'd': total[M:2 * M] / count,
            'l1': total[2 * M:3 * M] / count}


# --------------------------------------------------------------------------- hook
@HOOKS.register_module()
class ARLHook(BaseBalanceHook):
    """Unimodal probe losses plus an asymmetric gate coefficient per encoder.

    Args:
        gamma: Weight of the unimodal probe losses (eq. 22); 4 in the paper.
        temperature: T of eq. 18; the paper uses 8 on CREMA-D and 4 elsewhere
            (default 4).
        coef_form: ``'eq18'`` (the paper, M = 2 only) or ``'share_ratio'`` (ours,
            any M >= 2; required for M > 2).
        unimodal_reg: UR of Table 5; off -> gamma = 0 (probes still computed for
            q and d, their CE only logged).
        asymmetric: AL of Table 5; off -> no gradient scaling (coefficient 1,
            also with ``residual=False``).
        residual: GR of Table 5; on -> coefficient 1 + a_m, off -> a_m.
        reference_compat: The evident intent of the reference script: after a
            warm-up of 0-based epochs ``0..start`` (gamma replaced by 1, no
            scaling) every encoder gets a = 0.5 (coefficient 1.5); eq. 18 is
            still computed and logged, and the reference's own weights are
            logged as ``ref_*``. Its gradient-norm clip at 40 is an optim_wrapper
            setting: ``clip_grad=dict(max_norm=40, norm_type=2)``.
        start: Last warm-up epoch of ``reference_compat`` (default 5, i.e. 6
            epochs). Only valid with ``reference_compat=True``.
    """

    method = 'arl'

    def __init__(self, gamma: float = 4.0, temperature: float = 4.0, coef_form: str = 'eq18',
                 unimodal_reg: bool = True, asymmetric: bool = True, residual: bool = True,
                 reference_compat: bool = False, start: Optional[int] = None) -> None:
        super().__init__()
        if coef_form not in COEF_FORMS:
            raise ValueError(f'ARLHook: unknown coef_form={coef_form!r}; expected one of '
                             f'{COEF_FORMS}')
        check_number('ARLHook', 'gamma', gamma, low=0,
                     meaning='weight of the unimodal losses')
        check_number('ARLHook', 'temperature', temperature, low=0, meaning='T of eq. 18')
        for name, value in (('unimodal_reg', unimodal_reg), ('asymmetric', asymmetric),
                            ('residual', residual), ('reference_compat', reference_compat)):
            if not isinstance(value, bool):
                raise TypeError(f'ARLHook: {name}={value!r} must be True or False')
        if start is not None and not reference_compat:
            raise ValueError(f'ARLHook: start={start} is the warm-up of reference_compat; '
                             f'set reference_compat=True or drop start')
        if start is None:
            start = REFERENCE_START
        check_number('ARLHook', 'start', start, low=0, integer=True,
                     meaning='last warm-up epoch, 0-based')
        self.gamma = float(gamma)
        self.temperature = float(temperature)
        self.coef_form = coef_form
        self.unimodal_reg = unimodal_reg
        self.asymmetric = asymmetric
        self.residual = residual
        self.reference_compat = reference_compat
        self.start = start
        self.a: Dict[str, torch.Tensor] = {}
        self.coefficients: Dict[str, float] = {}

    # --- wiring -------------------------------------------------------------
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.reference_compat:
            clip = getattr(runner.optim_wrapper, 'clip_grad_kwargs', None) or {}
            if clip.get('max_norm') != REFERENCE_CLIP_NORM:
                print_log(f'ARLHook: reference_compat clips the global gradient norm at '
                          f'{REFERENCE_CLIP_NORM:g} after scaling; this run has '
                          f'optim_wrapper.clip_grad={clip or None}. Set optim_wrapper.clip_grad='
                          f'dict(max_norm=40, norm_type=2) to match the reference.',
                          logger='current', level=30)

    def setup(self, model) -> None:
        names: List[str] = list(model.modalities)
        if len(names) < 2:
            raise ValueError(f'ARLHook needs at least two modalities, the model has {names}')
        if self.coef_form == 'eq18' and len(names) != 2:
            raise ValueError(
                f"ARLHook: coef_form='eq18' is the paper's eq. 18, defined for two modalities; "
                f"the model has {len(names)} ({names}). Set coef_form='share_ratio' "
                f'(ours: a = softmax_m(T q^_m / d^_m)).')
        if self.reference_compat:
            from mmbal.models.necks import FiLMFusion, GatedFusion
            if isinstance(model.fusion, (FiLMFusion, GatedFusion)):
                raise NotImplementedError(
                    f"ARLHook: reference_compat probes for {type(model.fusion).__name__} "
                    f'(the reference code substitutes the modality for its missing '
                    f'partner) are not implemented; use reference_compat=False '
                    f'(zeroed-partner probes).')
        print_log(
            f'ARLHook: modality order {names} (m0 = {names[0]!r}), coef_form={self.coef_form}, '
            f'T={self.temperature:g}, gamma={self.gamma:g}, reads probe logits (model metrics: '
            f'{getattr(model, "modality_logits", None)}), '
            f'unimodal_reg={self.unimodal_reg}, asymmetric={self.asymmetric}, '
            f'residual={self.residual}, reference_compat={self.reference_compat}'
            + (f' (warm-up epochs 0..{self.start})' if self.reference_compat else ''),
            logger='current')

    # --- schedule -----------------------------------------------------------
    def in_warmup(self, epoch: int) -> bool:
        """reference_compat only: 0-based epochs 0..start train with gamma 1, no scaling."""
        return self.reference_compat and epoch <= self.start

    def effective_gamma(self, epoch: int) -> float:
        if not self.unimodal_reg:
            return 0.0
        return 1.0 if self.in_warmup(epoch) else self.gamma

    def coefficients_from(self, a: Dict[str, torch.Tensor], epoch: int) -> Dict[str, float]:
        """Gate coefficient per modality: 1 + a (residual) or a; 1 when nothing is scaled."""
        if not self.asymmetric or self.in_warmup(epoch):
            return {m: 1.0 for m in a}
        values = {m: REFERENCE_A if self.reference_compat else float(v) for m, v in a.items()}
        return {m: (1.0 + v if self.residual else v) for m, v in values.items()}

    def compute_a(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        if self.coef_form == 'eq18':
            return eq18_coefficients(q, d, self.temperature)
        return share_ratio_coefficients(q, d, self.temperature)

    # --- balance call point -------------------------------------------------
    def after_forward(self, ctx, outputs, data_samples) -> BalanceTerms:
        model = ctx.model
        labels = data_samples['gt_label']
        names = list(model.modalities)
        try:
            probes = outputs.logits('probe')
        except ValueError as err:
            raise ValueError(f'ARLHook needs probe logits: {err}') from err

        stats = probe_statistics(probes, labels, names)
        H, d = stats['H'], stats['d']
        q = entropy_q(H)
        a_vec = self.compute_a(q, d)
        self.a = dict(zip(names, a_vec))
        self.coefficients = self.coefficients_from(self.a, ctx.epoch)

        unimodal = {m: F.cross_entropy(probes[m], labels) for m in names}
        gamma = self.effective_gamma(ctx.epoch)
        losses = {}
        if gamma > 0:
            losses['loss_unimodal'] = gamma * sum(unimodal.values())

        for i, m in enumerate(names):
            self.log(f'H_{m}', H[i])
            self.log(f'q_{m}', q[i])
            self.log(f'd_{m}', d[i])
            self.log(f'a_{m}', a_vec[i])
            self.log(f'coef_{m}', self.coefficients[m])
            self.log(f'ce_{m}', unimodal[m])
        self.log('gamma', gamma)
        if len(names) == 2:
            m0, m1 = names
            self.log(f'q_ratio_{m0}_{m1}', q[0] / (q[1] + EPS))
            self.log(f'd_ratio_{m0}_{m1}', d[0] / (d[1] + EPS))
            if self.reference_compat:
                ref = reference_weights(H, stats['l1'], self.temperature)
                for i, m in enumerate(names):
                    for key in ('q_hat', 'd_hat', 'w'):
                        self.log(f'ref_{key}_{m}', ref[key][i])
        # A coefficient of exactly 1 leaves the gate untouched (bit-exact).
        return BalanceTerms(coefficients={m: c for m, c in self.coefficients.items()
                                          if c != 1.0}, losses=losses)
