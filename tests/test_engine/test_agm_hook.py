"""AGM (docs/methods/agm.md): Shapley logits, scores, ratio sign, cumulative-mean order,
clamp, window, gradient routing, conditional clip, M = 3, resume and 2-process DDP.

The spec's hand-computed numbers are written out; gradients through the step are checked
against the spec's closed form (dL/dT = (k_a + k_v)/2 g, dL/dPA = (k_v - k_a)/2 g,
dL/dPV = (k_a - k_v)/2 g), built here from full-batch muted passes of the model in eval mode.
"""
import json
import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from dist_utils import run_gloo
from step_utils import Stepper, capture_step_grads, ctx_for, step_grads, tiny_classifier

from mmbal.engine import AGMHook, PassPlan, StepContext
from mmbal.engine.hooks.agm_hook import (agm_coefficients, ce_sums, coalitions,
                                         cumulative_mean, modulated_output, shapley_logits)
from mmbal.registry import MODELS

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py

A, V = frozenset({'audio'}), frozenset({'visual'})
AV = A | V
GLOBAL_BATCH = 8


def t(*values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def close(got, want, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(got, dtype=torch.float64),
                               torch.as_tensor(want, dtype=torch.float64), rtol=0, atol=atol)


def batch(seed=0, b=GLOBAL_BATCH):
    g = torch.Generator().manual_seed(seed)
    return ({'audio': torch.randn(b, 3, generator=g), 'visual': torch.randn(b, 2, generator=g)},
            {'gt_label': torch.randint(0, 3, (b, ), generator=g)})


def ready(hook, model):
    hook.setup(model)
    return hook


def logged(hook):
    return {k: float(v) for k, v in hook._pending.items()}


# --------------------------------------------------------------------------- Shapley logits
def test_shapley_two_modalities_keeps_the_empty_coalition_term():
    # spec test 1: T = [2, 0], f(0, v) = PA = [0.5, 0.5], f(a, 0) = PV = [1.5, -0.5]
    T, PA, PV = t(2., 0.), t(.5, .5), t(1.5, -.5)
    phi = shapley_logits({AV: T, A: PV, V: PA}, ['audio', 'visual'])
    close(phi['audio'], [1.5, -0.5])  # (T - PA + PV) / 2
    close(phi['visual'], [0.5, 0.5])  # (T - PV + PA) / 2
    close(phi['audio'] + phi['visual'], T)
    # Dropping f(a, 0) - f(0) (BalanceBenchmark's include_empty=False) would give (T - PA)/2.
    assert not torch.allclose(phi['audio'], (T - PA) / 2)


def test_shapley_three_modalities_by_hand():
    # v(a)=1, v(b)=2, v(c)=4, v(ab)=3, v(ac)=5, v(bc)=6, v(abc)=9; weights 1/3, 1/6, 1/6, 1/3.
    f = frozenset
    values = {f('a'): t(1.), f('b'): t(2.), f('c'): t(4.), f('ab'): t(3.), f('ac'): t(5.),
              f('bc'): t(6.), f('abc'): t(9.)}
    phi = shapley_logits(values, ['a', 'b', 'c'])
    close(phi['a'], [1 / 3 + 1 / 6 * 1 + 1 / 6 * 1 + 1 / 3 * 3])  # 5/3
    close(phi['b'], [2 / 3 + 1 / 6 * 2 + 1 / 6 * 2 + 1 / 3 * 4])  # 8/3
    close(phi['c'], [4 / 3 + 1 / 6 * 4 + 1 / 6 * 4 + 1 / 3 * 6])  # 14/3
    assert len(coalitions(['a', 'b', 'c'])) == 6  # 2^M - 2 muted passes
    with pytest.raises(KeyError, match=r"coalitions \[\['a', 'b'\]\]"):
        shapley_logits({k: v for k, v in values.items() if k != f('ab')}, ['a', 'b', 'c'])


# --------------------------------------------------------------------------- coefficients
def test_coefficients_by_hand_and_the_ratio_sign():
    # spec test 2: y = 0, B = 1, alpha = 1.5, t = (0.3, 0.5); phi_a = [2, 0], phi_v = [0, 0]
    sums = ce_sums({'audio': t(2., 0.).view(1, 2), 'visual': t(0., 0.).view(1, 2)},
                   torch.tensor([0]))
    close(sums, [0.126928, 0.693147, 1.0])  # -log softmax([2, 0])[0], log 2, B
    out = agm_coefficients(sums[:2] / sums[2], t(0.3, 0.5), alpha=1.5, clamp=10.0)
    close(out['ratio'], [1.761594, 0.567668])  # exp(s_v - s_a): the lower loss gets r > 1
    close(out['target_ratio'], [1.221403, 0.818731])
    close(out['k'], [0.444730, 1.457313])  # the modality ahead of its history is slowed
    # BalanceBenchmark's inverted sign would hand audio visual's coefficient and back.
    inverted = agm_coefficients(-(sums[:2] / sums[2]), -t(0.3, 0.5), alpha=1.5, clamp=10.0)
    close(inverted['k'], [1.457313, 0.444730])


def test_three_modality_coefficients_use_m_over_m_minus_1():
    s, tt = t(0.2, 0.5, 0.8), t(0.3, 0.1, 0.2)
    out = agm_coefficients(s, tt, alpha=1.5, clamp=10.0)
    close(out['ratio'], [math.exp(1.5 * 0.3), 1.0, math.exp(-1.5 * 0.3)])
    close(out['target_ratio'], [math.exp(1.5 * -0.1), math.exp(1.5 * 0.1), 1.0])
    close(out['k'], [0.345969, 1.274752, 1.722123])


def test_clamp_bounds_k_above_only():
    # spec test 5: r* - r = 12 (s equal, t_v - t_a = log 13)
    s, tt = t(0.4, 0.4), t(0.0, math.log(13.0))
    close(agm_coefficients(s, tt, 1.5, clamp=10.0)['k'][0], math.exp(15.0), atol=1e-3)
    close(agm_coefficients(s, tt, 1.5, clamp=None)['k'][0], math.exp(18.0), atol=1e-1)
    low = agm_coefficients(t(0.4, 0.4), t(math.log(13.0), 0.0), 1.5, clamp=10.0)['k'][0]
    close(low, math.exp(1.5 * (1 / 13 - 1)))  # no lower bound: r* - r < 0 is not clamped


def test_cumulative_mean_is_the_mean_of_the_iterations_so_far():
    values = [t(0.8, 0.4), t(0.6, 0.5), t(0.1, 1.0)]
    mean = t(0.0, 0.0)
    for i, s in enumerate(values, start=1):
        mean = cumulative_mean(mean, s, i)
        close(mean, torch.stack(values[:i]).mean(0), atol=1e-12)
    with pytest.raises(ValueError, match='1-based iteration, got 0'):
        cumulative_mean(mean, values[0], 0)


def stub_pass(hook, phi_a, phi_v, labels, epoch=0):
    """after_forward on fixed Shapley logits: v(a) = phi_a, v(v) = phi_v, T = their sum."""
    T = torch.tensor([phi_a], requires_grad=True) + torch.tensor([phi_v])
    hook.coalition_logits = lambda model, outputs: {
        AV: T, A: torch.tensor([phi_a]), V: torch.tensor([phi_v])}
    model = SimpleNamespace(modalities=['audio', 'visual'],
                            loss_module=torch.nn.CrossEntropyLoss())
    outputs = SimpleNamespace(fused_logits=T, gates={'audio': None, 'visual': None})
    return hook.after_forward(ctx_for(model, epoch=epoch), outputs,
                              {'gt_label': torch.tensor(labels)})


def logits_with_loss(s):
    """[0, x] with -log softmax([0, x])[0] = log(1 + e^x) = s."""
    return [0.0, math.log(math.exp(s) - 1.0)]


def test_targets_are_updated_after_the_coefficient():
    # spec test 3: alpha 1.5, t starts at 0; s = (0.8, 0.4) then (0.6, 0.5)
    hook = AGMHook(alpha=1.5)
    hook.modalities = ['audio', 'visual']
    hook.targets, hook.applied = {'audio': 0.0, 'visual': 0.0}, {'audio': 1.0, 'visual': 1.0}
    stub_pass(hook, logits_with_loss(0.8), logits_with_loss(0.4), [0])
    log = logged(hook)
    close([log['score_audio'], log['score_visual']], [0.8, 0.4])
    close([log['target_audio'], log['target_visual']], [0.0, 0.0])  # r* = 1 at the first
    close([log['k_audio'], log['k_visual']], [1.639711, 0.478195])
    close([hook.targets['audio'], hook.targets['visual']], [0.8, 0.4])
    stub_pass(hook, logits_with_loss(0.6), logits_with_loss(0.5), [0])
    log = logged(hook)
    close([log['target_audio'], log['target_visual']], [0.8, 0.4])  # before this update
    close([log['k_audio'], log['k_visual']], [0.703438, 1.786004])
    close([hook.targets['audio'], hook.targets['visual']], [0.7, 0.45])
    assert hook.count == 2


# --------------------------------------------------------------------------- routing
def test_routing_of_the_gradient_and_the_zero_surrogate():
    # spec test 4: k = (0.5, 1.5), T = [2, 0], y = 0: g = [-0.119203, 0.119203]
    T, PA, PV = (x.clone().requires_grad_() for x in (t(2., 0.), t(.5, .5), t(1.5, -.5)))
    y = torch.tensor([0])
    k = {'audio': t(0.5)[0], 'visual': t(1.5)[0]}
    phi = shapley_logits({AV: T.view(1, 2), A: PV.view(1, 2), V: PA.view(1, 2)},
                         ['audio', 'visual'])
    out = modulated_output(phi, k)
    surrogate = F.cross_entropy(out, y) - F.cross_entropy(T.view(1, 2), y)
    assert abs(float(surrogate.detach())) < 1e-12  # sum_m phi_m = T in forward
    total = F.cross_entropy(T.view(1, 2), y) + surrogate
    gT, gPA, gPV = torch.autograd.grad(total, (T, PA, PV), retain_graph=True)
    close(gT, [-0.119203, 0.119203])
    close(gPA, [-0.059601, 0.059601])
    close(gPV, [0.059601, -0.059601])
    direct = torch.autograd.grad(F.cross_entropy(modulated_output(phi, k), y), (T, PA, PV))
    for a, b in zip(direct, (gT, gPA, gPV)):
        close(a, b, atol=1e-12)


def test_feature_mask_gives_the_analytic_logits_of_a_linear_concat_head():
    # spec test 6: W = [[1, 2], [0, 1]], b = [0.2, -0.2], z_a = 1, z_v = 0.5
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=1, out_channels=1),
                      visual=dict(type='MLPEncoder', in_channels=1, out_channels=1)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=2)))
    with torch.no_grad():
        for enc, w in ((model.encoders['audio'], 1.0), (model.encoders['visual'], 0.5)):
            enc.layers[0].weight.fill_(w)
            enc.layers[0].bias.zero_()
        model.head.fc.weight.copy_(torch.tensor([[1., 2.], [0., 1.]]))
        model.head.fc.bias.copy_(torch.tensor([0.2, -0.2]))
    hook = ready(AGMHook(mask='feature'), model)
    outputs = model.run({'audio': torch.ones(1, 1), 'visual': torch.ones(1, 1)})
    close(outputs.fused_logits[0], [2.2, 0.3])
    phi = shapley_logits(hook.coalition_logits(model, outputs), hook.modalities)
    close(phi['audio'][0], [1.1, -0.1])  # W_a z_a + b/2
    close(phi['visual'][0], [1.1, 0.4])  # W_v z_v + b/2


