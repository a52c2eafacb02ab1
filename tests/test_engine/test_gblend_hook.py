"""G-Blending (BASELINES-1.md, "G-Blending"): weights, blended loss, estimation, schedule.

The spec's numbers are written out by hand; the estimation is checked against a training
loop written here (a deep copy, a new torch SGD, the spec's losses); the main model and its
optimizer are compared before and after; the val split is read and the test split never;
2-process DDP against one process; the state in checkpoints.
"""
import copy
import json
import logging
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from dist_utils import run_gloo
from mmengine.config import Config
from mmengine.logging import MMLogger
from step_utils import Stepper, capture_step_grads, sgd_wrapper, tiny_classifier

from mmbal.balance.dataset_pass import build_split_loader
from mmbal.engine import GBlendHook
from mmbal.engine.hooks.gblend_hook import (FUSED, Estimate, blend_terms, blend_weights,
                                            check_weights, estimate_weights, split_losses)
from mmbal.engine.runner.mmbal_runner import attach_balance_modules
from mmbal.registry import DATASETS, MODELS

ROOT = Path(__file__).resolve().parents[2]
HEADS = ['audio', 'visual', FUSED]
OPTIM = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.5, momentum=0.9))

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def model_with_heads(seed=0, mode='offline', **kw):
    model = tiny_classifier(seed)
    hook = GBlendHook(mode=mode, **kw)
    attach_balance_modules(model, [hook])
    hook.setup(model)
    return model, hook


def batches(n=12, size=4, seed=7):
    g = torch.Generator().manual_seed(seed)
    audio, visual = torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g)
    labels = torch.arange(n) % 3
    return [{'inputs': {'audio': audio[i:i + size], 'visual': visual[i:i + size]},
             'data_samples': {'gt_label': labels[i:i + size]}} for i in range(0, n, size)]


def pending(hook):
    out = {k: float(v) for k, v in hook._pending.items()}
    hook._pending = {}
    return out


# --------------------------------------------------------------------------- the spec's numbers
def test_weights_from_the_four_losses_by_hand():
    losses = {'audio': (2.0, 2.2, 1.0, 1.8), 'visual': (2.0, 2.1, 1.5, 1.7),
              FUSED: (2.0, 2.3, 0.5, 1.5)}
    weights, info = blend_weights(losses)
    # O_N = .2/.1/.3, O_N+n = .8/.2/1.0: dO = .6/.1/.7, dG = .4/.4/.8
    for head, d_o, d_g, ogr, raw in [('audio', 0.6, 0.4, 1.5, 1.111111),
                                     ('visual', 0.1, 0.4, 0.25, 40.0),
                                     (FUSED, 0.7, 0.8, 0.875, 1.632653)]:
        assert info[head]['dO'] == pytest.approx(d_o, abs=1e-12)
        assert info[head]['dG'] == pytest.approx(d_g, abs=1e-12)
        assert info[head]['OGR'] == pytest.approx(ogr, abs=1e-9)
        assert info[head]['raw'] == pytest.approx(raw, abs=1e-6)
    assert sum(v['raw'] for v in info.values()) == pytest.approx(42.743764, abs=1e-6)
    for head, want in zip(HEADS, (0.025995, 0.935809, 0.038196)):
        assert weights[head] == pytest.approx(want, abs=1e-6)
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-15)  # w_f + sum_m w_m = 1


def test_guard_gives_zero_for_a_head_that_generalised_worse():
    _, info = blend_weights({'a': (1.0, 1.0, 0.6, 1.1)})  # dG = -0.1, dO = 0.5
    assert (info['a']['dG'], info['a']['dO']) == (pytest.approx(-0.1), pytest.approx(0.5))
    assert info['a']['raw'] == 0.0  # ours; BalanceBenchmark's |g / o^2| would give 0.4
    assert abs(info['a']['dG'] / info['a']['dO'] ** 2) == pytest.approx(0.4)
    weights, _ = blend_weights({'a': (1.0, 1.0, 0.6, 1.1), 'b': (1.0, 1.0, 1.0, 1.0)})
    assert weights is None  # every w~ is 0: the hook keeps its previous weights
    with pytest.raises(ValueError, match=r"losses\['a'\]=\(1.0, nan, 1.0, 1.0\); expected four "
                                         r'finite losses'):
        blend_weights({'a': (1.0, math.nan, 1.0, 1.0)})


