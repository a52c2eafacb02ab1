"""Extension points that need the Runner: method-owned modules (trained by the model's
optimizer or by their own), re-initialisation from an init snapshot, exact resume of both."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import nn

from mmbal.balance import blend_from_snapshot_, param_snapshot, reset_optimizer_state
from mmbal.engine import BalanceTerms, BaseBalanceHook, PassPlan, build_runner
from mmbal.registry import HOOKS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/concat/concat_r18_avdigits.py'


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


@HOOKS.register_module(force=True)
class AuxHeadsHook(BaseBalanceHook):
    """Owns one linear head per modality, trained by the model's optimizer."""

    method = 'aux_heads'

    def build_modules(self, model):
        return nn.ModuleDict({m: nn.Linear(model.encoders[m].out_channels, 10)
                              for m in model.modalities})

    def after_forward(self, ctx, outputs, data_samples):
        heads = ctx.model.balance_modules[self.method]
        labels = data_samples['gt_label']
        return BalanceTerms(losses={'loss_aux': sum(
            F.cross_entropy(heads[m](z), labels) for m, z in outputs.features.items())})


@HOOKS.register_module(force=True)
class OwnOptimizerHook(BaseBalanceHook):
    """A prototype outside the model with its own SGD; its state goes in the checkpoint."""

    method = 'own_opt'

    def __init__(self, lr: float = 0.5) -> None:
        super().__init__()
        self.prototype = nn.Parameter(torch.zeros(128))  # the demo visual feature size
        self.opt = torch.optim.SGD([self.prototype], lr=lr, momentum=0.9)

    def optimizers(self):
        return [self.opt]

    def after_forward(self, ctx, outputs, data_samples):
        z = outputs.features['visual'].detach()
        return BalanceTerms(losses={'loss_proto': (z.mean(0) - self.prototype).pow(2).sum()})

    def state_dict(self):
        return {'prototype': self.prototype.detach().clone(), 'opt': self.opt.state_dict()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.prototype.copy_(state['prototype'])
        self.opt.load_state_dict(state['opt'])


@HOOKS.register_module(force=True)
class ReinitHook(BaseBalanceHook):
    """D&R-style: blend the audio encoder halfway back to its init before epoch ``at``."""

    method = 'reinit'

    def __init__(self, at: int = 2, alpha: float = 0.5) -> None:
        super().__init__()
        self.at, self.alpha = at, alpha
        self.snapshot = None
        self.done = []

    def before_train(self, runner):
        super().before_train(runner)
        if self.snapshot is None:  # after init_weights; a resumed run has it already
            self.snapshot = param_snapshot(runner.model.encoders['audio'])

    def before_train_epoch(self, runner):
        if runner.epoch == self.at:
            blend_from_snapshot_(runner.model.encoders['audio'], self.snapshot, self.alpha,
                                 runner.optim_wrapper.optimizer)
            self.done.append(runner.epoch)

    def state_dict(self):
        return {'snapshot': self.snapshot}

    def load_state_dict(self, state):
        self.snapshot = state['snapshot']


def small_cfg(work_dir, epochs, hooks, resume_from=None):
    cfg = Config.fromfile(str(CONFIG))
    cfg.merge_from_dict({
        'work_dir': str(work_dir), 'train_cfg.max_epochs': epochs,
        'train_dataloader.dataset.data_root': str(ROOT / 'data/avdigits'),
        'train_dataloader.dataset.indices': 8, 'train_dataloader.batch_size': 4,
        'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
        'randomness': dict(seed=0, deterministic=True),
        'default_hooks.checkpoint': dict(type='CheckpointHook', interval=1),
        'default_hooks.logger.interval': 1})
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.custom_hooks = hooks
    if resume_from is not None:
        cfg.resume, cfg.load_from = True, str(resume_from)
    return cfg


def train(work_dir, epochs, hooks, resume_from=None):
    runner = build_runner(small_cfg(work_dir, epochs, hooks, resume_from), str(CONFIG))
    runner.train()
    return runner


def state(runner):
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_owned_modules_are_trained_saved_and_resumed_exactly(tmp_path):
    hooks = [dict(type='AuxHeadsHook'), dict(type='OwnOptimizerHook')]
    straight = train(tmp_path / 'a', 2, hooks)
    heads = straight.model.balance_modules['aux_heads']
    main_params = {id(p) for g in straight.optim_wrapper.optimizer.param_groups
                   for p in g['params']}
    assert all(id(p) in main_params for p in heads.parameters())  # built before the optimizer
    own = next(h for h in straight.hooks if isinstance(h, OwnOptimizerHook))
    assert id(own.prototype) not in main_params
    assert own.prototype.abs().sum() > 0  # its own optimizer stepped it
    keys = set(straight.model.state_dict())
    assert {'balance_modules.aux_heads.audio.weight', 'balance_modules.aux_heads.visual.bias'} <= keys
    # stop after epoch 1, resume to 2: the same weights, heads and prototype
    train(tmp_path / 'b', 1, hooks)
    resumed = train(tmp_path / 'b', 2, hooks, resume_from=tmp_path / 'b' / 'epoch_1.pth')
    assert_same(state(straight), state(resumed))
    own_resumed = next(h for h in resumed.hooks if isinstance(h, OwnOptimizerHook))
    assert torch.equal(own.prototype, own_resumed.prototype)


def test_reinit_snapshot_survives_resume_and_the_run_is_exact(tmp_path):
    hooks = [dict(type='ReinitHook', at=2, alpha=0.5)]
    straight = train(tmp_path / 'a', 3, hooks)
    assert next(h for h in straight.hooks if isinstance(h, ReinitHook)).done == [2]
    first = train(tmp_path / 'b', 2, hooks)
    snap = next(h for h in first.hooks if isinstance(h, ReinitHook)).snapshot
    resumed = train(tmp_path / 'b', 3, hooks, resume_from=tmp_path / 'b' / 'epoch_2.pth')
    hook = next(h for h in resumed.hooks if isinstance(h, ReinitHook))
    assert hook.done == [2]
    for k in snap:  # the init weights, not the resumed ones
        assert torch.equal(hook.snapshot[k], snap[k]), k
    assert_same(state(straight), state(resumed))


def test_blend_by_hand_touches_parameters_only_and_resets_their_momentum():
    enc = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    other = nn.Linear(2, 1)
    snap = param_snapshot(enc)
    with torch.no_grad():
        enc[0].weight.copy_(torch.tensor([[1., 2.], [3., 4.]]))
        snap['0.weight'] = torch.tensor([[3., 0.], [1., 0.]])
    opt = torch.optim.SGD([*enc.parameters(), *other.parameters()], lr=0.1, momentum=0.9)
    loss = enc(torch.randn(4, 2)).sum() + other(torch.randn(4, 2)).sum()
    loss.backward()
    opt.step()
    enc[1].running_mean.fill_(7.0)
    w = enc[0].weight.detach().clone()
    blend_from_snapshot_(enc, snap, 0.25, opt)
    # theta <- 0.75 theta + 0.25 theta_init, by hand
    expected = 0.75 * w + 0.25 * torch.tensor([[3., 0.], [1., 0.]])
    torch.testing.assert_close(enc[0].weight.detach(), expected)
    assert torch.all(enc[1].running_mean == 7.0)  # buffers untouched
    assert all(p not in opt.state for p in enc.parameters())
    assert all(p in opt.state for p in other.parameters())  # other momentum kept
    with pytest.raises(ValueError, match='alpha=1.5'):
        blend_from_snapshot_(enc, snap, 1.5)
    with pytest.raises(KeyError, match='lacks parameters'):
        blend_from_snapshot_(other, snap, 0.5)
    reset_optimizer_state(opt, other.parameters())
    assert not opt.state


@HOOKS.register_module(force=True)
class TwoSubStepsHook(BaseBalanceHook):
    """One optimizer step per modality; counts the updates it sees."""

    method = 'two_sub_steps'

    def __init__(self) -> None:
        super().__init__()
        self.updates = []

    def plan_passes(self, ctx):
        return [PassPlan(trainable=[m], base_loss=False, logits='analytic', name=m)
                for m in ctx.model.modalities]

    def after_forward(self, ctx, outputs, data_samples):
        (m, ) = outputs.modalities
        return BalanceTerms(losses={'loss_m': F.cross_entropy(
            outputs.logits('analytic')[m], data_samples['gt_label'])})

    def edit_grads(self, ctx):
        self.updates.append((ctx.iter, ctx.plan.name))


def test_sub_steps_advance_counters_schedulers_and_logs_once_per_batch(tmp_path):
    runners = {}
    for name, hooks in (('plain', []), ('sub', [dict(type='TwoSubStepsHook')])):
        cfg = small_cfg(tmp_path / name, 2, hooks)
        cfg.param_scheduler = [dict(type='StepLR', by_epoch=False, step_size=1, gamma=0.5)]
        runners[name] = build_runner(cfg, str(CONFIG))
        runners[name].train()
    runner = runners['sub']
    hook = next(h for h in runner.hooks if isinstance(h, TwoSubStepsHook))
    # 8 samples, batch 4: 2 batches per epoch, 2 epochs -> 4 iterations, 8 updates
    assert runner.iter == 4
    assert hook.updates == [(i, m) for i in range(4) for m in ('audio', 'visual')]
    # the by-iteration scheduler stepped once per batch, not once per sub-step
    lr = runner.optim_wrapper.get_lr()['lr'][0]
    assert lr == runners['plain'].optim_wrapper.get_lr()['lr'][0] < 0.01
    hub = runner.message_hub
    assert len(hub.get_scalar('train/audio/loss_m').data[0]) == 4
    assert len(hub.get_scalar('train/visual/loss_m').data[0]) == 4
