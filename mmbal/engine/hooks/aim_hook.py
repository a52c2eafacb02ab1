"""AIM: depth-adaptive prototypes, parameter- and depth-adaptive modulation (Shen, Chen, Zhang).

Spec: docs/methods/aim.md. The math is ``mmbal.balance.aim``; this hook wires
Algorithm 1's schedule into mmbal's training step:

* every iteration, a DAP step: ``L_cls + L_r`` on the prototypes (network frozen);
* epochs ``< switch_epoch``: ``CE(f, y) + L_pdm`` (the decoupling modules learn);
* from ``switch_epoch``: the encoders learn from ``L_mod = sum_d alpha_d L_d`` only,
  the fusion and head get no gradient (``ce_after_switch=True`` keeps CE on), and
  ``L_pdm`` keeps training the modules (``pdm_after_switch``).

The DAP loss reaches only the prototypes (the network runs on detached
parameters) and ``L_pdm`` only the modules: both go through the step's backward,
and the prototypes and modules have their own optimizers (``optimizers()``),
whose gradients the step averages over ranks. ``L_mod`` reaches the encoders
through the hook's re-run of their blocks, outside the (DDP) forward: it is a
per-loss gradient request, which the step averages over ranks, added to the
encoders' ``.grad`` in ``edit_grads``. The scores are batch means all-reduced as
(sum, count), so every rank weights with the global batch's values.
"""
from functools import partial
from typing import Callable, Dict, List, Optional

import torch
from mmengine.dist import broadcast
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from mmbal.balance.aim import (MAPS, BlockParams, DecouplingModule, DepthAdaptivePrototypes,
                               block_loss, block_score, block_weights, carried_logits,
                               class_mean_inputs, cloned_buffers, depth_coefficient, depth_loss,
                               frozen_logits, frozen_share, modulation_loss, pam_terms,
                               prototype_logits)
from mmbal.balance.dataset_pass import build_split_loader
from mmbal.balance.functional import all_reduce_sum
from mmbal.engine.step import BalanceTerms, LossGradRequest, PassPlan
from mmbal.registry import HOOKS, OPTIMIZERS
from .base_balance_hook import BaseBalanceHook

#: Optimizer of the prototypes and of the modules unless configured (see docs/methods/aim.md).
DEFAULT_OPTIMIZER = dict(type='Adam', lr=1e-3)
SCORE_SOURCES = ('prototype', 'label')