def test_all_zero_estimate_keeps_the_previous_weights_and_warns():
    # A handler on the logger print_log writes to: under pytest-xdist another test of the
    # worker may have made that logger, its stream bound to another stdout than capsys'.
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    _, hook = model_with_heads()
    prior = dict(hook.weights)
    assert prior == {h: pytest.approx(1 / 3) for h in HEADS}  # uniform before any estimate
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        hook.record(Estimate(None, {h: (1., 1., 1., 1.) for h in HEADS},
                             {h: {'dG': 0., 'dO': 0., 'OGR': 0., 'raw': 0.} for h in HEADS}),
                    epoch=0, epochs=2, val_size=6)
    finally:
        logger.removeHandler(handler)
    assert hook.weights == prior and hook.estimate_epoch == 0
    assert any(r.getMessage().startswith('GBlendHook: epoch 0: no head generalised better')
               for r in records)


def test_blended_loss_by_hand():
    # logits audio [1, 0], visual [0, 0], fused [2, 0], y = 0, w = (0.2, 0.3, 0.5)
    y = torch.tensor([0])
    ce = {m: F.cross_entropy(torch.tensor([v]), y) for m, v in
          (('audio', [1., 0.]), ('visual', [0., 0.]), (FUSED, [2., 0.]))}
    for head, want in zip(HEADS, (0.313262, 0.693147, 0.126928)):
        assert float(ce[head]) == pytest.approx(want, abs=1e-6)
    weights = {'audio': 0.2, 'visual': 0.3, FUSED: 0.5}
    terms = blend_terms(ce[FUSED], {m: ce[m] for m in ('audio', 'visual')}, weights)
    total = ce[FUSED] + sum(terms.values())  # the step adds them to its base loss CE(f)
    assert float(total) == pytest.approx(0.334060, abs=1e-6)


def test_step_trains_the_blended_loss_and_its_gradients():
    """Through the step: the same parameter gradients as autograd of w_f CE(f) + sum w_m CE_m."""
    model, hook = model_with_heads()
    hook.weights = {'audio': 0.2, 'visual': 0.3, FUSED: 0.5}
    data = batches()[0]
    reference = copy.deepcopy(model)
    stepper = Stepper(model, [hook], lr=0.0)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    log = stepper(data['inputs'], data['data_samples'])
    out = reference.run(data['inputs'])
    y = data['data_samples']['gt_label']
    heads = reference.balance_modules['gblend']
    ce = {m: F.cross_entropy(heads[m](out.features[m]), y) for m in ('audio', 'visual')}
    ce[FUSED] = F.cross_entropy(out.fused_logits, y)
    blended = sum(hook.weights[h] * ce[h] for h in HEADS)
    blended.backward()
    assert sum(float(v.detach()) for k, v in log.items() if 'loss' in k) == pytest.approx(
        float(blended.detach()), abs=1e-6)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-5, atol=1e-7, msg=name)
    logged = pending(hook)
    assert logged['w_visual'] == 0.3 and logged['ce_fused'] == pytest.approx(float(ce[FUSED].detach()))


def test_more_than_two_modalities_get_one_weight_each():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders={m: dict(type='MLPEncoder', in_channels=2, out_channels=3) for m in 'abc'},
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3)))
    hook = GBlendHook(mode='online', super_epoch=2)
    attach_balance_modules(model, [hook])
    hook.setup(model)
    assert hook.weights == {h: 0.25 for h in ('a', 'b', 'c', FUSED)}
    log = Stepper(model, [hook])({m: torch.randn(4, 2) for m in 'abc'},
                                 {'gt_label': torch.tensor([0, 1, 2, 0])})
    assert {k for k in log if k.startswith('loss_gblend')} == {
        'loss_gblend_a', 'loss_gblend_b', 'loss_gblend_c', 'loss_gblend_fused'}


# --------------------------------------------------------------------------- the schedule
def test_estimation_runs_before_the_iteration_timer_starts():
    from mmengine.hooks import DistSamplerSeedHook, IterTimerHook
    from mmengine.runner import get_priority
    ours = get_priority(GBlendHook(mode='offline').priority)
    assert ours < get_priority(IterTimerHook.priority)  # lower value = called earlier
    assert ours < get_priority(DistSamplerSeedHook.priority)  # the window sets its own epochs


