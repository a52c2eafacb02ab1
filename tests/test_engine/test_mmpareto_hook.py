"""MMPareto (BASELINES-1.md, "MMPareto (baseline; Wei & Hu, ICML 2024)").

The spec's unit tests 1-5 with their numbers written out; the edit through the training
step against an independent re-computation (autograd.grad of each term and the spec's
formulas in float64, written here); gradient accumulation, CPU AMP and 2-process DDP
against one batch / one process; the heads in the state_dict and the optimizer.
"""
import copy
import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dist_utils import run_gloo
from mmengine.config import Config
from step_utils import Stepper, capture_step_grads, cpu_amp_wrapper, sgd_wrapper, tiny_classifier

from mmbal.engine import BalanceTerms, BaseBalanceHook, MMParetoHook, PassPlan, build_runner
from mmbal.engine.hooks.mmpareto_hook import (cosine, gram, min_norm_weight, mmpareto_grads,
                                              pareto_weights, rescale_grad)
from mmbal.engine.runner.mmbal_runner import attach_balance_modules
from mmbal.registry import MODELS
from mmbal.utils import safe_checkpoint_loading

ROOT = Path(__file__).resolve().parents[2]
GLOBAL_BATCH = 8


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def t(*values):
    return torch.tensor(values)


def close(got, want, atol=1e-6):
    torch.testing.assert_close(got, torch.as_tensor(want, dtype=got.dtype), rtol=0, atol=atol)


# --------------------------------------------------------------------------- the spec's tests
def test_1_no_conflict_gives_equal_weights_and_gamma_h():
    # g^f = [1, 0], g^u = [1, 1]: c = 1/sqrt(2), a = (1/2, 1/2), h = [2, 1] = G, r = 1.
    ff, fu, uu = gram([t(1., 0.)], [t(1., 1.)])
    assert (ff, fu, uu) == (1.0, 1.0, 2.0)
    c, a_f, a_u = pareto_weights(ff, fu, uu)
    assert abs(c - 0.707107) < 1e-6 and (a_f, a_u) == (0.5, 0.5)
    new, info = mmpareto_grads([t(2., 1.)], [t(1., 0.)], [t(1., 1.)])
    close(new[0], [3.0, 1.5])
    assert info['rescaled'] == 0.0  # r = 1 is not > 1


def test_2_conflict_takes_the_min_norm_point_and_rescales():
    # g^f = [1, 0], g^u = [-1, 2]: c = -1/sqrt(5), a = (0.75, 0.25).
    g_f, g_u = t(1., 0.), t(-1., 2.)
    c, a_f, a_u = pareto_weights(*gram([g_f], [g_u]))
    assert abs(c - (-0.447214)) < 1e-6
    assert abs(a_f - 0.75) < 1e-12 and abs(a_u - 0.25) < 1e-12
    point = a_f * g_f + a_u * g_u  # the min-norm point [0.5, 0.5]...
    close(point, [0.5, 0.5])
    close(point @ g_f, 0.5)  # ...with equal inner products against both gradients
    close(point @ g_u, 0.5)
    # h = [1, 1], G = g^f + g^u = [0, 2], r = 2 / sqrt(2) = 1.414214 > 1: gamma r h
    new, r = rescale_grad(t(0., 2.), g_f, g_u, a_f, a_u)
    assert abs(r - 1.414214) < 1e-6
    close(new, [2.121320, 2.121320])
    new, info = mmpareto_grads([t(0., 2.)], [g_f], [g_u])
    close(new[0], [2.121320, 2.121320])
    assert info['rescaled'] == 1.0


