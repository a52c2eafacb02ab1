"""Non-finite losses and gradients in the training step: named errors, the 'skip' switch,
AMP overflow left to the scaler; bad schedule and optimizer values refused before training."""
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from step_utils import Stepper, capture_step_grads, cpu_amp_wrapper
from step_utils import tiny_classifier as build_model

from mmbal.engine import BalanceTerms, BalanceTrainLoop, BaseBalanceHook, build_runner
from mmbal.engine.runner.balance_loop import check_optimizer_values
from mmbal.engine.step import train_step
from mmbal.engine.step.api import NonFiniteError
from mmbal.registry import HOOKS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/concat/concat_r18_avdigits.py'
NAN = float('nan')

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def batch(seed=1, b=6, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return ({'audio': scale * torch.randn(b, 3, generator=g),
             'visual': scale * torch.randn(b, 2, generator=g)},
            {'gt_label': torch.randint(0, 3, (b, ), generator=g)})


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class BadAt(BaseBalanceHook):
    """At iteration ``at`` (0-based): a NaN extra loss, a NaN gate, or a NaN gradient edit."""

    def __init__(self, what, at=1, modality='audio'):
        super().__init__()
        self.what, self.at, self.modality = what, at, modality

    def after_forward(self, ctx, outputs, data_samples):
        if ctx.iter != self.at:
            return None
        if self.what == 'loss':
            z = outputs.features[self.modality]
            return BalanceTerms(losses={'loss_bad': z.sum() * 0 + NAN})
        if self.what == 'gate':
            return BalanceTerms(coefficients={self.modality: NAN})
        return None

    def edit_grads(self, ctx):
        if self.what == 'edit' and ctx.iter == self.at:
            next(ctx.model.encoders[self.modality].parameters()).grad[0] = math.inf


# --------------------------------------------------------------------------- raise (default)
def test_diverging_lr_stops_at_the_first_nan_loss_naming_the_iteration():
    # The issue: lr = 1e6 gives a NaN loss after a few iterations, which used to train on.
    model = build_model()
    stepper = Stepper(model, lr=1e6)
    with pytest.raises(NonFiniteError) as err:
        for it in range(50):
            before = params(model)
            stepper(*batch(seed=it), it=it)
    assert it > 0  # it trained (and diverged) first
    assert str(err.value).startswith(
        f"non-finite loss at iteration {it + 1} (epoch 1, batch {it + 1}/1): loss 'loss' "
        f"(MultimodalClassifier's loss) is ")
    assert "train_cfg.nonfinite='skip'" in str(err.value)
    assert_same(params(model), before)  # the failing step updated nothing


def test_nan_extra_loss_is_named_with_the_method_that_returned_it():
    model = build_model()
    stepper = Stepper(model, [BadAt('loss', at=2)])
    for it in range(2):
        stepper(*batch(seed=it), it=it, epoch=0, batch_idx=it, num_batches=8)
    before = params(model)
    with pytest.raises(NonFiniteError, match=r"^non-finite loss at iteration 3 \(epoch 1, "
                       r"batch 3/8\): loss 'loss_bad' \(BadAt\) is nan"):
        stepper(*batch(seed=2), it=2, epoch=0, batch_idx=2, num_batches=8)
    assert_same(params(model), before)


def test_nan_gate_names_the_modality_whose_encoder_gradient_is_nan():
    model = build_model()
    stepper = Stepper(model, [BadAt('gate', at=0, modality='visual')])
    with pytest.raises(NonFiniteError, match=r"^non-finite gradient at iteration 1 .*: the "
                       r"gradient of modality 'visual' \(encoders\.visual\.\S+ and 1 more "
                       r"tensors\) is non-finite after backward\."):
        stepper(*batch())


def test_non_finite_edit_names_the_hook_and_the_modality():
    model = build_model()
    before = params(model)
    stepper = Stepper(model, [BadAt('edit', at=0, modality='audio')])
    with pytest.raises(NonFiniteError, match=r"the gradient of modality 'audio' "
                       r"\(encoders\.audio\.\S+\) is non-finite after edit_grads of BadAt\."):
        stepper(*batch())
    assert_same(params(model), before)


def test_other_owners_are_named_by_module_membership():
    model = build_model()

    class HeadNaN(BaseBalanceHook):
        def edit_grads(self, ctx):
            ctx.model.head.fc.bias.grad.fill_(NAN)

    with pytest.raises(NonFiniteError, match=r"the gradient of the model's head "
                       r"\(head\.fc\.bias\) is non-finite after edit_grads of HeadNaN"):
        Stepper(model, [HeadNaN()])(*batch())

    from mmbal.engine.runner.mmbal_runner import attach_balance_modules

    class AuxNaN(BaseBalanceHook):
        method = 'aux'

        def build_modules(self, model):
            return torch.nn.Linear(2, 2)

        def edit_grads(self, ctx):
            weight = ctx.model.balance_modules['aux'].weight
            weight.grad = torch.full_like(weight, NAN)

    model, hook = build_model(), AuxNaN()
    attach_balance_modules(model, [hook])
    with pytest.raises(NonFiniteError, match=r"the gradient of the modules of method 'aux' "
                       r"\(balance_modules\.aux\.weight\) is non-finite"):
        Stepper(model, [hook])(*batch())


def test_huge_finite_gradients_are_not_taken_for_non_finite_ones():
    # 1e30 is finite, but its square overflows float32: a norm alone would flag it.
    model = build_model()

    class Huge(BaseBalanceHook):
        def edit_grads(self, ctx):
            next(ctx.model.encoders['audio'].parameters()).grad.fill_(1e30)

    stepper = Stepper(model, [Huge()], lr=0.0)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    stepper(*batch())  # no error, and the optimizer steps
    assert torch.all(grads['encoders.audio.layers.0.weight'] == torch.tensor(1e30))


def test_gradients_are_checked_again_only_after_hooks_that_edit_them(monkeypatch):
    checks = []
    original = train_step.BalanceTrainStep._find_nonfinite
    monkeypatch.setattr(train_step.BalanceTrainStep, '_find_nonfinite',
                        lambda self, *args: checks.append(args[-1]) or original(self, *args))

    class Gates(BaseBalanceHook):  # after_forward only
        def after_forward(self, ctx, outputs, data_samples):
            return BalanceTerms(coefficients={'audio': 2.0})

    Stepper(build_model(), [Gates(), BadAt('edit', at=5)])(*batch())
    assert checks == ['after backward', 'after edit_grads of BadAt']


def test_accumulated_update_names_the_micro_batch_with_the_nan_loss():
    model = build_model()
    stepper = Stepper(model, [BadAt('loss', at=0)], accumulative_counts=2)
    stepper(*batch(seed=0), it=0)  # micro-batch 1: NaN, but no update yet
    with pytest.raises(NonFiniteError, match=r'^non-finite loss at iteration 1 '):
        stepper(*batch(seed=1), it=1)


# --------------------------------------------------------------------------- skip
def test_skip_drops_the_update_counts_and_logs_it(monkeypatch):
    warnings = []
    monkeypatch.setattr(train_step, 'print_log',
                        lambda msg, **kw: warnings.append((msg, kw.get('level'))))
    hub = MessageHub.get_instance('test_nonfinite_skip')
    monkeypatch.setattr(MessageHub, 'get_current_instance', lambda: hub)
    # momentum: a skipped update must not move the optimizer state either
    skipping, reference = build_model(), build_model()
    stepper = Stepper(skipping, [BadAt('edit', at=1, modality='visual')], momentum=0.9)
    stepper.step.nonfinite = 'skip'
    ref = Stepper(reference, momentum=0.9)
    for it in range(3):
        stepper(*batch(seed=it), it=it)
        if it != 1:
            ref(*batch(seed=it), it=it)
    assert_same(params(skipping), params(reference))  # bit for bit: as if never seen
    assert all(p.grad is None for p in skipping.parameters())
    assert stepper.step.skipped_updates == 1
    assert hub.get_scalar('train/skipped_updates').current() == 1
    (msg, level), = warnings
    assert level == 30 and msg.startswith('BalanceTrainStep: update skipped (1 so far): '
                                          'non-finite value at iteration 2 (epoch 1, batch 2/1)'
                                          ": the gradient of modality 'visual'")


def test_unknown_nonfinite_mode_is_refused():
    with pytest.raises(ValueError, match=r"nonfinite='ignore': expected one of "
                       r"\('raise', 'skip'\)"):
        train_step.BalanceTrainStep(build_model(), None, nonfinite='ignore')


# --------------------------------------------------------------------------- AMP
def test_amp_overflow_is_left_to_the_scaler():
    # Large inputs and a huge loss scale: the scaled backward overflows, as fp16 AMP does.
    model = build_model()
    wrapper = cpu_amp_wrapper(model, init_scale=2.0 ** 120)
    before = params(model)
    stepper = Stepper(model, optim_wrapper=wrapper)
    stepper(*batch(scale=1e3))  # no error: the scaler skips the step
    assert_same(params(model), before)
    assert float(wrapper.loss_scaler.get_scale()) == 2.0 ** 119  # and backs off
    stepper(*batch(seed=2), it=1)  # the next step trains
    assert not torch.equal(params(model)['head.fc.bias'], before['head.fc.bias'])


def test_amp_does_not_hide_an_edit_that_makes_gradients_non_finite():
    model = build_model()
    wrapper = cpu_amp_wrapper(model)
    with pytest.raises(NonFiniteError, match='after edit_grads of BadAt'):
        Stepper(model, [BadAt('edit', at=0)], optim_wrapper=wrapper)(*batch())


def test_amp_does_not_hide_a_nan_loss():
    model = build_model()
    wrapper = cpu_amp_wrapper(model)
    with pytest.raises(NonFiniteError, match="loss 'loss_bad' "):
        Stepper(model, [BadAt('loss', at=0)], optim_wrapper=wrapper)(*batch())


# --------------------------------------------------------------------------- before training
@pytest.mark.parametrize('epochs', [0, -1, 2.5, True])
def test_schedule_without_epochs_is_refused_when_the_loop_is_built(epochs):
    with pytest.raises(ValueError, match=rf'train_cfg\.max_epochs={epochs!r}: expected an '
                       r'integer >= 1'):
        BalanceTrainLoop(runner=None, dataloader=None, max_epochs=epochs)


def test_unknown_nonfinite_mode_is_refused_when_the_loop_is_built():
    with pytest.raises(ValueError, match=r"train_cfg\.nonfinite='warn': expected one of"):
        BalanceTrainLoop(runner=None, dataloader=None, max_epochs=1, nonfinite='warn')


def test_non_finite_optimizer_values_are_refused():
    model = build_model()
    check_optimizer_values(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    with pytest.raises(ValueError, match=r'optim_wrapper\.optimizer: lr=nan in param group 0: '
                       r'expected a finite number'):
        check_optimizer_values(torch.optim.SGD(model.parameters(), lr=NAN))
    groups = [{'params': model.encoders.parameters()},
              {'params': model.head.parameters(), 'lr': math.inf}]
    with pytest.raises(ValueError, match='lr=inf in param group 1'):
        check_optimizer_values(torch.optim.SGD(groups, lr=0.1))
    with pytest.raises(ValueError, match='momentum=nan in param group 0'):
        check_optimizer_values(torch.optim.SGD(model.parameters(), lr=0.1, momentum=NAN))


def small_cfg(work_dir, **options):
    cfg = Config.fromfile(str(CONFIG))
    cfg.merge_from_dict({
        'work_dir': str(work_dir), 'train_cfg.max_epochs': 1,
        'train_dataloader.dataset.data_root': str(ROOT / 'data/avdigits'),
        'train_dataloader.dataset.indices': 8, 'train_dataloader.batch_size': 4,
        'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
        'randomness': dict(seed=0), **options})
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return cfg


def test_runner_refuses_nan_lr_and_zero_epochs_before_training(tmp_path):
    runner = build_runner(small_cfg(tmp_path / 'lr', **{'optim_wrapper.optimizer.lr': NAN}),
                          str(CONFIG))
    with pytest.raises(ValueError, match=r'optim_wrapper\.optimizer: lr=nan'):
        runner.train()
    assert runner.iter == 0
    runner = build_runner(small_cfg(tmp_path / 'ep', **{'train_cfg.max_epochs': 0}),
                          str(CONFIG))
    with pytest.raises(ValueError, match=r'train_cfg\.max_epochs=0: expected an integer >= 1'):
        runner.train()


@HOOKS.register_module(force=True)
class NaNLossHook(BaseBalanceHook):
    """A NaN extra loss every iteration; keeps the parameters the training starts from."""

    def before_train(self, runner):
        super().before_train(runner)
        self.start = params(runner.model)

    def after_forward(self, ctx, outputs, data_samples):
        z = next(iter(outputs.features.values()))
        return BalanceTerms(losses={'loss_nan': z.sum() * 0 + NAN})


def test_train_cfg_switch_reaches_the_step_and_skipped_runs_change_nothing(tmp_path):
    cfg = small_cfg(tmp_path, **{'train_cfg.nonfinite': 'skip', 'train_cfg.max_epochs': 2})
    cfg.custom_hooks = [dict(type='NaNLossHook')]
    runner = build_runner(cfg, str(CONFIG))
    runner.train()  # 2 epochs x 2 batches, every update skipped: the run completes
    assert runner.train_loop.step.skipped_updates == 4
    (hook, ) = [h for h in runner.hooks if isinstance(h, NaNLossHook)]
    assert_same(params(runner.model), hook.start)


# --------------------------------------------------------------------------- DDP
class LocalNaNLoss(BaseBalanceHook):
    """A NaN loss on rank 0 only whose gradient is finite (a constant): only rank 0 sees it."""

    def after_forward(self, ctx, outputs, data_samples):
        import torch.distributed as dist
        z = outputs.features['audio']
        bad = NAN if dist.get_rank() == 0 and ctx.iter == 1 else 0.0
        return BalanceTerms(losses={'loss_local': z.sum() * 0 + bad})


def _skip_on_every_rank(rank, world, out_dir):
    import json
    from mmengine.model import MMDistributedDataParallel
    model = build_model()
    net = MMDistributedDataParallel(model, device_ids=None)
    stepper = Stepper(model, [LocalNaNLoss()], net=net, momentum=0.9)
    stepper.step.nonfinite = 'skip'
    messages = []
    train_step.print_log = lambda msg, **kw: messages.append(msg)
    stepper(*batch(seed=rank), it=0)
    before = params(model)
    stepper(*batch(seed=rank), it=1)
    unchanged = all(torch.equal(a, b) for a, b in zip(before.values(), params(model).values()))
    stepper(*batch(seed=rank), it=2)
    with open(Path(out_dir) / f'rank{rank}.json', 'w') as f:
        json.dump({'unchanged': unchanged, 'skipped': stepper.step.skipped_updates,
                   'messages': messages,
                   'checksum': float(sum(p.double().sum() for p in model.parameters()))}, f)


def test_ddp_skip_is_decided_on_every_rank(tmp_path):
    import json
    from dist_utils import run_gloo
    run_gloo(_skip_on_every_rank, str(tmp_path))
    ranks = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in range(2)]
    assert [r['unchanged'] for r in ranks] == [True, True]
    assert [r['skipped'] for r in ranks] == [1, 1]
    assert ranks[0]['checksum'] == ranks[1]['checksum']  # the replicas stay identical
    assert "loss 'loss_local' (LocalNaNLoss) is nan" in ranks[0]['messages'][0]
    assert 'another rank found a non-finite loss or gradient' in ranks[1]['messages'][0]