def test_online_and_offline_schedules_and_their_cost():
    _, online = model_with_heads(mode='online', super_epoch=10)
    assert [e for e in range(30) if online.window(e, 30)] == [0, 10, 20]
    assert online.window(10, 30) == 10
    _, offline = model_with_heads(mode='offline')
    assert [(e, offline.window(e, 30)) for e in range(30) if offline.window(e, 30)] == [(0, 30)]
    # (M + 1) copies: 3 x 30 copy epochs in either mode; online s = 4 over 10: 3 x 4 x 3
    assert online.planned_copy_epochs(30) == offline.planned_copy_epochs(30) == 90
    _, short = model_with_heads(mode='online', super_epoch=4)
    assert short.planned_copy_epochs(10) == 36
    _, fixed = model_with_heads(weights={'audio': 0.2, 'visual': 0.3, FUSED: 0.5})
    assert fixed.planned_copy_epochs(30) == 0 and fixed.weights[FUSED] == 0.5


# --------------------------------------------------------------------------- the estimation
def test_split_losses_are_means_per_sample_whatever_the_batching():
    model, _ = model_with_heads()
    one = split_losses(model, batches(12, 12), HEADS)
    three = split_losses(model, batches(12, 4), HEADS)
    for head in HEADS:  # BalanceBenchmark sums per-batch means: O would mix split sizes
        assert three[head] == pytest.approx(one[head], rel=1e-6)
    data = batches(12, 12)[0]
    with torch.no_grad():
        model.eval()
        want = F.cross_entropy(model(data['inputs']), data['data_samples']['gt_label'])
    assert one[FUSED] == pytest.approx(float(want), rel=1e-6)


def _oracle_after_losses(model, head, train, evals, lr, epochs):
    """A copy trained by a new torch SGD with the spec's objective; its (L^T, L^V) after."""
    net = copy.deepcopy(model)
    heads = net.balance_modules['gblend']
    params = (list(net.encoders[head].parameters()) + list(heads[head].parameters())
              if head != FUSED else [p for n, p in net.named_parameters()
                                     if not n.startswith('balance_modules.')])
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    for _ in range(epochs):
        for data in train:
            x, y = data['inputs'], data['data_samples']['gt_label']
            logits = (net(x) if head == FUSED else heads[head](net.encoders[head](x[head])))
            opt.zero_grad()
            F.cross_entropy(logits, y).backward()
            opt.step()
    net.eval()
    out = []
    with torch.no_grad():
        for split in evals:
            x = {m: torch.cat([d['inputs'][m] for d in split]) for m in ('audio', 'visual')}
            y = torch.cat([d['data_samples']['gt_label'] for d in split])
            logits = net(x) if head == FUSED else heads[head](net.encoders[head](x[head]))
            out.append(float(F.cross_entropy(logits, y)))
    return out


def test_estimate_trains_fresh_copies_and_never_touches_the_run():
    model, _ = model_with_heads()
    train, val = batches(8, 4, seed=1), batches(6, 3, seed=2)
    main = sgd_wrapper(model, lr=0.05, momentum=0.9)  # the run's optimizer, with momentum state
    step = batches(4, 4, seed=3)[0]
    Stepper(model, [], optim_wrapper=main)(step['inputs'], step['data_samples'])
    weights_before = copy.deepcopy(model.state_dict())
    optim_before = copy.deepcopy(main.optimizer.state_dict())
    result = estimate_weights(model, train, train, val, OPTIM, lrs=[0.05], epochs=2)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, weights_before[k], rtol=0, atol=0, msg=k)
    after = main.optimizer.state_dict()
    assert after['param_groups'] == optim_before['param_groups']
    for k, v in after['state'].items():
        torch.testing.assert_close(v['momentum_buffer'], optim_before['state'][k]
                                   ['momentum_buffer'], rtol=0, atol=0)
    for head in HEADS:  # fresh SGD at the run's current lr (0.05, not the config's 0.5)
        lt1, lv1 = _oracle_after_losses(model, head, train, (train, val), 0.05, 2)
        assert result.losses[head][2] == pytest.approx(lt1, rel=1e-5), head
        assert result.losses[head][3] == pytest.approx(lv1, rel=1e-5), head
    assert sum(result.weights.values()) == pytest.approx(1.0, abs=1e-12)


