"""MMPareto: boosting multimodal learning with innocent unimodal assistance (ICML 2024).

Spec (docs/methods/mmpareto.md),
pinned to the official code (GeWu-Lab/MMPareto_ICML2024 ``code/MMPareto.py``):

* an auxiliary head h_m = Linear(d_m, K) per modality reads the gated feature z_m;
  L = CE(f, y) + sum_m CE(h_m(z_m), y);
* for each encoder m, with theta_m = every parameter of the encoder:
  g^f = d CE(f) / d theta_m and g^u = d CE(h_m(z_m)) / d theta_m (flattened over theta_m);
  c = <g^f, g^u> / max(|g^f| |g^u|, eps); (a_f, a_u) = (1/2, 1/2) if c > 0, else the
  min-norm point of the segment [g^f, g^u] (with the solver's guards);
* per tensor p of theta_m: h_p = 2 (a_f g^f_p + a_u g^u_p), r_p = |G_p| / |h_p| with
  G_p = param.grad (the gradient of the whole loss); the new gradient is
  gamma r_p h_p if r_p > 1 else gamma h_p (gamma = 1.5). Fused head and aux heads keep G.

The per-loss gradients come from the training step (``LossGradRequest``), with the same
accumulation, AMP and DDP conventions as ``param.grad``, so r_p compares like with like.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from mmbal.balance.functional import EPS
from mmbal.engine.step import BalanceTerms, LossGradRequest
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

#: The official code's gamma (hard-coded there; BalanceBenchmark's ``alpha``).
DEFAULT_GAMMA = 1.5
#: The min-norm solver's guard weights (``min_norm_solvers.py``, 2-vector case).
GUARD_HIGH = 0.999
GUARD_LOW = 0.001
FUSED = 'fused'


# --- pure math (unit-tested against hand computation) ------------------------------------------
def gram(g_f: Sequence[torch.Tensor], g_u: Sequence[torch.Tensor]) -> Tuple[float, float, float]:
    """``(|g^f|^2, <g^f, g^u>, |g^u|^2)`` over the concatenation of the tensors, in float64.

    Args:
        g_f: Per-tensor gradients of the fused loss (any shapes).
        g_u: Per-tensor gradients of the unimodal loss, aligned with ``g_f``.
    """
    if len(g_f) != len(g_u):
        raise ValueError(f'g_f has {len(g_f)} tensors but g_u has {len(g_u)}; they must align')
    total = torch.zeros(2, 2, dtype=torch.float64)
    for a, b in zip(g_f, g_u):
        if a.shape != b.shape:
            raise ValueError(f'gradient shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}')
        stacked = torch.stack([a.detach().reshape(-1), b.detach().reshape(-1)]).double()
        total += (stacked @ stacked.T).cpu()
    return float(total[0, 0]), float(total[0, 1]), float(total[1, 1])


def cosine(ff: float, fu: float, uu: float, eps: float = EPS) -> float:
    """``c = <g^f, g^u> / max(|g^f| |g^u|, eps)`` from the Gram entries."""
    return fu / max((ff * uu) ** 0.5, eps)


def min_norm_weight(ff: float, fu: float, uu: float) -> float:
    """Weight a_f of g^f in the min-norm point ``a_f g^f + (1 - a_f) g^u`` of the segment.

    ``a_f = (|g^u|^2 - <g^f,g^u>) / (|g^f|^2 + |g^u|^2 - 2 <g^f,g^u>)``, with the
    solver's guards: 0.999 if ``<g^f,g^u> >= |g^f|^2``, else 0.001 if
    ``<g^f,g^u> >= |g^u|^2`` (for c <= 0 only a zero gradient reaches them).
    """
    if fu >= ff:
        return GUARD_HIGH
    if fu >= uu:
        return GUARD_LOW
    return (uu - fu) / (ff + uu - 2.0 * fu)


def pareto_weights(ff: float, fu: float, uu: float, eps: float = EPS
                   ) -> Tuple[float, float, float]:
    """``(c, a_f, a_u)``: equal weights 1/2 without conflict (c > 0), else the min-norm point."""
    c = cosine(ff, fu, uu, eps)
    if c > 0:
        return c, 0.5, 0.5
    a_f = min_norm_weight(ff, fu, uu)
    return c, a_f, 1.0 - a_f


def rescale_grad(total: torch.Tensor, g_f: torch.Tensor, g_u: torch.Tensor, a_f: float,
                 a_u: float, gamma: float = DEFAULT_GAMMA, eps: float = EPS,
                 reference_compat: bool = False) -> Tuple[torch.Tensor, float]:
    """The new gradient of one tensor and its ratio r_p.

    ``h = 2 (a_f g^f + a_u g^u)``, ``r = |G| / |h|``; returns ``gamma r h`` if r > 1,
    else ``gamma h``. Ours: ``|h| < eps`` gives ``gamma h`` (r reported as 1);
    ``reference_compat`` divides by |h| unguarded, as the code (|h| = 0 then gives
    inf/nan, which the code also produces).

    Args:
        total: G, the gradient of the whole loss (param.grad), any shape.
        g_f: The fused loss's gradient, same shape.
        g_u: The unimodal loss's gradient, same shape.
    """
    h = 2.0 * (a_f * g_f.double() + a_u * g_u.double())
    h_norm = h.norm()
    if not reference_compat and float(h_norm) < eps:
        return (gamma * h).to(total.dtype), 1.0
    r = total.double().norm() / h_norm
    scale = gamma * r if bool(r > 1) else torch.as_tensor(gamma, dtype=torch.float64)
    return (scale * h).to(total.dtype), float(r)


def mmpareto_grads(total: Sequence[torch.Tensor], g_f: Sequence[torch.Tensor],
                   g_u: Sequence[torch.Tensor], gamma: float = DEFAULT_GAMMA, eps: float = EPS,
                   reference_compat: bool = False) -> Tuple[List[torch.Tensor], Dict[str, float]]:
    """One encoder's new gradients: a global direction (c, a) and a per-tensor magnitude.

    Args:
        total: Per-tensor G (param.grad) of the encoder's parameters.
        g_f: Per-tensor gradients of the fused loss, aligned with ``total``.
        g_u: Per-tensor gradients of the encoder's unimodal loss, aligned.

    Returns:
        The new per-tensor gradients and ``{'cos', 'a_f', 'a_u', 'rescaled'}``
        (``rescaled``: the fraction of tensors with r_p > 1).
    """
    if not len(total) == len(g_f) == len(g_u):
        raise ValueError(f'{len(total)} gradients, {len(g_f)} fused and {len(g_u)} unimodal '
                         f'gradients: they must align')
    c, a_f, a_u = pareto_weights(*gram(g_f, g_u), eps=eps)
    new, ratios = [], []
    for G, gf, gu in zip(total, g_f, g_u):
        grad, r = rescale_grad(G, gf, gu, a_f, a_u, gamma, eps, reference_compat)
        new.append(grad)
        ratios.append(r)
    rescaled = sum(r > 1 for r in ratios) / max(len(ratios), 1)
    return new, {'cos': c, 'a_f': a_f, 'a_u': a_u, 'rescaled': rescaled}


# --- the hook ------------------------------------------------------------------------------------
@HOOKS.register_module()
class MMParetoHook(BaseBalanceHook):
    """Unimodal auxiliary heads; each encoder's gradient is Pareto-combined and rescaled.

    Costs M + 2 backward passes per micro-batch: d CE(f)/d(all encoders), one
    d CE(h_m(z_m))/d theta_m per modality, and the step's backward of the whole loss.

    Args:
        gamma: Factor of the new encoder gradients (code 1.5; BalanceBenchmark's alpha).
        eps: Guard of the cosine's denominator and of |h_p| (ours: with |h_p| < eps
            the new gradient is gamma h_p).
        reference_compat: The official code's r_p = |G_p| / |h_p| with no guard.
    """

    method = 'mmpareto'

    def __init__(self, gamma: float = DEFAULT_GAMMA, eps: float = EPS,
                 reference_compat: bool = False) -> None:
        super().__init__()
        check_number('MMParetoHook', 'gamma', gamma, low=0, low_open=True,
                     meaning='factor of the new encoder gradients')
        check_number('MMParetoHook', 'eps', eps, low=0, low_open=True,
                     meaning='guard of the cosine and of |h_p|')
        self.gamma = float(gamma)
        self.eps = float(eps)
        self.reference_compat = bool(reference_compat)
        # theta_m of the last forward, aligned with the per-loss gradients it requested.
        self._params: Dict[str, List[nn.Parameter]] = {}

    # --- setup ---------------------------------------------------------------------------
    @staticmethod
    def encoder_params(model) -> Dict[str, List[nn.Parameter]]:
        """theta_m: every trainable parameter of ``model.encoders[m]``, in module order."""
        params = {m: [p for p in model.encoders[m].parameters() if p.requires_grad]
                  for m in model.modalities}
        seen: Dict[int, str] = {}
        for m, ps in params.items():
            if not ps:
                raise ValueError(f'MMParetoHook: encoder {m!r} has no trainable parameter')
            for p in ps:
                if id(p) in seen:
                    raise ValueError(f'MMParetoHook: encoders {seen[id(p)]!r} and {m!r} share a '
                                     f'parameter; each encoder needs its own theta_m')
                seen[id(p)] = m
        return params

    def setup(self, model) -> None:
        """Check the encoders (own parameters, feature sizes) at every ``before_run``."""
        self.encoder_params(model)
        for m in model.modalities:
            if getattr(model.encoders[m], 'out_channels', None) is None:
                raise ValueError(f'MMParetoHook: encoder {m!r} does not declare out_channels, '
                                 f'the input size of its aux head')
        print_log(f'MMParetoHook: aux heads Linear(d_m, {model.num_classes}) for '
                  f'{list(model.modalities)}, gamma={self.gamma}, '
                  f'reference_compat={self.reference_compat}', logger='current')

    def build_modules(self, model) -> nn.Module:
        """One aux head Linear(d_m, K) per modality (PyTorch's default init, as the code)."""
        k = model.num_classes
        return nn.ModuleDict({m: nn.Linear(int(model.encoders[m].out_channels), k)
                              for m in model.modalities})

    def heads(self, model) -> nn.Module:
        """The aux heads ``{m: Linear(d_m, K)}`` attached to ``model``; raise if missing."""
        modules = getattr(model, 'balance_modules', None)
        if modules is None or self.method not in modules:
            raise RuntimeError(
                f'MMParetoHook: the model has no balance_modules[{self.method!r}] (its aux '
                f'heads). MMBalRunner attaches them; without a Runner call '
                f'mmbal.engine.runner.mmbal_runner.attach_balance_modules(model, hooks) before '
                f'building the optimizer')
        return modules[self.method]

    # --- per pass ----------------------------------------------------------------------------
    def after_forward(self, ctx, outputs, data_samples) -> BalanceTerms:
        """The unimodal losses, and requests for g^f (all encoders) and each g^u_m."""
        model = ctx.model
        missing = [m for m in model.modalities if m not in outputs.gates]
        if missing or outputs.fused_logits is None or not ctx.plan.base_loss:
            raise ValueError(f'MMParetoHook needs passes that train every encoder with the base '
                             f'loss on; this pass trains {list(outputs.gates)} of '
                             f'{list(model.modalities)} (base_loss={ctx.plan.base_loss})')
        heads = self.heads(model)
        labels = data_samples['gt_label']
        self._params = self.encoder_params(model)
        # The model's own trained term, so that G = g^f + sum_m g^u_m (no other losses).
        fused = model.loss(outputs, data_samples)['loss']
        unimodal = {m: F.cross_entropy(heads[m](outputs.features[m]), labels)
                    for m in model.modalities}
        union = [p for m in model.modalities for p in self._params[m]]
        requests = {FUSED: LossGradRequest(fused, union)}
        requests.update({f'uni_{m}': LossGradRequest(unimodal[m], self._params[m])
                         for m in model.modalities})
        return BalanceTerms(losses={f'loss_mmpareto_{m}': v for m, v in unimodal.items()},
                            loss_grads=requests)

    @torch.no_grad()
    def edit_grads(self, ctx) -> None:
        """Replace each encoder's gradient by its Pareto combination, rescaled per tensor."""
        grads = ctx.loss_grads(self)
        if not grads:
            return
        offset = 0
        for m, params in self._params.items():
            g_f = grads[FUSED][offset:offset + len(params)]
            offset += len(params)
            g_u = grads[f'uni_{m}']
            # Parameters without a gradient (unused this update) keep grad=None.
            keep = [i for i, p in enumerate(params) if p.grad is not None]
            new, info = mmpareto_grads([params[i].grad for i in keep], [g_f[i] for i in keep],
                                       [g_u[i] for i in keep], self.gamma, self.eps,
                                       self.reference_compat)
            for i, grad in zip(keep, new):
                params[i].grad.copy_(grad)
            for key, value in info.items():
                self.log(f'{key}_{m}', value)