def test_input_mask_runs_eval_mode_passes_on_zero_inputs_and_leaves_bn_alone():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='ResNet18', in_channels=1, base_channels=2),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=3,
                                  hidden_channels=(4, ), dropout=0.5)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3)))
    model.train()
    x = {'audio': torch.randn(4, 1, 8, 8), 'visual': torch.randn(4, 2)}
    outputs = model.run(x)
    bn = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    hook = ready(AGMHook(), model)
    values = hook.coalition_logits(model, outputs)
    assert all(m.training for m in model.modules())  # train mode given back
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in bn.items())
    model.eval()
    with torch.no_grad():
        pv = model.classify(model.encode({'audio': x['audio'], 'visual': torch.zeros(4, 2)}))
        pa = model.classify(model.encode({'audio': torch.zeros(4, 1, 8, 8),
                                          'visual': x['visual']}))
    close(values[A], pv, atol=1e-5)  # f(a, 0), full batch of zeros, eval mode
    close(values[V], pa, atol=1e-5)  # f(0, v)
    assert values[A].requires_grad and values[V].requires_grad


def oracle_grads(model, k, x, y):
    """The spec's closed form: dL/dT = (k_a+k_v)/2 g, dL/dPA = (k_v-k_a)/2 g,
    dL/dPV = (k_a-k_v)/2 g, with muted passes of full zero batches in eval mode."""
    model.zero_grad()
    T = model.classify(model.encode(x))
    g = ((torch.softmax(T, 1) - F.one_hot(y, T.shape[1])) / len(y)).detach()
    model.eval()
    zeros = {m: torch.zeros_like(v) for m, v in x.items()}
    PV = model.classify(model.encode({'audio': x['audio'], 'visual': zeros['visual']}))
    PA = model.classify(model.encode({'audio': zeros['audio'], 'visual': x['visual']}))
    model.train()
    ka, kv = k
    ((ka + kv) / 2 * (T * g).sum() + (kv - ka) / 2 * (PA * g).sum()
     + (ka - kv) / 2 * (PV * g).sum()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_step_gradient_equals_the_closed_form():
    x, samples = batch()
    model = tiny_classifier()
    hook = ready(AGMHook(alpha=1.5, clip_threshold=None), model)
    grads, log = step_grads(model, [hook], x, samples)
    k = (float(hook._pending['k_audio']), float(hook._pending['k_visual']))
    assert abs(k[0] - 1) > 0.05 and abs(k[1] - 1) > 0.05  # a real modulation
    assert abs(float(log['loss_agm'].detach())) < 1e-6
    want = oracle_grads(tiny_classifier(), k, x, samples['gt_label'])
    plain, _ = step_grads(tiny_classifier(), [], x, samples)
    for n, g in grads.items():
        close(g, want[n], atol=1e-6)
    assert not torch.allclose(grads['encoders.audio.layers.0.weight'],
                              plain['encoders.audio.layers.0.weight'])


@pytest.mark.parametrize('reference_compat', [False, True])
def test_window_outside_is_plain_training_or_the_stale_k(reference_compat):
    x0, s0 = batch(0)
    x1, s1 = batch(1)
    model = tiny_classifier()
    hook = ready(AGMHook(modulation_starts=0, modulation_ends=0, clip_threshold=None,
                         reference_compat=reference_compat), model)
    step_grads(model, [hook], x0, s0, epoch=0)  # lr 0: the model stays as built
    k0 = (hook.applied['audio'], hook.applied['visual'])
    grads, _ = step_grads(model, [hook], x1, s1, epoch=1)
    log = logged(hook)
    assert hook.count == 2  # scores and t go on outside the window
    assert log['k_audio'] != k0[0]  # k of this batch, computed and logged...
    if reference_compat:  # ...but the code keeps applying the last k of the window
        assert (log['applied_k_audio'], log['applied_k_visual']) == k0
        want = oracle_grads(tiny_classifier(), k0, x1, s1['gt_label'])
        for n, g in grads.items():
            close(g, want[n], atol=1e-6)
    else:  # ours: k = 1, bit for bit the run without AGM
        assert (log['applied_k_audio'], log['applied_k_visual']) == (1.0, 1.0)
        plain, _ = step_grads(tiny_classifier(), [], x1, s1, epoch=1)
        for n, g in grads.items():
            assert torch.equal(g, plain[n]), n


# --------------------------------------------------------------------------- conditional clip
def set_grads(model, head_value):
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    model.head.fc.weight.grad[0, 0] = head_value


@pytest.mark.parametrize('head_value, clipped', [(1.5, True), (-1.5, True), (1.0, False)])
def test_conditional_clip(head_value, clipped):
    model = tiny_classifier()
    hook = ready(AGMHook(), model)  # the code's CREMA-D rule: threshold 1, max norm 1
    set_grads(model, head_value)
    before = torch.cat([p.grad.flatten() for p in model.parameters()])
    hook.edit_grads(ctx_for(model))
    after = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert logged(hook)['clipped'] == float(clipped)
    if clipped:  # every gradient of the model, to global norm 1, same direction
        close(after.norm(), 1.0)
        close(after, before / before.norm(), atol=1e-6)
    else:  # an element of exactly 1 is not beyond the bound
        assert torch.equal(after, before)
    off = ready(AGMHook(clip_threshold=None), model)
    set_grads(model, 5.0)
    off.edit_grads(ctx_for(model))
    assert float(model.head.fc.weight.grad[0, 0]) == 5.0


# --------------------------------------------------------------------------- M = 3
def test_three_modalities_through_the_step():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders={m: dict(type='MLPEncoder', in_channels=2, out_channels=3) for m in 'abc'},
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3)))
    hook = ready(AGMHook(), model)
    g = torch.Generator().manual_seed(2)
    x = {m: torch.randn(6, 2, generator=g) for m in 'abc'}
    y = torch.randint(0, 3, (6, ), generator=g)
    outputs = model.run(x)
    values = hook.coalition_logits(model, outputs)
    assert len(values) == 7
    phi = shapley_logits(values, hook.modalities)
    close(sum(phi.values()), outputs.fused_logits, atol=1e-5)
    grads, _ = step_grads(model, [hook], x, {'gt_label': y})
    s = t(*(float(hook._pending[f'score_{m}']) for m in 'abc'))
    want = agm_coefficients(s, t(0., 0., 0.), 1.5, 10.0)['k']
    close([float(hook._pending[f'k_{m}']) for m in 'abc'], want)
    assert all(torch.isfinite(g).all() for g in grads.values())


