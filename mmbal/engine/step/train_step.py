"""The training step of every mmbal run, top to bottom.

One batch::

    plan      = the passes of this batch          (one, unless a method asks for sub-steps)
    preprocess the batch once
    for each pass in plan:
      1. forward             model(inputs, mode='outputs', trainable, target_only, logits)
                             through DDP; the base loss (unless the plan switches it off)
      2. methods, per pass   hook.after_forward(ctx, outputs, samples) -> BalanceTerms:
                             gate coefficients and noise on *this pass's* gates,
                             extra losses, per-loss gradient requests
      3. loss                base loss + extra losses
      4. per-loss gradients  autograd.grad of each requested term, scaled like the loss
      5. backward            optim_wrapper.backward(scale_loss(loss))  (AMP, accumulation)
      if this backward completes an update (accumulative_counts):
      6. unscale             AMP loss scale divided out; per-loss gradients all-reduced
      7. gradient edits      hook.edit_grads(ctx)  (true gradients, before clipping)
      8. clip                optim_wrapper.clip_grad
      9. optimizer step      optimizer.step, then the methods' own optimizers (AMP:
                             scaler.step + update), zero_grad

Iteration counters, parameter schedulers and MMEngine's hooks advance once
per batch: the train loop (``BalanceTrainLoop``) calls this step between
``before_train_iter`` and ``after_train_iter``.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.distributed as dist
from mmengine.model import is_model_wrapper
from torch import nn

from .api import BalanceTerms, LossGradRequest, PassPlan, StepContext


class BalanceTrainStep:
    """Runs one training batch through the model, the balance hooks and the optimizer.

    Args:
        model: The model the runner trains (a DDP wrapper or the model itself);
            forwards go through it so that DDP synchronises gradients.
        optim_wrapper: MMEngine ``OptimWrapper`` or ``AmpOptimWrapper``.
        hooks: The run's balance hooks, in the runner's priority order.
    """

    def __init__(self, model: nn.Module, optim_wrapper, hooks: Sequence = ()) -> None:
        self.model = model
        self.module = model.module if is_model_wrapper(model) else model
        self.optim_wrapper = optim_wrapper
        self.hooks = list(hooks)
        # Per-loss gradients summed over the micro-batches of the current update.
        self._loss_grads: Dict[Tuple[int, str], List[torch.Tensor]] = {}

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
                                     logits=plan.logits)
                losses = self.module.loss(outputs, samples) if plan.base_loss else {}
                # 2. the methods' per-pass calls
                terms = [(hook, hook.after_forward(ctx, outputs, samples) or BalanceTerms())
                         for hook in self.hooks]
                for hook, term in terms:
                    _apply_gates(outputs, term, hook)
                # 3. the trained loss: base + extra terms (train metrics only logged)
                for hook, term in terms:
                    _add_losses(losses, term.losses, hook)
                losses.update(self.module.train_metrics(outputs, samples))
            loss, pass_log = self.module.parse_losses(losses)
            if not isinstance(loss, torch.Tensor):
                raise ValueError(f'pass {index} of this batch ({plan}) has no trained loss: the '
                                 f'base loss is off and no method returned a loss term')
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
        # 6. unscale: every edit sees true gradients
        if scaler is not None:
            for optimizer in [wrapper.optimizer, *own]:
                scaler.unscale_(optimizer)
        _average_over_ranks(own)
        ctx._loss_grads = self._reduced_loss_grads()
        # 7. gradient edits
        for hook in self.hooks:
            hook.edit_grads(ctx)
        ctx._loss_grads = {}
        # 8. clip
        if wrapper.clip_grad_kwargs:
            wrapper._clip_grad()
        # 9. optimizer step(s): the model's, then the methods' own
        for optimizer in [wrapper.optimizer, *own]:
            if scaler is not None:
                scaler.step(optimizer)
            else:
                optimizer.step()
        if scaler is not None:
            scaler.update(wrapper._scale_update_param)
        wrapper.zero_grad()
        for optimizer in own:
            optimizer.zero_grad(set_to_none=True)

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


def _average_over_ranks(optimizers: Sequence[torch.optim.Optimizer]) -> None:
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
