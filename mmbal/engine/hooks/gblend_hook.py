"""G-Blending: Gradient-Blending (Wang, Tran, Feiszli, CVPR 2020).

Spec (docs/methods/gblend.md):

* an auxiliary head h_m = Linear(d_m, K) per modality reads the gated feature z_m;
  the trained loss is ``w_f CE(f, y) + sum_m w_m CE(h_m(z_m), y)`` with
  ``w_f + sum_m w_m = 1``, handed to the step as extra terms: ``(w_f - 1) CE(f)``
  (the base loss CE(f) is already in) and ``w_m CE(h_m(z_m))``;
* the weights come from short trainings of copies of the model, one per head
  i in {1..M, fused}: the copy is trained n epochs on the training split by CE_i
  alone (a unimodal copy: encoder i and h_i only), with a fresh optimizer;
  L^T (train split) and L^V (val split, never test) are measured before and after;
  ``O = L^V - L^T``, ``dO_i = O_{N+n} - O_N``, ``dG_i = L^V_N - L^V_{N+n}``,
  ``w~_i = max(dG_i, 0) / max(dO_i^2, eps)``, ``w_i = w~_i / sum_j w~_j``;
* offline: one estimate at epoch 0 with n = the whole schedule; online: an
  estimate at every epoch 0, s, 2s, ... with n = s (the super-epoch);
* explicit ``weights`` skip the estimation (the official code's hand-set weights).
"""
import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, build_optim_wrapper
from torch import nn

from mmbal.balance.dataset_pass import build_split_loader, dataset_pass, kept_rng
from mmbal.balance.functional import EPS
from mmbal.engine.step import BalanceTerms
from mmbal.engine.step.train_step import average_grads_over_ranks
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

#: The head trained on the fused logits, next to one head per modality.
FUSED = 'fused'
MODES = ('offline', 'online')
#: How far configured weights may be from summing to 1 before they are refused
#: (the official weight table sums to 1.000 +- 0.001).
SUM_TOLERANCE = 1e-3
#: The four losses of one head: (L^T_N, L^V_N, L^T_{N+n}, L^V_{N+n}).
HeadLosses = Tuple[float, float, float, float]


# --- pure math (unit-tested against hand computation) ------------------------------------------
def blend_weights(losses: Mapping[str, HeadLosses], eps: float = EPS
                  ) -> Tuple[Optional[Dict[str, float]], Dict[str, Dict[str, float]]]:
    """The normalised weights from each head's train and val losses before and after.

    ``O = L^V - L^T``; ``dO = O_{N+n} - O_N``; ``dG = L^V_N - L^V_{N+n}``;
    ``OGR = |dO / dG|`` (logged; ``|dG|`` guarded by eps); ``w~ = max(dG, 0) /
    max(dO^2, eps)`` (the guard is ours); ``w = w~ / sum w~``.

    Args:
        losses: ``{head: (L^T_N, L^V_N, L^T_{N+n}, L^V_{N+n})}``, mean CE per sample.

    Returns:
        ``(weights, info)``: weights None when every w~ is 0 (no head generalised
        better; the caller keeps its previous weights); ``info[head]`` holds
        ``dG``, ``dO``, ``OGR`` and ``raw`` (w~).
    """
    info: Dict[str, Dict[str, float]] = {}
    for head, values in losses.items():
        if len(values) != 4 or not all(math.isfinite(float(v)) for v in values):
            raise ValueError(f'blend_weights: losses[{head!r}]={values!r}; expected four finite '
                             f'losses (L^T_N, L^V_N, L^T_N+n, L^V_N+n)')
        lt0, lv0, lt1, lv1 = (float(v) for v in values)
        d_o = (lv1 - lt1) - (lv0 - lt0)
        d_g = lv0 - lv1
        info[head] = {'dG': d_g, 'dO': d_o, 'OGR': abs(d_o) / max(abs(d_g), eps),
                      'raw': max(d_g, 0.0) / max(d_o * d_o, eps)}
    total = sum(v['raw'] for v in info.values())
    if total <= 0:
        return None, info
    return {head: v['raw'] / total for head, v in info.items()}, info


