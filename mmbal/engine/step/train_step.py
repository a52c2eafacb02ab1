"""The training step of every mmbal run, top to bottom.

One batch::

    plan      = the passes of this batch          (one, unless a method asks for sub-steps)
    preprocess the batch once
    for each pass in plan:
      1. forward             model(inputs, mode='outputs', trainable, target_only, logits,
                             isolated)
                             through DDP; the base loss (unless the plan switches it off)
      2. methods, per pass   hook.after_forward(ctx, outputs, samples) -> BalanceTerms:
                             gate coefficients and noise on *this pass's* gates,
                             extra losses, per-loss gradient requests
      3. loss                base loss + extra losses
      4. per-loss gradients  autograd.grad of each requested term, scaled like the loss
      5. backward            optim_wrapper.backward(scale_loss(loss))  (AMP, accumulation)
      if this backward completes an update (accumulative_counts):
      6. unscale             AMP loss scale divided out; per-loss gradients all-reduced
         finite?             the update's loss terms and gradients (see below)
      7. gradient edits      hook.edit_grads(ctx)  (true gradients, before clipping);
         finite?             the gradients again, after each method that edits them
      8. clip                optim_wrapper.clip_grad
      9. optimizer step      optimizer.step, then the methods' own optimizers (AMP:
                             scaler.step + update), zero_grad

Non-finite values: every pass's trained loss and the gradients of every
optimizer's parameters are checked once the update's backwards are done, and
the gradients again after each method that overrides ``edit_grads`` (one fused
norm check and one device sync per check point; nothing is changed by it).
``nonfinite='raise'`` (default) raises :class:`NonFiniteError` naming the
iteration, the loss term or the parameters' owner (modality encoder, fusion,
head, a method's modules) before anything is updated; ``'skip'`` logs the same
as a warning and drops the update (gradients zeroed; the methods still see
their ``edit_grads`` call, so their per-update sums restart). With AMP, a
non-finite gradient found right after unscaling is the loss scaler's overflow:
the scaler skips that step and lowers its scale, so the check leaves it alone;
a loss term is never the scaler's business and is always checked.

Iteration counters, parameter schedulers and MMEngine's hooks advance once
per batch: the train loop (``BalanceTrainLoop``) calls this step between
``before_train_iter`` and ``after_train_iter``.
"""
import logging
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from mmengine.logging import MessageHub, print_log
from mmengine.model import is_model_wrapper
from torch import nn

from .api import BalanceTerms, LossGradRequest, NonFiniteError, PassPlan, StepContext

#: What the step does with a non-finite loss or gradient.
NONFINITE_MODES = ('raise', 'skip')


def check_nonfinite_mode(value: str, key: str = 'nonfinite') -> str:
    """Reject an unknown ``nonfinite`` setting, naming the config key."""
    if value not in NONFINITE_MODES:
        raise ValueError(f'{key}={value!r}: expected one of {NONFINITE_MODES}')
    return value


class _PassRecord(NamedTuple):
    """What a non-finite report needs of one pass of the current update."""

    where: str
    loss: torch.Tensor  # the trained loss, detached
    terms: Dict[str, torch.Tensor]  # the logged terms, detached
    sources: Dict[str, str]  # term -> who returned it