def test_3_two_tensors_share_the_direction_and_rescale_apart():
    # p1: g^f = [1, 0], g^u = [-1, 2]; p2: g^f = [3], g^u = [-1]; G = g^f + g^u.
    g_f, g_u = [t(1., 0.), t(3.)], [t(-1., 2.), t(-1.)]
    total = [t(0., 2.), t(2.)]
    ff, fu, uu = gram(g_f, g_u)
    assert (ff, fu, uu) == (10.0, -4.0, 6.0)  # over the concatenation
    c, a_f, a_u = pareto_weights(ff, fu, uu)
    assert abs(c - (-0.516398)) < 1e-6
    assert abs(a_f - 0.416667) < 1e-6 and abs(a_u - 0.583333) < 1e-6
    new, info = mmpareto_grads(total, g_f, g_u)
    # p1: h = [-0.333333, 2.333333], r = 0.848528 < 1 -> gamma h
    _, r1 = rescale_grad(total[0], g_f[0], g_u[0], a_f, a_u)
    assert abs(r1 - 0.848528) < 1e-6
    close(new[0], [-0.5, 3.5])
    # p2: h = 1.333333, r = 1.5 > 1 -> gamma r h
    _, r2 = rescale_grad(total[1], g_f[1], g_u[1], a_f, a_u)
    assert abs(r2 - 1.5) < 1e-6
    close(new[1], [3.0])
    assert info['rescaled'] == 0.5


@pytest.mark.parametrize('reference_compat', [False, True])
def test_5_balance_benchmark_collapse(reference_compat):
    """BB reads both "gradients" after backpropagating every loss without zeroing, so both
    are the same accumulated sum A = G: c = 1, a = (1/2, 1/2), h = 2A, r = 0.5, and the
    result is 2 gamma G = [0, 6] on test 2's G = [0, 2] (BB reduces to 3 G on the
    encoders). The same math holds with and without reference_compat (|h| > eps)."""
    G = t(0., 2.)
    new, info = mmpareto_grads([G], [G.clone()], [G.clone()],
                               reference_compat=reference_compat)
    close(new[0], [0.0, 6.0])
    assert info['cos'] == 1.0 and info['rescaled'] == 0.0


def test_cos_zero_is_a_conflict_and_the_solver_guards():
    # c = 0 (orthogonal) takes the min-norm branch (the code's `if cos > 0`):
    # g^f = [2, 0], g^u = [0, 1]: a_f = 1 / 5; h = [0.8, 1.6]; G = [2, 1], r = 1.25.
    c, a_f, a_u = pareto_weights(*gram([t(2., 0.)], [t(0., 1.)]))
    assert c == 0.0 and abs(a_f - 0.2) < 1e-12 and abs(a_u - 0.8) < 1e-12
    new, _ = mmpareto_grads([t(2., 1.)], [t(2., 0.)], [t(0., 1.)])
    close(new[0], [1.5, 3.0])
    # Guards: <g^f,g^u> >= |g^f|^2 -> 0.999 (a zero g^f, or both zero); else
    # <g^f,g^u> >= |g^u|^2 -> 0.001 (a zero g^u).
    assert min_norm_weight(0.0, 0.0, 4.0) == 0.999
    assert min_norm_weight(0.0, 0.0, 0.0) == 0.999
    assert min_norm_weight(4.0, 0.0, 0.0) == 0.001
    assert cosine(0.0, 0.0, 4.0) == 0.0  # eps in the denominator


def test_eps_guard_of_h_is_ours_and_reference_compat_divides_by_zero():
    # h = 0 (both gradients zero) while G is not: ours -> gamma h = 0.
    zero = t(0., 0.)
    new, r = rescale_grad(t(1., 1.), zero, zero, 0.999, 0.001)
    assert torch.equal(new, zero) and r == 1.0
    # The code divides by |h| = 0: r = inf > 1, inf * 0 = nan.
    new, r = rescale_grad(t(1., 1.), zero, zero, 0.999, 0.001, reference_compat=True)
    assert math.isinf(r) and torch.isnan(new).all()
    # Where |h| > eps, reference_compat changes nothing.
    a, _ = mmpareto_grads([t(0., 2.)], [t(1., 0.)], [t(-1., 2.)], reference_compat=True)
    b, _ = mmpareto_grads([t(0., 2.)], [t(1., 0.)], [t(-1., 2.)])
    assert torch.equal(a[0], b[0])