def blend_terms(fused_loss: torch.Tensor, unimodal_losses: Mapping[str, torch.Tensor],
                weights: Mapping[str, float]) -> Dict[str, torch.Tensor]:
    """The extra loss terms that turn the base loss CE(f) into the blended loss.

    ``(w_f - 1) CE(f) + sum_m w_m CE_m``: added to the step's base loss CE(f)
    it gives ``w_f CE(f) + sum_m w_m CE_m`` (the same gradients).
    """
    terms = {f'loss_gblend_{FUSED}': (weights[FUSED] - 1.0) * fused_loss}
    terms.update({f'loss_gblend_{m}': weights[m] * loss for m, loss in unimodal_losses.items()})
    return terms


def check_weights(weights: Mapping[str, float], heads: Sequence[str], owner: str
                  ) -> Dict[str, float]:
    """Configured weights: exactly ``heads``, finite and >= 0, summing to 1 (then normalised)."""
    if not isinstance(weights, Mapping) or set(weights) != set(heads):
        given = sorted(weights) if isinstance(weights, Mapping) else weights
        raise ValueError(f'{owner}: weights={given!r}; expected one weight per head: '
                         f'{list(heads)}')
    for head in heads:
        check_number(owner, f'weights[{head!r}]', weights[head], low=0)
    total = float(sum(weights[h] for h in heads))
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(f'{owner}: weights sum to {total:g}; expected w_fused + sum_m w_m = 1 '
                         f'(within {SUM_TOLERANCE:g})')
    return {h: float(weights[h]) / total for h in heads}


# --- the estimation ------------------------------------------------------------------------------
def aux_heads(model: nn.Module) -> nn.Module:
    """The aux heads ``{m: Linear(d_m, K)}`` attached to ``model``; raise if missing."""
    modules = getattr(model, 'balance_modules', None)
    if modules is None or GBlendHook.method not in modules:
        raise RuntimeError(
            f'GBlendHook: the model has no balance_modules[{GBlendHook.method!r}] (its aux '
            f'heads). MMBalRunner attaches them; without a Runner call '
            f'mmbal.engine.runner.mmbal_runner.attach_balance_modules(model, hooks) before '
            f'building the optimizer')
    return modules[GBlendHook.method]


def split_losses(model: nn.Module, loader: Iterable, heads: Sequence[str]
                 ) -> Dict[str, float]:
    """Mean per-sample CE of each head over a whole split (eval mode, no_grad, all ranks)."""
    modalities = list(model.modalities) if FUSED in heads else list(heads)
    aux = aux_heads(model)

    def ce_sums(data) -> Dict[str, torch.Tensor]:
        labels = data['data_samples']['gt_label']
        feats = model.encode(data['inputs'], modalities)
        out = {}
        for head in heads:
            logits = model.classify(feats) if head == FUSED else aux[head](feats[head])
            out[f'ce/{head}'] = F.cross_entropy(logits.double(), labels, reduction='sum')
        return out

    sums = dataset_pass(loader, ce_sums, model=model)
    return {head: float(sums[f'ce/{head}'] / sums['count']) for head in heads}


def fresh_optim_wrapper(module: nn.Module, optim_cfg: Mapping,
                        lrs: Optional[Sequence[float]] = None) -> OptimWrapper:
    """A new optim wrapper for ``module`` from the run's ``optim_wrapper`` config.

    ``lrs``: the run's current lr per param group (after scaling and schedulers),
    which replaces the configured one; the group counts must match.
    """
    wrapper = build_optim_wrapper(module, copy.deepcopy(dict(optim_cfg)))
    if lrs is not None:
        groups = wrapper.optimizer.param_groups
        if len(groups) != len(lrs):
            raise ValueError(f'GBlendHook: the estimation optimizer has {len(groups)} param '
                             f'groups but the run\'s has {len(lrs)}; cannot carry the current '
                             f'lr over (optim_wrapper.paramwise_cfg must give both the same)')
        for group, lr in zip(groups, lrs):
            group['lr'] = lr
    return wrapper