class BalanceTrainStep:
    """Runs one training batch through the model, the balance hooks and the optimizer.

    Args:
        model: The model the runner trains (a DDP wrapper or the model itself);
            forwards go through it so that DDP synchronises gradients.
        optim_wrapper: MMEngine ``OptimWrapper`` or ``AmpOptimWrapper``.
        hooks: The run's balance hooks, in the runner's priority order.
        nonfinite: ``'raise'`` (default): a non-finite loss term or gradient
            raises :class:`NonFiniteError`; ``'skip'``: it is logged as a
            warning and that update is dropped (counted in ``skipped_updates``
            and logged as ``train/skipped_updates``).
    """

    def __init__(self, model: nn.Module, optim_wrapper, hooks: Sequence = (),
                 nonfinite: str = 'raise') -> None:
        self.model = model
        self.module = model.module if is_model_wrapper(model) else model
        self.optim_wrapper = optim_wrapper
        self.hooks = list(hooks)
        self.nonfinite = check_nonfinite_mode(nonfinite)
        self.skipped_updates = 0
        # Gradients are checked again after the hooks that edit them (imported here: the
        # hooks' module imports this one).
        from mmbal.engine.hooks.base_balance_hook import BaseBalanceHook
        self._editors = {id(h) for h in self.hooks
                         if type(h).edit_grads is not BaseBalanceHook.edit_grads}
        # Per-loss gradients summed over the micro-batches of the current update.
        self._loss_grads: Dict[Tuple[int, str], List[torch.Tensor]] = {}
        # The passes of the current update, for the non-finite check.
        self._passes: List[_PassRecord] = []

    def __call__(self, data_batch, ctx: StepContext) -> Dict[str, torch.Tensor]:
        wrapper = self.optim_wrapper
        plans = self.plan(ctx)
        if len(plans) > 1 and wrapper._accumulative_counts > 1:
            raise ValueError(f'a method asked for {len(plans)} sub-steps per batch, which '
                             f'cannot be combined with optim_wrapper.accumulative_counts='
                             f'{wrapper._accumulative_counts}; set accumulative_counts=1')
        data = None
        log_vars: Dict[str, torch.Tensor] = {}
        for index, plan in enumerate(plans):
            ctx.plan, ctx.pass_index = plan, index
            with wrapper.optim_context(self.model):
                if data is None:
                    data = self.module.data_preprocessor(data_batch, True)
                samples = data['data_samples']
                # 1. forward, and the model's own loss
                outputs = self.model(data['inputs'], samples, mode='outputs',
                                     trainable=plan.trainable, target_only=plan.target_only,
                                     logits=plan.logits, isolated=plan.isolated)
                losses = self.module.loss(outputs, samples) if plan.base_loss else {}
                # 2. the methods' per-pass calls
                terms = [(hook, hook.after_forward(ctx, outputs, samples) or BalanceTerms())
                         for hook in self.hooks]
                for hook, term in terms:
                    _apply_gates(outputs, term, hook)
                # 3. the trained loss: base + extra terms (train metrics only logged)
                sources = dict.fromkeys(losses, f"{type(self.module).__name__}'s loss")
                for hook, term in terms:
                    _add_losses(losses, term.losses, hook)
                    sources.update(dict.fromkeys(term.losses, type(hook).__name__))
                metrics = self.module.train_metrics(outputs, samples)
                sources.update(dict.fromkeys(metrics, 'a train metric, not trained'))
                losses.update(metrics)
            loss, pass_log = self.module.parse_losses(losses)
            if not isinstance(loss, torch.Tensor):
                raise ValueError(f'pass {index} of this batch ({plan}) has no trained loss: the '
                                 f'base loss is off and no method returned a loss term')
            self._passes.append(_PassRecord(
                _where(ctx, index, plan, len(plans)), loss.detach(),
                {k: v.detach() for k, v in pass_log.items()}, sources))
            # 4. per-loss gradients
            for hook, term in terms:
                for name, request in term.loss_grads.items():
                    self._capture(hook, name, request)
            # 5. backward
            wrapper.backward(wrapper.scale_loss(loss))
            if wrapper.should_update():
                self._update(ctx)
            prefix = f'{plan.name or index}/' if len(plans) > 1 else ''
            log_vars.update({prefix + k: v for k, v in pass_log.items()})
        return log_vars

    def _update(self, ctx: StepContext) -> None:
        """Steps 6-9: one parameter update from the accumulated gradients."""
        wrapper = self.optim_wrapper
        scaler = getattr(wrapper, 'loss_scaler', None)
        own = [opt for hook in self.hooks for opt in hook.optimizers()]  # methods' own
        optimizers = [wrapper.optimizer, *own]
        # 6. unscale: every edit sees true gradients
        if scaler is not None:
            for optimizer in optimizers:
                scaler.unscale_(optimizer)
        average_grads_over_ranks(own)
        ctx._loss_grads = self._reduced_loss_grads()
        passes, self._passes = self._passes, []
        where = passes[-1].where
        problem = self._find_nonfinite(optimizers, passes, where, 'after backward')
        # AMP: inf/nan gradients right after unscaling are the scaler's overflow; it
        # skips this step and lowers the scale (a loss term is never an overflow).
        overflow = scaler is not None and problem is not None and problem[0] == 'gradient'
        problem = None if overflow else self._settle(problem)
        # 7. gradient edits
        for hook in self.hooks:
            hook.edit_grads(ctx)
            if problem is None and not overflow and id(hook) in self._editors:
                problem = self._settle(self._find_nonfinite(
                    optimizers, (), where, f'after edit_grads of {type(hook).__name__}'))
        ctx._loss_grads = {}
        if self._skip_update(problem):
            if scaler is not None:
                scaler.update(wrapper._scale_update_param)  # unscale_ state ends here
            wrapper.zero_grad()
            for optimizer in own:
                optimizer.zero_grad(set_to_none=True)
            return
        # 8. clip
        if wrapper.clip_grad_kwargs:
            wrapper._clip_grad()
        # 9. optimizer step(s): the model's, then the methods' own
        for optimizer in optimizers:
            if scaler is not None:
                scaler.step(optimizer)
            else:
                optimizer.step()
        if scaler is not None:
            scaler.update(wrapper._scale_update_param)
        wrapper.zero_grad()
        for optimizer in own:
            optimizer.zero_grad(set_to_none=True)

    # --- non-finite losses and gradients -------------------------------------------------
    def _find_nonfinite(self, optimizers: Sequence[torch.optim.Optimizer],
                        passes: Sequence[_PassRecord], where: str, when: str
                        ) -> Optional[Tuple[str, str]]:
        """``(kind, message)`` of the first non-finite loss of ``passes`` or gradient.

        One fused check and one device sync: the passes' losses and each
        gradient's L2 norm (``_foreach_norm``), stacked. A norm is non-finite
        for every non-finite tensor, and for finite ones only if the squares
        overflow (elements ~1e19 in float32): a tensor it flags is confirmed
        element-wise, so the answer is exact and the common case is cheap.
        """
        params = [p for opt in optimizers for group in opt.param_groups
                  for p in group['params'] if p.grad is not None]
        values = [r.loss for r in passes]
        if params:
            values += torch._foreach_norm([p.grad for p in params])
        if not values:
            return None
        finite = torch.isfinite(torch.stack(values))
        if bool(finite.all()):
            return None
        bad_pass = next((r for r, ok in zip(passes, finite.tolist()) if not ok), None)
        if bad_pass is not None:
            return 'loss', f'{bad_pass.where}: {_describe_losses(bad_pass)}'
        bad = [p for p, ok in zip(params, finite[len(passes):].tolist())
               if not ok and not bool(torch.isfinite(p.grad).all())]
        if not bad:  # only overflowing norms of finite gradients
            return None
        return 'gradient', f'{where}: {self._describe_grads(bad)} non-finite {when}'

    def _settle(self, problem: Optional[Tuple[str, str]]) -> Optional[str]:
        """Raise on a problem (``nonfinite='raise'``); otherwise return its message."""
        if problem is None:
            return None
        if self.nonfinite == 'raise':
            raise NonFiniteError(f'non-finite {problem[0]} at {problem[1]}. Set '
                                 f"train_cfg.nonfinite='skip' to drop such updates instead")
        return problem[1]

    def _skip_update(self, problem: Optional[str]) -> bool:
        """Whether to drop this update (``'skip'``): here or, under DDP, on any rank."""
        if self.nonfinite != 'skip':
            return False
        flag = problem is not None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = self.optim_wrapper.optimizer.param_groups[0]['params'][0].device
            found = torch.tensor([float(flag)], device=device)
            dist.all_reduce(found, op=dist.ReduceOp.MAX)
            flag = bool(found.item())
            problem = problem or 'another rank found a non-finite loss or gradient'
        if not flag:
            return False
        self.skipped_updates += 1
        print_log(f'BalanceTrainStep: update skipped ({self.skipped_updates} so far): '
                  f'non-finite value at {problem}', logger='current', level=logging.WARNING)
        MessageHub.get_current_instance().update_scalar('train/skipped_updates',
                                                        self.skipped_updates)
        return True

    def _describe_grads(self, bad: Sequence[nn.Parameter]) -> str:
        """"the gradient of modality 'audio' (encoders.audio.0.weight) is": who owns ``bad``."""
        owners = _owners(self.module)
        for hook in self.hooks:
            for opt in hook.optimizers():
                for group in opt.param_groups:
                    owners.update(dict.fromkeys(
                        map(id, group['params']), f"{type(hook).__name__}'s own parameters"))
        names = {id(p): n for n, p in self.module.named_parameters()}
        found: Dict[str, List[str]] = {}
        for p in bad:
            owner = owners.get(id(p), 'parameters outside the model')
            found.setdefault(owner, []).append(names.get(id(p), f'shape {tuple(p.shape)}'))
        parts = [f'{owner} ({ps[0]}' + (f' and {len(ps) - 1} more tensors)' if len(ps) > 1
                                        else ')') for owner, ps in found.items()]
        return f'the gradient of {", ".join(parts)} {"is" if len(parts) == 1 else "are"}'

    # --- the plan --------------------------------------------------------------------------
    def plan(self, ctx: StepContext) -> List[PassPlan]:
        """The passes of this batch: the one method that plans them, else one full pass."""
        plans, owner = None, None
        for hook in self.hooks:
            proposed = hook.plan_passes(ctx)
            if proposed is None:
                continue
            if plans is not None:
                raise ValueError(f'{type(owner).__name__} and {type(hook).__name__} both plan '
                                 f'the passes of a training step; only one method may')
            plans, owner = list(proposed), hook
            if not plans:
                raise ValueError(f'{type(hook).__name__}.plan_passes returned no pass')
        return plans or [PassPlan()]

    # --- per-loss gradients ----------------------------------------------------------------
    def _capture(self, hook, name: str, request: LossGradRequest) -> None:
        """``d term / d params`` with the main loss's accumulation factor and AMP scale."""
        wrapper = self.optim_wrapper
        scaler = getattr(wrapper, 'loss_scaler', None)
        params = list(request.params)
        if not params:
            raise ValueError(f'{type(hook).__name__} asked for the gradient of {name!r} with '
                             f'respect to no parameter')
        term = wrapper.scale_loss(request.loss)
        if scaler is not None:  # scaled like the main backward, divided out right after
            term = scaler.scale(term)
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        inv = 1.0 / float(scaler.get_scale()) if scaler is not None else None
        grads = [torch.zeros_like(p) if g is None else (g * inv if inv is not None else g)
                 for g, p in zip(grads, params)]
        key = (id(hook), name)
        if key in self._loss_grads:
            grads = [a + b for a, b in zip(self._loss_grads[key], grads)]
        self._loss_grads[key] = grads

    def _reduced_loss_grads(self) -> Dict[int, Dict[str, List[torch.Tensor]]]:
        """The update's per-loss gradients, averaged over ranks like ``param.grad``."""
        out: Dict[int, Dict[str, List[torch.Tensor]]] = {}
        distributed = dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1
        for (hook_id, name), grads in self._loss_grads.items():
            if distributed:
                flat = torch.cat([g.reshape(-1) for g in grads])
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                flat /= dist.get_world_size()
                grads = [chunk.view_as(g) for chunk, g in
                         zip(flat.split([g.numel() for g in grads]), grads)]
            out.setdefault(hook_id, {})[name] = grads
        self._loss_grads = {}
        return out