def test_gamma_scales_the_result_and_bad_arguments_are_refused():
    new, _ = mmpareto_grads([t(2., 1.)], [t(1., 0.)], [t(1., 1.)], gamma=1.0)
    close(new[0], [2.0, 1.0])
    with pytest.raises(ValueError, match='gamma=0; expected a finite number > 0'):
        MMParetoHook(gamma=0)
    with pytest.raises(ValueError, match='eps=0.0; expected a finite number > 0'):
        MMParetoHook(eps=0.0)
    with pytest.raises(ValueError, match='must align'):
        mmpareto_grads([t(1.)], [t(1.)], [])


# --------------------------------------------------------------------------- through the step
def build_model(seed=0, three=False, late=False):
    torch.manual_seed(seed)
    encoders = dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4,
                               hidden_channels=(5, )),
                    visual=dict(type='MLPEncoder', in_channels=2, out_channels=3))
    if three:
        encoders['text'] = dict(type='MLPEncoder', in_channels=4, out_channels=2)
    if late:
        return MODELS.build(dict(type='MultimodalClassifier', encoders=encoders,
                                 fusion=dict(type='LateFusion', num_classes=3), head=None))
    return MODELS.build(dict(type='MultimodalClassifier', encoders=encoders,
                             fusion=dict(type='ConcatFusion'),
                             head=dict(type='LinearClsHead', num_classes=3)))


def batch(b=6, seed=1, three=False):
    g = torch.Generator().manual_seed(seed)
    inputs = {'audio': torch.randn(b, 3, generator=g), 'visual': torch.randn(b, 2, generator=g)}
    if three:
        inputs['text'] = torch.randn(b, 4, generator=g)
    return inputs, {'gt_label': torch.randint(0, 3, (b, ), generator=g)}


def with_heads(model, hook, signs=None):
    """Attach the aux heads; ``signs[m] = +1 / -1`` sets h_m to +/- the fused head's block of
    m (zero bias), so that g^u agrees with / opposes g^f: both branches in one step."""
    attach_balance_modules(model, [hook])
    heads = model.balance_modules['mmpareto']
    if signs:
        weight = model.head.fc.weight.detach()
        start = 0
        for m in model.modalities:
            width = model.encoders[m].out_channels
            if m in signs:
                with torch.no_grad():
                    heads[m].weight.copy_(signs[m] * weight[:, start:start + width])
                    heads[m].bias.zero_()
            start += width
    return model


def reference_grads(model, inputs, samples, gamma=1.5):
    """Every parameter's gradient after MMPareto's edit, computed independently:
    autograd.grad of each term and the spec's formulas in float64."""
    model = copy.deepcopy(model)
    params = dict(model.named_parameters())
    heads = model.balance_modules['mmpareto']
    labels = samples['gt_label']
    out = model.run(inputs)
    fused = F.cross_entropy(out.fused_logits, labels)
    uni = {m: F.cross_entropy(heads[m](out.features[m]), labels) for m in model.modalities}
    total = torch.autograd.grad(fused + sum(uni.values()), list(params.values()),
                                retain_graph=True)
    result = dict(zip(params, total))
    info = {}
    for m in model.modalities:
        names = [f'encoders.{m}.{n}' for n, _ in model.encoders[m].named_parameters()]
        theta = [params[n] for n in names]
        g_f = torch.autograd.grad(fused, theta, retain_graph=True)
        g_u = torch.autograd.grad(uni[m], theta, retain_graph=True)
        vf = torch.cat([g.reshape(-1) for g in g_f]).double()
        vu = torch.cat([g.reshape(-1) for g in g_u]).double()
        c = float(vf @ vu / max(float(vf.norm() * vu.norm()), 1e-8))
        a_f = 0.5 if c > 0 else float((vu @ vu - vf @ vu) / ((vf - vu) @ (vf - vu)))
        info[m] = (c, a_f)
        for n, gf, gu in zip(names, g_f, g_u):
            h = 2 * (a_f * gf.double() + (1 - a_f) * gu.double())
            r = float(result[n].double().norm() / h.norm())
            result[n] = (gamma * r * h if r > 1 else gamma * h).float()
    return result, info