def copy_objective(model: nn.Module, data: dict, head: str) -> torch.Tensor:
    """CE_i of one batch: the model's loss on f (fused), or CE(h_i(z_i), y) encoding i only."""
    inputs, samples = data['inputs'], data['data_samples']
    if head == FUSED:
        return model.loss(model.run(inputs), samples)['loss']
    outputs = model.run(inputs, trainable=[head])
    return F.cross_entropy(aux_heads(model)[head](outputs.features[head]), samples['gt_label'])


def _set_epoch(loader: Iterable, epoch: int) -> None:
    sampler = getattr(loader, 'sampler', None)
    if hasattr(sampler, 'set_epoch'):
        sampler.set_epoch(epoch)


def train_copy(model: nn.Module, head: str, loader: Iterable, optim_cfg: Mapping,
               lrs: Optional[Sequence[float]], epochs: int, first_epoch: int = 0) -> nn.Module:
    """A deep copy of ``model`` trained ``epochs`` epochs on ``loader`` by CE_``head`` alone.

    The copy gets a fresh optimizer (:func:`fresh_optim_wrapper`); a unimodal
    copy trains only encoder ``head`` and its aux head (the rest is frozen).
    Under DDP every rank trains its copy on its shard of each batch with the
    gradients averaged over ranks, as DDP would. ``model`` is never changed.
    """
    net = copy.deepcopy(model)
    net.zero_grad(set_to_none=True)
    if head != FUSED:
        own = {id(p) for p in net.encoders[head].parameters()}
        own.update(id(p) for p in aux_heads(net)[head].parameters())
        for p in net.parameters():
            p.requires_grad_(id(p) in own)
    else:
        for p in aux_heads(net).parameters():
            p.requires_grad_(False)
    wrapper = fresh_optim_wrapper(net, optim_cfg, lrs)
    wrapper.initialize_count_status(net, 0, epochs * len(loader))
    net.train()
    for k in range(epochs):
        _set_epoch(loader, first_epoch + k)
        for data in loader:
            with wrapper.optim_context(net):
                data = net.data_preprocessor(data, True)
                loss = copy_objective(net, data, head)
            wrapper.backward(wrapper.scale_loss(loss))
            if wrapper.should_update():
                average_grads_over_ranks([wrapper.optimizer])
                wrapper.step()
                wrapper.zero_grad()
    _set_epoch(loader, first_epoch)
    return net


@dataclass
class Estimate:
    """One estimate: the weights (None: keep the previous ones), per-head losses and info."""

    weights: Optional[Dict[str, float]]
    losses: Dict[str, HeadLosses] = field(default_factory=dict)
    info: Dict[str, Dict[str, float]] = field(default_factory=dict)