# --------------------------------------------------------------------------- bad input
def test_bad_arguments_are_refused_naming_the_field():
    for kwargs, message in (
            (dict(alpha=float('nan')), 'AGMHook: alpha=nan; expected a finite number >= 0'),
            (dict(clamp=0.0), 'AGMHook: clamp=0.0; expected a finite number > 0'),
            (dict(modulation_starts=3, modulation_ends=2),
             'AGMHook: modulation_ends=2; expected an integer >= 3'),
            (dict(mask='zeros'), "AGMHook: mask='zeros'; expected one of ('input', 'feature')"),
            (dict(clip_threshold=-1.0), 'AGMHook: clip_threshold=-1.0; expected a finite '
                                        'number > 0'),
            (dict(clip_max_norm=0.0), 'AGMHook: clip_max_norm=0.0; expected a finite number > 0')):
        with pytest.raises(ValueError) as err:
            AGMHook(**kwargs)
        assert message in str(err.value)


def test_one_modality_and_a_classifier_without_weights_are_refused():
    uni = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3)))
    with pytest.raises(ValueError, match=r"AGM needs two or more modalities; the model has "
                                         r"\['audio'\]"):
        AGMHook().setup(uni)
    stub = SimpleNamespace(modalities=['audio', 'visual'], head=torch.nn.Identity(), fusion=None)
    with pytest.raises(ValueError, match=r"model's head \(Identity\) has no parameter with >= 2 "
                                         r"dims; set clip_threshold=None"):
        AGMHook().setup(stub)