def avdigits_runner(with_val=True):
    """A runner stand-in on 6 train / 3 val AV-Digits samples; the test split cannot be built."""
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/datasets/avdigits.py'))
    root = str(ROOT / 'data/avdigits')
    cfg.train_dataloader.dataset.update(data_root=root, indices=6)
    cfg.train_dataloader.update(num_workers=0, batch_size=3)
    cfg.val_dataloader.dataset.update(data_root=root, indices=3)
    cfg.test_dataloader.dataset = dict(type='NotADataset')  # any read of test fails
    if not with_val:
        cfg.pop('val_dataloader')
    cfg.optim_wrapper = OPTIM
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=129 * 63, out_channels=4),
                      visual=dict(type='MLPEncoder', in_channels=784, out_channels=3)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=10)))
    hook = GBlendHook(mode='online', super_epoch=1)
    attach_balance_modules(model, [hook])
    hook.setup(model)
    runner = SimpleNamespace(model=model, cfg=cfg, epoch=0, max_epochs=2,
                             optim_wrapper=sgd_wrapper(model, lr=0.01),
                             train_dataloader=build_split_loader(cfg, 'train', 'train'))
    return runner, hook


def test_hook_estimates_on_the_val_split_and_never_reads_test(monkeypatch):
    runner, hook = avdigits_runner()
    built = []
    build = DATASETS.build

    def spy(cfg, *args, **kwargs):
        built.append(cfg.get('split'))
        return build(cfg, *args, **kwargs)

    monkeypatch.setattr(DATASETS, 'build', spy)
    hook.before_train_epoch(runner)
    assert set(built) == {'train', 'val'}  # never 'test'
    assert hook.estimate_epoch == 0 and hook.estimates == 1
    assert hook.copy_epochs == 3  # (M + 1) copies x 1 epoch
    assert sum(hook.weights.values()) == pytest.approx(1.0, abs=1e-12)
    logged = pending(hook)
    assert logged['estimation_copy_epochs'] == 3
    assert {f'{k}_{h}' for k in ('dG', 'dO', 'OGR') for h in HEADS} <= set(logged)
    runner, hook = avdigits_runner(with_val=False)
    with pytest.raises(ValueError, match=r'estimates its weights on the val split '
                                         r'\(cfg.val_dataloader\), which the config lacks; it '
                                         r'never uses test'):
        hook.before_train_epoch(runner)