def estimate_weights(model: nn.Module, train_loader: Iterable, eval_train: Iterable,
                     eval_val: Iterable, optim_cfg: Mapping, lrs: Optional[Sequence[float]],
                     epochs: int, first_epoch: int = 0, eps: float = EPS) -> Estimate:
    """Train one copy per head ``epochs`` epochs and derive the weights (:func:`blend_weights`).

    Args:
        model: The run's model (unwrapped), with its aux heads; read only.
        train_loader: This rank's training batches (the training pipeline).
        eval_train: This rank's share of the training split, eval pipeline (L^T).
        eval_val: This rank's share of the val split, eval pipeline (L^V).
        optim_cfg: The run's ``optim_wrapper`` config, for each copy's fresh optimizer.
        lrs: The run's current lr per param group (None: the configured lr).
        epochs: n, the epochs each copy trains.
        first_epoch: The run's epoch the window starts at (the samplers' epochs).
    """
    heads = [*model.modalities, FUSED]
    with kept_rng():
        before = {'T': split_losses(model, eval_train, heads),
                  'V': split_losses(model, eval_val, heads)}
        losses = {}
        for head in heads:
            net = train_copy(model, head, train_loader, optim_cfg, lrs, epochs, first_epoch)
            after_t = split_losses(net, eval_train, [head])[head]
            after_v = split_losses(net, eval_val, [head])[head]
            losses[head] = (before['T'][head], before['V'][head], after_t, after_v)
            del net
            print_log(f'GBlendHook: copy {head!r} trained {epochs} epochs: L^T '
                      f'{losses[head][0]:.4f} -> {after_t:.4f}, L^V {losses[head][1]:.4f} -> '
                      f'{after_v:.4f}', logger='current')
    weights, info = blend_weights(losses, eps)
    return Estimate(weights, losses, info)