def test_a_pass_without_every_modality_is_refused():
    model = tiny_classifier()
    hook = ready(AGMHook(), model)
    x, samples = batch()
    outputs = model.run(x, trainable=['audio'])
    ctx = StepContext(model=model, plan=PassPlan(trainable=['audio'], base_loss=False))
    with pytest.raises(ValueError, match=r"AGMHook needs passes that train every modality with "
                                         r"the base loss on; this pass trains \['audio'\]"):
        hook.after_forward(ctx, outputs, samples)


def test_checkpoint_state_of_other_modalities_is_refused():
    hook = ready(AGMHook(), tiny_classifier())
    state = {'targets': {'audio': 0.1, 'depth': 0.2}, 'count': 3,
             'applied': {'audio': 1.0, 'depth': 1.0}}
    with pytest.raises(ValueError, match=r"AGM state is for modalities \['audio', 'depth'\], "
                                         r"the model has \['audio', 'visual'\]"):
        hook.load_state_dict(state)
    with pytest.raises(KeyError, match=r"lacks \['applied'\]"):
        hook.load_state_dict({'targets': {}, 'count': 0})


# --------------------------------------------------------------------------- resume
def test_resume_from_the_state_dict_is_exact(tmp_path):
    kw = dict(lr=0.1, momentum=0.9)
    batches = [batch(i) for i in range(3)]

    def run(model, hook, its, stepper=None):
        stepper = stepper or Stepper(model, [hook], **kw)
        for it in its:
            stepper(*batches[it], epoch=min(it, 1), it=it)
        return stepper

    hook_cfg = dict(reference_compat=True, modulation_ends=0)
    full = tiny_classifier()
    hook = ready(AGMHook(**hook_cfg), full)
    run(full, hook, range(3))

    part = tiny_classifier()
    hook_a = ready(AGMHook(**hook_cfg), part)
    stepper_a = run(part, hook_a, [0])
    checkpoint = {'state_dict': part.state_dict(),
                  'optimizer': stepper_a.optim_wrapper.state_dict()}
    hook_a.before_save_checkpoint(None, checkpoint)
    torch.save(checkpoint, tmp_path / 'ckpt.pth')
    loaded = torch.load(tmp_path / 'ckpt.pth', weights_only=True)
    assert loaded['balance_hooks']['agm']['count'] == 1
    resumed = tiny_classifier(seed=1)
    resumed.load_state_dict(loaded['state_dict'])
    hook_b = ready(AGMHook(**hook_cfg), resumed)
    hook_b.after_load_checkpoint(None, loaded)
    stepper_b = Stepper(resumed, [hook_b], **kw)
    stepper_b.optim_wrapper.load_state_dict(loaded['optimizer'])
    run(resumed, hook_b, [1, 2], stepper_b)  # epoch 1: the stale k comes from the checkpoint
    assert hook_b.state_dict() == hook.state_dict()
    for (n, p), (_, q) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.equal(p, q), n