def average_grads_over_ranks(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """DDP averages the model's gradients; do the same for parameters outside it."""
    if not optimizers or not (dist.is_available() and dist.is_initialized()
                              and dist.get_world_size() > 1):
        return
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group['params']:
                if p.grad is not None:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                    p.grad /= dist.get_world_size()


def _where(ctx: StepContext, index: int, plan: PassPlan, num_passes: int) -> str:
    """'iteration 5 (epoch 1, batch 5/32)', 1-based as in the training log."""
    batch = f'{ctx.batch_idx + 1}/{ctx.num_batches}' if ctx.num_batches else f'{ctx.batch_idx + 1}'
    where = f'iteration {ctx.iter + 1} (epoch {ctx.epoch + 1}, batch {batch})'
    if num_passes > 1:
        where += f', pass {index + 1}/{num_passes}' + (f' ({plan.name!r})' if plan.name else '')
    return where


def _describe_losses(record: _PassRecord) -> str:
    """The non-finite terms of a pass and who returned them."""
    bad = [(k, v) for k, v in record.terms.items() if not bool(torch.isfinite(v).all())]
    if not bad:
        return (f'the trained loss is {float(record.loss)}, a sum of finite terms '
                f'{sorted(record.terms)} that overflows')
    return '; '.join(f'loss {k!r} ({record.sources.get(k, "the sum of the trained terms")}) '
                     f'is {float(v)}' for k, v in bad)


def _owners(module: nn.Module) -> Dict[int, str]:
    """``{id(param): owner}`` by module membership: each modality's encoder, each method's
    modules (``balance_modules``), the model's other children (fusion, head...)."""
    groups: List[Tuple[str, nn.Module]] = []
    encoders = getattr(module, 'encoders', None)
    methods = getattr(module, 'balance_modules', None)
    for name, child in module.named_children():
        if child is encoders:
            groups += [(f'modality {m!r}', enc) for m, enc in child.items()]
        elif child is methods:
            groups += [(f'the modules of method {m!r}', sub) for m, sub in child.items()]
        else:
            groups.append((f"the model's {name}", child))
    owners: Dict[int, str] = {}
    for label, child in groups:
        for p in child.parameters():
            owners.setdefault(id(p), label)
    for p in module.parameters(recurse=False):
        owners.setdefault(id(p), type(module).__name__)
    return owners


def _apply_gates(outputs, term: BalanceTerms, hook) -> None:
    """Multiply a hook's coefficients into this pass's gates; add its noise."""
    for kind, values in (('coefficients', term.coefficients), ('noise', term.noise)):
        for m in values:
            if m not in outputs.gates:
                raise ValueError(f'{type(hook).__name__} set gate {kind} for {m!r}, which this '
                                 f'pass does not train (trainable: {list(outputs.gates)})')
    for m, c in term.coefficients.items():
        outputs.gates[m].scale(c)
    for m, (std, seed) in term.noise.items():
        outputs.gates[m].add_noise(std, seed)


def _add_losses(losses: Dict[str, torch.Tensor], extra: Dict[str, torch.Tensor], hook) -> None:
    for key, value in extra.items():
        if key in losses:
            raise KeyError(f'{type(hook).__name__} returned {key!r}, which another term '
                           f'already uses')
        losses[key] = value