# --- the hook ------------------------------------------------------------------------------------
@HOOKS.register_module()
class GBlendHook(BaseBalanceHook):
    """Blended loss of the fused head and one aux head per modality, weights from side trainings.

    Cost per estimate: ``(M + 1) n`` epochs of copy training, plus ``2 (M + 2)``
    eval passes (train and val splits: all heads before, each copy after).
    Offline: ``(M + 1) max_epochs`` training epochs in all; online:
    ``(M + 1) s ceil(max_epochs / s)``. The hook logs the count.

    Args:
        mode: ``'offline'`` (one estimate at epoch 0 over the whole schedule) or
            ``'online'`` (an estimate every ``super_epoch`` epochs). Required.
        super_epoch: s, the online window in epochs (BalanceBenchmark's 10).
        weights: ``{modality: w_m, 'fused': w_f}`` summing to 1: no estimation,
            fixed weights (the official code's hand-set weights; mode must be
            'offline').
        eps: Guard of dO^2 (and of |dG| in the logged OGR).
    """

    method = 'gblend'
    # Before MMEngine's IterTimerHook (NORMAL) starts its clock in before_train_epoch, so the
    # estimation is not logged as the first iteration's data time (nor skews the eta).
    priority = 'ABOVE_NORMAL'

    def __init__(self, mode: Optional[str] = None, super_epoch: Optional[int] = None,
                 weights: Optional[Mapping[str, float]] = None, eps: float = EPS) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f'GBlendHook: mode={mode!r}; expected one of {MODES} (required: '
                             f'one estimate over the whole schedule, or one per super-epoch)')
        if mode == 'online':
            if super_epoch is None:
                raise ValueError("GBlendHook: mode='online' needs super_epoch (s, the epochs "
                                 "between estimates)")
            check_number('GBlendHook', 'super_epoch', super_epoch, low=1, integer=True,
                         meaning='epochs between estimates')
            if weights is not None:
                raise ValueError("GBlendHook: weights are fixed for the whole run, but "
                                 "mode='online' re-estimates them; use mode='offline'")
        elif super_epoch is not None:
            raise ValueError(f"GBlendHook: super_epoch={super_epoch!r} is for mode='online'; "
                             f"mode='offline' estimates once over the whole schedule")
        if weights is not None and not isinstance(weights, Mapping):
            raise ValueError(f'GBlendHook: weights={weights!r}; expected a dict '
                             f'{{modality: w_m, {FUSED!r}: w_f}}')
        check_number('GBlendHook', 'eps', eps, low=0, low_open=True, meaning='guard of dO^2')
        self.mode = mode
        self.super_epoch = None if super_epoch is None else int(super_epoch)
        self.fixed = None if weights is None else dict(weights)
        self.eps = float(eps)
        self.heads: List[str] = []
        self.weights: Optional[Dict[str, float]] = None
        self.estimate_epoch: Optional[int] = None
        self.estimates = 0
        self.copy_epochs = 0

    # --- setup -----------------------------------------------------------------------------
    def setup(self, model) -> None:
        modalities = list(model.modalities)
        if len(modalities) < 2:
            raise ValueError(f'GBlendHook blends a fused head with unimodal heads; the model '
                             f'has only {modalities}')
        if FUSED in modalities:
            raise ValueError(f'GBlendHook: a modality is named {FUSED!r}, the name of the fused '
                             f'head\'s weight; rename the modality')
        for m in modalities:
            if getattr(model.encoders[m], 'out_channels', None) is None:
                raise ValueError(f'GBlendHook: encoder {m!r} does not declare out_channels, '
                                 f'the input size of its aux head')
        self.heads = [*modalities, FUSED]
        if self.fixed is not None:
            self.weights = check_weights(self.fixed, self.heads, 'GBlendHook')
        elif self.weights is None:  # the prior until the first estimate (or a resume)
            self.weights = {h: 1.0 / len(self.heads) for h in self.heads}
        source = ('fixed weights' if self.fixed is not None else
                  f'{self.mode} estimation' + (f', super_epoch {self.super_epoch}'
                                               if self.mode == 'online' else ''))
        print_log(f'GBlendHook: aux heads Linear(d_m, {model.num_classes}) for {modalities}; '
                  f'{source}; held-out split: val', logger='current')

    def build_modules(self, model) -> nn.Module:
        """One aux head Linear(d_m, K) per modality (PyTorch's default init)."""
        k = model.num_classes
        return nn.ModuleDict({m: nn.Linear(int(model.encoders[m].out_channels), k)
                              for m in model.modalities})

    # --- the schedule ----------------------------------------------------------------------
    def window(self, epoch: int, max_epochs: int) -> Optional[int]:
        """n, the copies' epochs, if an estimate is due at ``epoch`` (0-based); else None."""
        if self.fixed is not None:
            return None
        if self.mode == 'offline':
            return int(max_epochs) if epoch == 0 else None
        return self.super_epoch if epoch % self.super_epoch == 0 else None

    def planned_copy_epochs(self, max_epochs: int) -> int:
        """Copy-training epochs of a whole run: the sum of n over its estimates, times M + 1."""
        return len(self.heads) * sum(self.window(e, max_epochs) or 0 for e in range(max_epochs))

    def before_train(self, runner) -> None:
        super().before_train(runner)
        planned = self.planned_copy_epochs(runner.max_epochs)
        print_log(f'GBlendHook: the estimation trains {len(self.heads)} copies (one per head): '
                  f'{planned} copy epochs on top of the run\'s {runner.max_epochs} '
                  f'(about {1 + planned / runner.max_epochs:.1f}x a plain run), plus '
                  f'{2 * (len(self.heads) + 1)} eval passes (train and val splits) per '
                  f'estimate', logger='current')

    def before_train_epoch(self, runner) -> None:
        epoch = runner.epoch
        n = self.window(epoch, runner.max_epochs)
        if n is None or self.estimate_epoch == epoch:
            if self.fixed is None and self.estimate_epoch is None:
                raise RuntimeError(f'GBlendHook: epoch {epoch} starts without an estimate of '
                                   f'the weights (a resume from a checkpoint without '
                                   f'balance_hooks.gblend state?); resume from a checkpoint '
                                   f'this hook saved, or start from epoch 0')
            return
        cfg = getattr(runner, 'cfg', None)
        if cfg is None or cfg.get('val_dataloader') is None:
            raise ValueError('GBlendHook estimates its weights on the val split '
                             '(cfg.val_dataloader), which the config lacks; it never uses test')
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        workers = int(cfg.train_dataloader.get('num_workers', 0) or 0)
        eval_train = build_split_loader(cfg, 'train', pipeline='eval', num_workers=workers)
        eval_val = build_split_loader(cfg, 'val', pipeline='eval', num_workers=workers)
        lrs = [g['lr'] for g in runner.optim_wrapper.optimizer.param_groups]
        result = estimate_weights(model, runner.train_dataloader, eval_train, eval_val,
                                  cfg.optim_wrapper, lrs, n, first_epoch=epoch, eps=self.eps)
        self.record(result, epoch, n, len(eval_val.dataset))

    def record(self, result: Estimate, epoch: int, epochs: int, val_size: int) -> None:
        """Adopt an estimate's weights (or keep the previous ones), count and log it."""
        self.estimate_epoch = int(epoch)
        self.estimates += 1
        self.copy_epochs += len(result.losses) * int(epochs)
        if result.weights is None:
            print_log(f'GBlendHook: epoch {epoch}: no head generalised better (every dG <= 0); '
                      f'keeping the previous weights {self.weights}', logger='current',
                      level=logging.WARNING)
        else:
            self.weights = result.weights
        for head, info in result.info.items():
            for key in ('dG', 'dO', 'OGR'):
                self.log(f'{key}_{head}', info[key])
        self.log('estimation_copy_epochs', self.copy_epochs)
        rows = ', '.join(f'{h}: w={self.weights[h]:.4f} dG={i["dG"]:.4f} dO={i["dO"]:.4f} '
                         f'OGR={i["OGR"]:.3f}' for h, i in result.info.items())
        print_log(f'GBlendHook: estimate {self.estimates} at epoch {epoch} ({epochs} epochs per '
                  f'copy, held-out split: val, {val_size} samples): {rows}; copy epochs so far: '
                  f'{self.copy_epochs}', logger='current')

    # --- per pass ----------------------------------------------------------------------------
    def after_forward(self, ctx, outputs, data_samples) -> BalanceTerms:
        """The blended loss's extra terms, and each head's CE in the log."""
        model = ctx.model
        if self.weights is None:
            raise RuntimeError('GBlendHook: no weights yet; setup(model) sets the prior, '
                               'before_train_epoch the estimates')
        missing = [m for m in model.modalities if m not in outputs.gates]
        if missing or outputs.fused_logits is None or not ctx.plan.base_loss:
            raise ValueError(f'GBlendHook needs passes that train every encoder with the base '
                             f'loss on; this pass trains {list(outputs.gates)} of '
                             f'{list(model.modalities)} (base_loss={ctx.plan.base_loss})')
        heads = aux_heads(model)
        labels = data_samples['gt_label']
        fused = model.loss(outputs, data_samples)['loss']
        unimodal = {m: F.cross_entropy(heads[m](outputs.features[m]), labels)
                    for m in model.modalities}
        for head in self.heads:
            self.log(f'w_{head}', self.weights[head])
            self.log(f'ce_{head}', fused if head == FUSED else unimodal[head])
        return BalanceTerms(losses=blend_terms(fused, unimodal, self.weights))

    # --- state in checkpoints --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {'weights': dict(self.weights or {}), 'estimate_epoch': self.estimate_epoch,
                'estimates': self.estimates, 'copy_epochs': self.copy_epochs}

    def load_state_dict(self, state: dict) -> None:
        missing = [k for k in ('weights', 'estimate_epoch', 'estimates', 'copy_epochs')
                   if k not in state]
        if missing:
            raise KeyError(f'GBlendHook: the checkpoint\'s balance_hooks.gblend lacks {missing}')
        weights = state['weights']
        if self.heads and (not isinstance(weights, dict) or set(weights) != set(self.heads)):
            raise ValueError(f'GBlendHook: the checkpoint\'s weights are for '
                             f'{sorted(weights) if isinstance(weights, dict) else weights!r}; '
                             f'this model has heads {self.heads}')
        if self.fixed is None:
            self.weights = {h: float(weights[h]) for h in (self.heads or weights)}
        self.estimate_epoch = state['estimate_epoch']
        self.estimates = int(state['estimates'])
        self.copy_epochs = int(state['copy_epochs'])