# --------------------------------------------------------------------------- DDP
def _ddp_step(rank, world, out_dir):
    """Two AGM steps (SGD, momentum) on this rank's shard of the same global batches."""
    from mmengine.model import MMDistributedDataParallel
    model = tiny_classifier()
    hook = ready(AGMHook(), model)
    net = MMDistributedDataParallel(model, device_ids=None) if world > 1 else model
    stepper = Stepper(model, [hook], net=net, lr=0.1, momentum=0.9)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    result = {}
    for it in range(2):
        x, samples = batch(it)
        stepper({m: v[shard] for m, v in x.items()},
                {k: v[shard] for k, v in samples.items()}, it=it)
        result[f'log{it}'] = logged(hook)
        result[f'grads{it}'] = {n: g.flatten().tolist() for n, g in grads.items()}
    result['state'] = hook.state_dict()
    with open(os.path.join(out_dir, f'agm_rank{rank}_of{world}.json'), 'w') as f:
        json.dump(result, f)


def test_ddp_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    run_gloo(_ddp_step, str(tmp_path))
    _ddp_step(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'agm_{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert r0 == r1  # s (hence k and t) all-reduced: replicas agree exactly
    for it in range(2):
        for key, want in single[f'log{it}'].items():
            assert abs(r0[f'log{it}'][key] - want) < 1e-6, (it, key)
        for name, want in single[f'grads{it}'].items():
            torch.testing.assert_close(torch.tensor(r0[f'grads{it}'][name]), torch.tensor(want),
                                       rtol=1e-5, atol=1e-6, msg=f'step {it} {name}')
    for m, want in single['state']['targets'].items():
        assert abs(r0['state']['targets'][m] - want) < 1e-6
    assert single['log1']['target_audio'] != 0.0  # step 2 uses the cumulative mean