def assert_grads(got, want, rtol=1e-5, atol=1e-7, names=None):
    for n in names or want:
        torch.testing.assert_close(got[n], want[n], rtol=rtol, atol=atol, msg=n)


def logged(hook):
    return {k: float(v) for k, v in hook._pending.items()}


def test_edit_through_the_step_equals_the_independent_computation():
    hook = MMParetoHook()
    model = with_heads(build_model(), hook, signs={'audio': 1.0, 'visual': -1.0})
    inputs, samples = batch()
    want, info = reference_grads(model, inputs, samples)
    assert info['audio'][0] > 0 and info['visual'][0] < 0  # both branches are exercised
    stepper = Stepper(model, [hook], lr=0.0)
    got = capture_step_grads(stepper.optim_wrapper, model)
    log = stepper(inputs, samples)
    assert_grads(got, want)
    assert {'loss', 'loss_mmpareto_audio', 'loss_mmpareto_visual'} <= set(log)
    values = logged(hook)
    for m, (c, a_f) in info.items():
        assert abs(values[f'cos_{m}'] - c) < 1e-6
        assert abs(values[f'a_f_{m}'] - a_f) < 1e-6
        assert abs(values[f'a_u_{m}'] - (1 - a_f)) < 1e-6
    assert values['a_f_audio'] == 0.5


def test_4_heads_and_fused_head_keep_G_exactly():
    hook = MMParetoHook()
    model = with_heads(build_model(), hook, signs={'visual': -1.0})
    inputs, samples = batch()
    plain = copy.deepcopy(model)  # G of the same loss, no edit
    heads = plain.balance_modules['mmpareto']
    out = plain.run(inputs)
    labels = samples['gt_label']
    loss = F.cross_entropy(out.fused_logits, labels) + sum(
        F.cross_entropy(heads[m](out.features[m]), labels) for m in plain.modalities)
    loss.backward()
    stepper = Stepper(model, [hook], lr=0.0)
    got = capture_step_grads(stepper.optim_wrapper, model)
    stepper(inputs, samples)
    untouched = [n for n in got if not n.startswith('encoders.')]
    assert {'head.fc.weight', 'balance_modules.mmpareto.audio.weight'} <= set(untouched)
    for n, p in plain.named_parameters():
        if n in untouched:
            assert torch.equal(got[n], p.grad), n
        else:
            assert not torch.allclose(got[n], p.grad), n  # every encoder tensor is edited


def test_three_modalities_each_encoder_has_its_own_pair():
    hook = MMParetoHook()
    model = with_heads(build_model(three=True), hook,
                       signs={'audio': 1.0, 'visual': -1.0, 'text': -1.0})
    inputs, samples = batch(three=True)
    want, info = reference_grads(model, inputs, samples)
    stepper = Stepper(model, [hook], lr=0.0)
    got = capture_step_grads(stepper.optim_wrapper, model)
    stepper(inputs, samples)
    assert_grads(got, want)
    assert len({round(c, 6) for c, _ in info.values()}) == 3
    assert set(logged(hook)) >= {'cos_text', 'a_f_text', 'a_u_text', 'rescaled_text'}


def test_late_fusion_reads_the_class_count_from_the_fusion():
    hook = MMParetoHook()
    model = build_model(late=True)
    attach_balance_modules(model, [hook])
    assert model.balance_modules['mmpareto']['audio'].out_features == 3
    inputs, samples = batch()
    want, _ = reference_grads(model, inputs, samples)
    stepper = Stepper(model, [hook], lr=0.0)
    got = capture_step_grads(stepper.optim_wrapper, model)
    stepper(inputs, samples)
    assert_grads(got, want)