@HOOKS.register_module()
class AIMHook(BaseBalanceHook):
    """AIM's schedule, losses and logs.

    Args:
        switch_epoch: E, the first epoch trained by ``L_mod`` (required: the
            method gives no value).
        pam: Parameter-adaptive modulation (the decoupling modules); False is the
            ablation (softmax over the M original blocks).
        dam: Depth-adaptive modulation; False sets every ``alpha_d = 1``.
        score_source: ``'prototype'`` (eq. 9: distances to the depth prototypes)
            or ``'label'`` (the ablation: block outputs carried through the later
            blocks and the modality's analytic share of the classifier, both on
            detached parameters (ours), so ``L_d`` trains blocks ``1..d`` only).
        pool: Pool outputs and prototypes with the encoder's ``pool`` before the
            distance (ours; the method uses the full shape).
        ce_after_switch: Keep ``CE(f, y)`` on from E (fusion and head then learn).
        pdm_after_switch: Keep training the modules with ``L_pdm`` from E.
        pdm_map, rank, latent: The decoupling modules' maps (see DecouplingModule).
        model_input: What the network sees of the prototypes ('raw' | 'decoded').
        dap_optimizer, pdm_optimizer: Optimizer cfgs (``OPTIMIZERS``, without
            ``params``) of the prototypes with their decoders, and of the
            decoupling modules.
        class_mean_pipeline: Pipeline of the class-mean dataset pass ('eval').
    """

    method = 'aim'

    def __init__(self, switch_epoch: int, pam: bool = True, dam: bool = True,
                 score_source: str = 'prototype', pool: bool = False, ce_after_switch: bool = False,
                 pdm_after_switch: bool = True, pdm_map: str = 'kron', rank: int = 8,
                 latent: int = 512, model_input: str = 'raw',
                 dap_optimizer: Optional[dict] = None, pdm_optimizer: Optional[dict] = None,
                 class_mean_pipeline: str = 'eval') -> None:
        super().__init__()
        if isinstance(switch_epoch, bool) or int(switch_epoch) != switch_epoch \
                or switch_epoch < 0:
            raise ValueError(f'AIMHook: switch_epoch={switch_epoch!r}; expected an int >= 0 '
                             f'(the epoch from which the encoders learn from L_mod)')
        if score_source not in SCORE_SOURCES:
            raise ValueError(f'AIMHook: score_source={score_source!r}; expected one of '
                             f'{SCORE_SOURCES}')
        if pdm_map not in MAPS:
            raise ValueError(f'AIMHook: pdm_map={pdm_map!r}; expected one of {MAPS}')
        for name, value in (('dap_optimizer', dap_optimizer), ('pdm_optimizer', pdm_optimizer)):
            if value is not None and (not isinstance(value, dict) or 'type' not in value
                                      or 'params' in value):
                raise ValueError(f'AIMHook: {name}={value!r}; expected an optimizer cfg dict '
                                 f"with a 'type' and no 'params'")
        self.switch_epoch = int(switch_epoch)
        self.pam, self.dam, self.pool = bool(pam), bool(dam), bool(pool)
        self.score_source = score_source
        self.ce_after_switch, self.pdm_after_switch = bool(ce_after_switch), bool(pdm_after_switch)
        self.pdm_map, self.rank, self.latent = pdm_map, int(rank), int(latent)
        self.model_input = model_input
        self.dap_optimizer = dict(dap_optimizer or DEFAULT_OPTIMIZER)
        self.pdm_optimizer = dict(pdm_optimizer or DEFAULT_OPTIMIZER)
        self.class_mean_pipeline = class_mean_pipeline
        self.dap: Optional[DepthAdaptivePrototypes] = None
        self.modules_: Optional[nn.ModuleDict] = None
        self.class_means: Dict[str, torch.Tensor] = {}
        self._optimizers: List[torch.optim.Optimizer] = []
        self._pending_state: Optional[dict] = None

    # --- setup ---------------------------------------------------------------------------
    def setup(self, model) -> None:
        stages = {m: model.encoders[m].num_stages for m in model.modalities}
        if len(set(stages.values())) != 1:
            raise ValueError(f'AIMHook: the encoders have different numbers of blocks {stages}; '
                             f'alpha_d compares the modalities at the same depth d')
        if self.score_source == 'label':
            frozen_share(model, model.modalities[0])  # raises for a fusion without s_m

    def before_train(self, runner) -> None:
        super().before_train(runner)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        loader = build_split_loader(runner.cfg, 'train', pipeline=self.class_mean_pipeline)
        self.prepare(model, class_mean_inputs(loader, model, model.num_classes))

    def prepare(self, model, class_means: Dict[str, torch.Tensor]) -> None:
        """Build the prototypes, the decoupling modules and their optimizers.

        Args:
            model: The (unwrapped) classifier.
            class_means: ``{m: X_bar^m (K, *input_shape)}`` (see ``class_mean_inputs``).
        """
        self.setup(model)
        param = next(model.parameters())
        num_classes = model.num_classes
        self.class_means = {m: class_means[m].to(param.device) for m in model.modalities}
        self.dap = DepthAdaptivePrototypes(
            {m: tuple(v.shape[1:]) for m, v in self.class_means.items()}, num_classes,
            self.model_input).to(device=param.device, dtype=param.dtype)
        self._optimizers = [OPTIMIZERS.build({**self.dap_optimizer,
                                              'params': self.dap.parameters()})]
        if self.pam:
            self.modules_ = nn.ModuleDict({m: nn.ModuleList(
                DecouplingModule(BlockParams(model.encoders[m], i).num_params, self.latent,
                                 self.pdm_map, self.rank)
                for i in range(model.encoders[m].num_stages)) for m in model.modalities})
            self.modules_.to(device=param.device, dtype=param.dtype)
            self._optimizers.append(OPTIMIZERS.build({**self.pdm_optimizer,
                                                      'params': self.modules_.parameters()}))
        # Replicas start from rank 0's prototypes and modules (no-op in one process).
        for p in self._owned_parameters():
            broadcast(p.data, src=0)
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)
        owned = sum(p.numel() for p in self.modules_.parameters()) if self.pam else 0
        print_log(f'AIMHook: switch_epoch={self.switch_epoch}, pam={self.pam} '
                  f'({self.pdm_map}, {owned:,} module parameters), dam={self.dam}, '
                  f'score_source={self.score_source}, pool={self.pool}, '
                  f'model_input={self.model_input}', logger='current')

    def optimizers(self) -> List[torch.optim.Optimizer]:
        return self._optimizers

    def _owned_parameters(self) -> List[nn.Parameter]:
        owned = list(self.dap.parameters())
        return owned + list(self.modules_.parameters()) if self.pam else owned

    # --- per batch -----------------------------------------------------------------------
    def switched(self, epoch: int) -> bool:
        return epoch >= self.switch_epoch

    def plan_passes(self, ctx) -> Optional[List[PassPlan]]:
        """From E (without ``ce_after_switch``): the model's forward runs without a graph."""
        if self.switched(ctx.epoch) and not self.ce_after_switch:
            return [PassPlan(target_only=list(ctx.model.modalities), base_loss=False)]
        return None

    def after_forward(self, ctx, outputs, data_samples) -> BalanceTerms:
        if self.dap is None:
            raise RuntimeError('AIMHook: prepare(model, class_means) has not run (the Runner '
                               'runs it in before_train)')
        model, labels = ctx.model, data_samples['gt_label']
        switched = self.switched(ctx.epoch)
        losses = {}
        dap = self.dap.losses(lambda inputs: frozen_logits(model, inputs), self.class_means)
        losses['loss_aim_dap'] = dap['loss']
        self.log('loss_cls', dap['loss_cls'])
        self.log('loss_r', dap['loss_r'])
        terms = {m: self._block_terms(model, m, outputs.inputs[m], labels, switched)
                 for m in model.modalities}
        self._reduce_scores(terms, labels.shape[0])
        if self.pam and (not switched or self.pdm_after_switch):
            losses['loss_aim_pdm'] = sum(t['loss_pdm'] for ts in terms.values() for t in ts)
        depth_losses, alphas = [], []
        for i in range(model.encoders[model.modalities[0]].num_stages):
            per = [terms[m][i] for m in model.modalities]
            s = torch.stack([t['s'] for t in per])
            s_aux = torch.stack([t['s_aux'] for t in per]) if self.pam else None
            rho, rho_aux = block_weights(s, s_aux)
            alphas.append(depth_coefficient(s, self.dam))
            depth_losses.append(depth_loss([t['loss'] for t in per], rho,
                                           [t['loss_aux'] for t in per] if self.pam else None,
                                           rho_aux))
            self._log_depth(model.modalities, i, per, rho, rho_aux, alphas[-1])
        if not switched:
            return BalanceTerms(losses=losses)
        # L_mod reaches the encoders outside the forward: a per-loss gradient, averaged over
        # ranks by the step and added to .grad in edit_grads (DDP's reducer never sees it).
        loss_mod = modulation_loss(alphas, depth_losses)
        self.log('loss_mod', loss_mod)
        request = LossGradRequest(loss_mod, self._block_parameters(model))
        return BalanceTerms(losses=losses, loss_grads={'mod': request})

    def edit_grads(self, ctx) -> None:
        """Add the update's ``d L_mod / d encoders`` (after E) to the encoders' ``.grad``."""
        grads = ctx.loss_grads(self).get('mod')
        if grads is None:
            return
        for p, g in zip(self._block_parameters(ctx.model), grads):
            p.grad = g.clone() if p.grad is None else p.grad + g

    @staticmethod
    def _block_parameters(model) -> List[nn.Parameter]:
        """The trainable parameters of every block of every encoder (what L_mod reaches)."""
        return [p for m in model.modalities for i in range(model.encoders[m].num_stages)
                for _, p in model.encoders[m].stage_parameters(i) if p.requires_grad]

    def _reduce_scores(self, terms: Dict[str, List[Dict[str, torch.Tensor]]],
                       batch_size: int) -> None:
        """Replace every batch-mean score by its mean over the global batch (all ranks)."""
        keys = ('s', 's_aux') if self.pam else ('s', )
        slots = [(t, k) for ts in terms.values() for t in ts for k in keys]
        local = torch.stack([t[k] for t, k in slots]) * batch_size
        total = all_reduce_sum(torch.cat([local, local.new_tensor([batch_size])]))
        for (t, k), value in zip(slots, total[:-1] / total[-1]):
            t[k] = value

    def _block_terms(self, model, m: str, x: torch.Tensor, labels: torch.Tensor,
                     switched: bool) -> List[Dict[str, torch.Tensor]]:
        """Scores and losses of every block of modality ``m`` (eqs. 9-10, PAM)."""
        encoder = model.encoders[m]
        scorers = self._scorers(model, m)
        out: List[Dict[str, torch.Tensor]] = []
        # The blocks rerun on cloned buffers (the model's forward already updated BN once);
        # with a graph only when L_mod trains them.
        with torch.set_grad_enabled(switched):
            h = encoder.prepare(x)
            for i in range(encoder.num_stages):
                h_out = encoder.run_stage(i, h, cloned_buffers(encoder, i))
                logits = scorers[i](h_out)
                terms = dict(s=block_score(logits, labels), loss=block_loss(logits, labels))
                if self.pam:
                    with torch.enable_grad():  # L_pdm trains the modules in every phase
                        pam = pam_terms(self.modules_[m][i], BlockParams(encoder, i), h, labels,
                                        scorers[i])
                    terms.update(s_aux=block_score(pam['aux_logits'], labels),
                                 loss_aux=block_loss(pam['aux_logits'], labels),
                                 loss_pdm=pam['loss_pdm'], mask=pam['mask_mean'])
                out.append(terms)
                h = h_out
        return out

    def _scorers(self, model, m: str) -> List[Callable[[torch.Tensor], torch.Tensor]]:
        """Per block of ``m``: its output -> ``(B, K)`` logits, with no live parameter."""
        encoder = model.encoders[m]
        if self.score_source == 'label':
            share = frozen_share(model, m)
            return [partial(carried_logits, encoder, i, classify=share, frozen=True)
                    for i in range(encoder.num_stages)]
        pool = encoder.pool if self.pool else None
        return [partial(prototype_logits, prototypes=p, pool=pool)
                for p in self.dap.depth_prototypes(m, encoder)]

    def _log_depth(self, modalities, i: int, per, rho, rho_aux, alpha) -> None:
        d = i + 1
        self.log(f'alpha/{d}', alpha)
        for j, (m, t) in enumerate(zip(modalities, per)):
            self.log(f's/{m}/{d}', t['s'])
            self.log(f'rho/{m}/{d}', rho[j])
            if rho_aux is not None:
                self.log(f's_aux/{m}/{d}', t['s_aux'])
                self.log(f'rho_aux/{m}/{d}', rho_aux[j])
                self.log(f'mask/{m}/{d}', t['mask'])

    # --- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        if self.dap is None:
            return {}
        state = dict(dap=self.dap.state_dict(),
                     optimizers=[opt.state_dict() for opt in self._optimizers])
        if self.modules_ is not None:
            state['modules'] = self.modules_.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore now if built, else when ``prepare`` runs (resume comes before training)."""
        if self.dap is None:
            self._pending_state = state
            return
        self._pending_state = None
        self.dap.load_state_dict(state['dap'])
        if self.modules_ is not None:
            if 'modules' not in state:
                raise KeyError('AIMHook: the checkpoint has no decoupling modules (saved with '
                               'pam=False) but this run has pam=True')
            self.modules_.load_state_dict(state['modules'])
        if len(state['optimizers']) != len(self._optimizers):
            raise ValueError(f"AIMHook: the checkpoint has {len(state['optimizers'])} "
                             f'optimizers, this run {len(self._optimizers)} (pam differs)')
        for opt, s in zip(self._optimizers, state['optimizers']):
            opt.load_state_dict(s)