# --------------------------------------------------------------------------- checkpoints
def test_state_round_trip_then_one_step_is_exact():
    model, hook = model_with_heads(mode='online', super_epoch=2)
    hook.record(Estimate({'audio': 0.1, 'visual': 0.6, FUSED: 0.3},
                         {h: (1., 1., 1., 1.) for h in HEADS},
                         {h: {'dG': 0., 'dO': 0., 'OGR': 0., 'raw': 1.} for h in HEADS}),
                epoch=2, epochs=2, val_size=6)
    pending(hook)
    resumed_model = copy.deepcopy(model)
    resumed = GBlendHook(mode='online', super_epoch=2)
    resumed.setup(resumed_model)
    resumed.load_state_dict(copy.deepcopy(hook.state_dict()))
    assert resumed.state_dict() == hook.state_dict()
    data = batches()[1]
    logs = [Stepper(m, [h], lr=0.1)(data['inputs'], data['data_samples'], epoch=3)
            for m, h in ((model, hook), (resumed_model, resumed))]
    assert logs[0] == logs[1]
    for (name, a), b in zip(model.named_parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # epochs 2 (estimated, in the checkpoint) and 3 (inside the window) do not estimate
    for epoch in (2, 3):
        resumed.before_train_epoch(SimpleNamespace(epoch=epoch, max_epochs=10, cfg=None))
    assert resumed.estimates == 1
    fresh = GBlendHook(mode='online', super_epoch=2)
    fresh.setup(resumed_model)
    with pytest.raises(RuntimeError, match=r'epoch 3 starts without an estimate of the weights'):
        fresh.before_train_epoch(SimpleNamespace(epoch=3, max_epochs=10, cfg=None))


def test_checkpoint_state_for_other_heads_or_incomplete_is_refused():
    _, hook = model_with_heads()
    with pytest.raises(ValueError, match=r"checkpoint's weights are for \['a', 'fused'\]; this "
                                         r"model has heads \['audio', 'visual', 'fused'\]"):
        hook.load_state_dict({'weights': {'a': 0.5, FUSED: 0.5}, 'estimate_epoch': 0,
                              'estimates': 1, 'copy_epochs': 3})
    with pytest.raises(KeyError, match=r"balance_hooks.gblend lacks \['estimates', "
                                       r"'copy_epochs'\]"):
        hook.load_state_dict({'weights': {}, 'estimate_epoch': 0})


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('kwargs,message', [
    (dict(), r"GBlendHook: mode=None; expected one of \('offline', 'online'\) \(required"),
    (dict(mode='fixed'), r"GBlendHook: mode='fixed'; expected one of"),
    (dict(mode='online'), r"mode='online' needs super_epoch"),
    (dict(mode='online', super_epoch=0), r'GBlendHook: super_epoch=0; expected an integer >= 1'),
    (dict(mode='offline', super_epoch=5), r"super_epoch=5 is for mode='online'"),
    (dict(mode='online', super_epoch=2, weights={'a': 1.0}),
     r"weights are fixed for the whole run, but mode='online' re-estimates them"),
    (dict(mode='offline', weights=[0.5, 0.5]), r'weights=\[0.5, 0.5\]; expected a dict'),
    (dict(mode='offline', eps=math.nan), r'GBlendHook: eps=nan; expected a finite number > 0'),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GBlendHook(**kwargs)


@pytest.mark.parametrize('weights,message', [
    ({'audio': 0.5, FUSED: 0.5}, r"weights=\['audio', 'fused'\]; expected one weight per "
                                 r"head: \['audio', 'visual', 'fused'\]"),
    ({'audio': -0.1, 'visual': 0.6, FUSED: 0.5}, r"weights\['audio'\]=-0.1; expected a finite "
                                                 r'number >= 0'),
    ({'audio': 0.2, 'visual': 0.2, FUSED: 0.5}, r'weights sum to 0.9; expected w_fused \+ '
                                                r'sum_m w_m = 1'),
])
def test_bad_configured_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        model_with_heads(weights=weights)


def test_configured_weights_are_normalised_to_sum_one():
    w = check_weights({'audio': 0.014, 'visual': 0.630, FUSED: 0.3565}, HEADS, 'GBlendHook')
    assert sum(w.values()) == pytest.approx(1.0, abs=1e-15)
    assert w['visual'] == pytest.approx(0.630 / 1.0005, abs=1e-12)


def test_bad_models_and_passes_are_refused():
    with pytest.raises(ValueError, match=r"blends a fused head with unimodal heads; the model "
                                         r"has only \['a'\]"):
        GBlendHook(mode='offline').setup(SimpleNamespace(modalities=['a']))
    with pytest.raises(ValueError, match=r"a modality is named 'fused'"):
        GBlendHook(mode='offline').setup(SimpleNamespace(modalities=['a', FUSED]))
    model = tiny_classifier()
    hook = GBlendHook(mode='offline')
    hook.setup(model)
    data = batches()[0]
    with pytest.raises(RuntimeError, match=r"the model has no balance_modules\['gblend'\]"):
        Stepper(model, [hook])(data['inputs'], data['data_samples'])
    hook.weights = None
    with pytest.raises(RuntimeError, match=r'GBlendHook: no weights yet'):
        hook.after_forward(SimpleNamespace(model=model), None, None)


# --------------------------------------------------------------------------- DDP
def _ddp_estimate(rank, world, out_dir):
    """This rank's shard of each global batch of 4 and of the eval splits; then the estimate."""
    model, _ = model_with_heads()
    train = [{'inputs': {m: x[rank::world] for m, x in b['inputs'].items()},
              'data_samples': {'gt_label': b['data_samples']['gt_label'][rank::world]}}
             for b in batches(12, 4, seed=1)]
    evals = []
    for split in (batches(12, 12, seed=1)[0], batches(6, 6, seed=2)[0]):
        share = list(range(rank, len(split['data_samples']['gt_label']), world))
        evals.append([{'inputs': {m: x[share] for m, x in split['inputs'].items()},
                       'data_samples': {'gt_label': split['data_samples']['gt_label'][share]}}])
    result = estimate_weights(model, train, evals[0], evals[1], OPTIM, lrs=[0.1], epochs=2)
    with open(os.path.join(out_dir, f'gblend_rank{rank}_of{world}.json'), 'w') as f:
        json.dump({'weights': result.weights, 'losses': result.losses}, f)


def test_ddp_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    run_gloo(_ddp_estimate, str(tmp_path))
    _ddp_estimate(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'gblend_{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert r0 == r1  # bit-identical weights and losses on every rank
    for head in HEADS:
        assert r0['weights'][head] == pytest.approx(single['weights'][head], rel=1e-5)
        assert r0['losses'][head] == pytest.approx(single['losses'][head], rel=1e-5)