def test_gates_of_another_method_scale_both_gradients_alike():
    """z_m is the gated feature: a coefficient on m scales g^f, g^u and G of encoder m by
    the same factor, so c and a are unchanged and the edited gradient scales with it."""

    class Scale(BaseBalanceHook):
        def after_forward(self, ctx, outputs, data_samples):
            return BalanceTerms(coefficients={'visual': 0.5})

    inputs, samples = batch()
    results = []
    for extra in ([], [Scale()]):
        hook = MMParetoHook()
        model = with_heads(build_model(), hook, signs={'visual': -1.0})
        stepper = Stepper(model, [hook, *extra], lr=0.0)
        got = capture_step_grads(stepper.optim_wrapper, model)
        stepper(inputs, samples)
        results.append((dict(got), logged(hook)))
    (plain, log_plain), (scaled, log_scaled) = results
    assert abs(log_plain['cos_visual'] - log_scaled['cos_visual']) < 1e-6
    assert abs(log_plain['a_f_visual'] - log_scaled['a_f_visual']) < 1e-6
    for n in plain:
        if n.startswith('encoders.visual'):
            torch.testing.assert_close(scaled[n], 0.5 * plain[n], rtol=1e-5, atol=1e-7)


def test_errors_name_what_is_missing():
    hook = MMParetoHook()
    model = build_model()
    inputs, samples = batch()
    with pytest.raises(RuntimeError, match=r"no balance_modules\['mmpareto'\].*"
                                           r"attach_balance_modules"):
        Stepper(model, [hook])(inputs, samples)

    class AudioOnly(BaseBalanceHook):
        def plan_passes(self, ctx):
            return [PassPlan(trainable=['audio'], base_loss=False, name='a')]

    model = with_heads(build_model(), hook)
    with pytest.raises(ValueError, match=r"trains \['audio'\] of \['audio', 'visual'\]"):
        Stepper(model, [AudioOnly(), hook])(inputs, samples)


# --------------------------------------------------------------------------- accumulation, AMP
def test_accumulation_of_two_micro_batches_equals_the_batch_of_2B():
    hook_big, hook_acc = MMParetoHook(), MMParetoHook()
    init = with_heads(build_model(), MMParetoHook(), signs={'visual': -1.0})
    inputs, samples = batch(b=8)
    big = copy.deepcopy(init)
    stepper = Stepper(big, [hook_big], lr=0.0)
    want = capture_step_grads(stepper.optim_wrapper, big)
    stepper(inputs, samples)
    acc = copy.deepcopy(init)  # MLPs: no BatchNorm, so two halves equal the whole batch
    wrapper = sgd_wrapper(acc, lr=0.0, accumulative_counts=2)
    wrapper.initialize_count_status(acc, 0, 2)
    stepper = Stepper(acc, [hook_acc], optim_wrapper=wrapper)
    got = capture_step_grads(wrapper, acc)
    for half in (slice(0, 4), slice(4, 8)):
        stepper({m: x[half] for m, x in inputs.items()},
                {k: v[half] for k, v in samples.items()})
    assert_grads(got, want)
    ref, _ = reference_grads(init, inputs, samples)
    assert_grads(got, ref)
    big_log, acc_log = logged(hook_big), logged(hook_acc)
    assert big_log.keys() == acc_log.keys()
    for k in big_log:
        assert abs(big_log[k] - acc_log[k]) < 1e-6, k
    assert big_log['cos_visual'] < 0


def test_amp_edits_true_gradients():
    hook = MMParetoHook()
    model = with_heads(build_model(), hook, signs={'visual': -1.0})
    inputs, samples = batch()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        want, info = reference_grads(model, inputs, samples)
    wrapper = cpu_amp_wrapper(model, lr=0.0)
    got = capture_step_grads(wrapper, model)
    Stepper(model, [hook], optim_wrapper=wrapper)(inputs, samples)
    # bf16 forward: the same edit within bf16 precision; a scale left in G or in g^f / g^u
    # would be off by 1024 (r_p, h_p) and fail by far.
    assert_grads(got, want, rtol=2e-2, atol=1e-3)
    assert float(wrapper.loss_scaler.get_scale()) == 1024.0  # no overflow: scale kept
    assert abs(logged(hook)['a_f_visual'] - info['visual'][1]) < 1e-2


# --------------------------------------------------------------------------- DDP
def _ddp_step(rank, world, out_dir):
    """One MMPareto step (then a second with momentum) on this rank's shard."""
    from mmengine.model import MMDistributedDataParallel
    inputs, samples = batch(b=GLOBAL_BATCH, seed=4)
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    inputs = {m: x[shard] for m, x in inputs.items()}
    samples = {k: v[shard] for k, v in samples.items()}
    hook = MMParetoHook()
    model = with_heads(tiny_classifier(), hook, signs={'visual': -1.0})  # before DDP, optimizer
    net = MMDistributedDataParallel(model, device_ids=None) if world > 1 else model
    stepper = Stepper(model, [hook], net=net, lr=0.1, momentum=0.9)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    stepper(inputs, samples, it=0)
    result = {'grads': {n: g.flatten().tolist() for n, g in grads.items()},
              'log': logged(hook)}
    stepper(inputs, samples, it=1)
    result['params'] = {n: p.detach().flatten().tolist() for n, p in model.named_parameters()}
    with open(os.path.join(out_dir, f'mmp_rank{rank}_of{world}.json'), 'w') as f:
        json.dump(result, f)


def test_ddp_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    run_gloo(_ddp_step, str(tmp_path))
    _ddp_step(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'mmp_{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert r0 == r1  # replicas agree: the per-loss gradients were averaged before c and a
    for k, v in single['log'].items():
        assert abs(r0['log'][k] - v) < 1e-5, k
    assert single['log']['cos_visual'] < 0
    for part in ('grads', 'params'):
        for name, want in single[part].items():
            torch.testing.assert_close(torch.tensor(r0[part][name]), torch.tensor(want),
                                       rtol=1e-5, atol=1e-6, msg=f'{part} {name}')


# --------------------------------------------------------------------------- through a Runner
def test_heads_are_in_the_state_dict_the_optimizer_and_the_checkpoint(tmp_path):
    config = ROOT / 'configs/mmpareto/mmpareto_r18_avdigits.py'
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict({
        'work_dir': str(tmp_path), 'train_cfg.max_epochs': 1,
        'train_dataloader.dataset.data_root': str(ROOT / 'data/avdigits'),
        'train_dataloader.dataset.indices': 4, 'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
        'model.encoders.audio.base_channels': 4, 'model.encoders.visual.base_channels': 4,
        'randomness': dict(seed=0),
        'default_hooks.checkpoint': dict(type='CheckpointHook', interval=1),
        'default_hooks.logger.interval': 1})
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    runner = build_runner(cfg, str(config))
    heads = runner.model.balance_modules['mmpareto']
    init = {k: v.clone() for k, v in heads.state_dict().items()}
    runner.train()
    in_optimizer = {id(p) for g in runner.optim_wrapper.optimizer.param_groups
                    for p in g['params']}
    assert all(id(p) in in_optimizer for p in heads.parameters())
    assert heads['audio'].in_features == 4 * 8  # ResNet18 width 4: 8 x base_channels
    assert heads['visual'].out_features == 10
    keys = set(runner.model.state_dict())
    assert {'balance_modules.mmpareto.audio.weight', 'balance_modules.mmpareto.audio.bias',
            'balance_modules.mmpareto.visual.weight',
            'balance_modules.mmpareto.visual.bias'} <= keys
    assert any(not torch.equal(init[k], v) for k, v in heads.state_dict().items())  # trained
    with safe_checkpoint_loading():
        saved = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu')
    assert torch.equal(saved['state_dict']['balance_modules.mmpareto.visual.weight'],
                       heads['visual'].weight.detach())
    hub = runner.message_hub
    for name in ('cos_audio', 'a_f_visual', 'a_u_audio'):
        assert f'train/balance/mmpareto/{name}' in hub.log_scalars
