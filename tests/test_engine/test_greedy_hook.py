"""GreedyHook (docs/methods/greedy.md) against values computed by hand."""
import copy
import json
import math
import os
import types

import pytest
import torch
import torch.nn.functional as F
from dist_utils import run_gloo
from step_utils import Stepper, ctx_for, tiny_classifier, tiny_mmtm_classifier

from mmbal.engine import GreedyHook
from mmbal.engine.hooks.greedy_hook import cared_modality, conditional_speeds, learning_speed
from mmbal.registry import MODELS

pytestmark = pytest.mark.usefixtures('one_thread')


def param(weight_sq, grad_sq):
    """A 1-element parameter with ||theta||^2 = weight_sq and ||grad||^2 = grad_sq."""
    p = torch.nn.Parameter(torch.tensor([math.sqrt(weight_sq)]))
    p.grad = torch.tensor([math.sqrt(grad_sq)])
    return p


def batch(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return ({'audio': torch.randn(n, 3, generator=g), 'visual': torch.randn(n, 2, generator=g)},
            {'gt_label': torch.randint(0, 3, (n, ), generator=g)})


# --------------------------------------------------------------------------- pure math
def test_speeds_with_the_shared_group_in_both_bypasses_by_hand():
    main = [[param(16, 4)], [param(16, 1)]]
    shared = param(1, 1)
    bypass = [[param(1, 1), shared], [param(1, 0.25), shared]]
    mu_main = torch.stack([learning_speed(g) for g in main])
    mu_byp = torch.stack([learning_speed(g) for g in bypass])
    torch.testing.assert_close(mu_byp, torch.tensor([1.0, 0.625], dtype=torch.float64))
    torch.testing.assert_close(mu_main, torch.tensor([0.25, 0.0625], dtype=torch.float64))
    bdr = conditional_speeds(mu_byp, mu_main)
    torch.testing.assert_close(bdr, torch.tensor([0.602060, 1.0], dtype=torch.float64))
    assert float(bdr[0] - bdr[1]) == pytest.approx(-0.397940, abs=1e-6)
    assert cared_modality(bdr, 0.01) == 1
    # the second step: main_0 now has ||g||^2 = 16; the sums are cumulative
    mu_main2 = torch.tensor([learning_speed([param(16, 16)]), 0.0625], dtype=torch.float64)
    main_sum, byp_sum = mu_main + mu_main2, mu_byp + mu_byp
    torch.testing.assert_close(main_sum, torch.tensor([1.25, 0.125], dtype=torch.float64))
    torch.testing.assert_close(byp_sum, torch.tensor([2.0, 1.25], dtype=torch.float64))
    bdr = conditional_speeds(byp_sum, main_sum)
    assert float(bdr[0]) == pytest.approx(0.204120, abs=1e-6)  # log10 1.6
    assert float(bdr[0] - bdr[1]) == pytest.approx(-0.795880, abs=1e-6)


def test_a_parameter_without_a_gradient_counts_zero():
    p = torch.nn.Parameter(torch.tensor([2.0]))
    assert float(learning_speed([p, param(4, 8)])) == pytest.approx(1.0)


def test_decision_rule_for_two_and_three_modalities():
    two = torch.tensor([0.5, 0.0], dtype=torch.float64)
    assert cared_modality(two, 0.01) == 0 and cared_modality(-two, 0.01) == 1
    assert cared_modality(two, 0.5) is None  # strictly greater than the threshold
    three = torch.tensor([0.1, 0.4, 0.2], dtype=torch.float64)
    assert cared_modality(three, 0.29) == 1 and cared_modality(three, 0.31) is None


# --------------------------------------------------------------------------- the model's groups
def fill(params, weight, grad):
    with torch.no_grad():
        for p in params:
            p.fill_(weight)
            p.grad = torch.full_like(p, grad)


def test_edit_grads_measures_the_declared_groups_by_hand():
    model = tiny_mmtm_classifier()
    mmtm = model.encoder_fusion.blocks['0']
    hook = GreedyHook()
    hook.setup(model)
    for m in model.modalities:
        fill([*model.encoders[m].parameters(), *model.fusion.heads[m].parameters()], 1.0, 0.5)
        fill(mmtm.excitations[m].parameters(), 1.0, 1.0)
    fill(mmtm.squeeze.parameters(), 1.0, 3.0)
    hook.edit_grads(ctx_for(model))
    # main: every theta = 1, grad = 0.5 -> 0.25. Bypass: the excitation (audio 4*5+5 = 25,
    # visual 4*3+3 = 15 elements, grad 1) plus the shared squeeze (8*4+4 = 36, grad 3).
    byp = [(25 + 36 * 9) / (25 + 36), (15 + 36 * 9) / (15 + 36)]
    torch.testing.assert_close(hook.main_sum, torch.tensor([0.25, 0.25], dtype=torch.float64))
    torch.testing.assert_close(hook.bypass_sum, torch.tensor(byp, dtype=torch.float64))
    assert hook._pending['bdr_audio'] == pytest.approx(math.log10(byp[0] / 0.25))
    assert hook.curation_left == 0  # epoch 0 is the warm-up
    hook.edit_grads(ctx_for(model))  # cumulative: a second step adds, nothing is reset
    torch.testing.assert_close(hook.main_sum, torch.tensor([0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(hook.bypass_sum, 2 * torch.tensor(byp, dtype=torch.float64))


def test_branch_losses_replace_the_base_loss():
    model = tiny_mmtm_classifier()
    hook = GreedyHook()
    hook.setup(model)
    inputs, samples = batch()
    log = Stepper(model, [hook], lr=0.0)(inputs, samples)
    branch = model.run(inputs).logits('analytic')
    for m in model.modalities:
        want = F.cross_entropy(branch[m], samples['gt_label'])
        assert log[f'loss_branch_{m}'].item() == pytest.approx(want.item(), rel=1e-6)
    assert log['loss'].item() == pytest.approx(
        log['loss_branch_audio'].item() + log['loss_branch_visual'].item(), rel=1e-6)


# --------------------------------------------------------------------------- the schedule
def run_steps(hook, steps, epoch_of=lambda t: 0, seed=0):
    """``steps`` batches through the step; per step: the plan's isolated list, whether the
    sums moved, and whether the cared modality's excitation had a gradient."""
    model = tiny_mmtm_classifier(seed)
    hook.setup(model)
    stepper = Stepper(model, [hook], lr=0.05)
    plans, measured, excited = [], [], []
    plan_passes, edit = hook.plan_passes, hook.edit_grads

    def record_plan(ctx):
        plans.append(list(plan_passes(ctx)[0].isolated))
        return plan_passes(ctx)

    def record_edit(ctx):
        before = hook.main_sum.clone()
        if plans[-1]:
            layer = model.encoder_fusion.blocks['0'].excitations[plans[-1][0]]
            excited.append(layer.weight.grad is not None)
        edit(ctx)
        measured.append(not torch.equal(before, hook.main_sum))

    hook.plan_passes, hook.edit_grads = record_plan, record_edit
    for t in range(steps):
        inputs, samples = batch(seed=t)
        stepper(inputs, samples, epoch=epoch_of(t), it=t)
    return model, plans, measured, excited


def test_a_decision_acts_from_the_next_step_for_q_steps():
    hook = GreedyHook(threshold=0.0, curation_steps=5, warmup_epochs=0)
    _, plans, measured, excited = run_steps(hook, 8)
    cared = plans[1]
    assert len(cared) == 1 and plans[0] == []  # decided at step 0, acts at step 1
    assert plans[1:6] == [cared] * 5 and plans[6] == []
    # d at steps 0 and 6 only; threshold 0, so step 6 decides again and step 7 re-balances
    assert measured == [True] + [False] * 5 + [True, False] and len(plans[7]) == 1
    assert excited == [False] * 6  # isolated: the cared excitation is out of the graph
    never = GreedyHook(threshold=1e9, warmup_epochs=0)
    assert all(p == [] for p in run_steps(never, 3)[1])


def test_warm_up_epochs_accumulate_but_never_re_balance():
    # the reference's starting_epoch=2 counts from 1: one warm-up epoch, 0-based epoch 0
    hook = GreedyHook(threshold=0.0, curation_steps=2, warmup_epochs=1)
    _, plans, measured, _ = run_steps(hook, 5, epoch_of=lambda t: 0 if t < 3 else 1)
    assert plans[:4] == [[]] * 4 and measured[:4] == [True] * 4  # decided at step 3 (epoch 1)
    assert len(plans[4]) == 1 and not measured[4]


def test_resume_mid_window_is_exact():
    hook = GreedyHook(threshold=0.0, curation_steps=3, warmup_epochs=0)
    model, _, _, _ = run_steps(hook, 2)  # step 1 re-balances; two more to go
    state = json.loads(json.dumps({k: v.tolist() if torch.is_tensor(v) else v
                                   for k, v in hook.state_dict().items()}))
    resumed = GreedyHook(threshold=0.0, curation_steps=3, warmup_epochs=0)
    copy = tiny_mmtm_classifier(seed=5)
    copy.load_state_dict(model.state_dict())  # weights and the MMTM running averages
    resumed.setup(copy)
    resumed.load_state_dict(state)
    assert (resumed.cared, resumed.curation_left) == (hook.cared, 2)
    inputs, samples = batch(seed=9)
    plan = hook.plan_passes(ctx_for(model))[0]
    for h, m in ((hook, model), (resumed, copy)):
        Stepper(m, [h], lr=0.05)(inputs, samples, it=2)
    assert plan.isolated == [hook.cared]
    assert (resumed.cared, resumed.curation_left) == (hook.cared, hook.curation_left)
    torch.testing.assert_close(resumed.main_sum, hook.main_sum)
    for (name, a), b in zip(model.state_dict().items(), copy.state_dict().values()):
        assert torch.equal(a, b), name


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('kwargs, message', [
    (dict(threshold=-0.1), r'threshold=-0.1; expected a finite number >= 0'),
    (dict(threshold=float('nan')), 'threshold=nan'),
    (dict(curation_steps=0), r'curation_steps=0; expected an integer >= 1'),
    (dict(warmup_epochs=1.5), r'warmup_epochs=1.5; expected an integer >= 0'),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GreedyHook(**kwargs)


def test_models_without_the_declared_groups_are_refused():
    one = MODELS.build(dict(type='MultimodalClassifier',
                            encoders=dict(audio=dict(type='MLPEncoder', in_channels=3,
                                                     out_channels=4)),
                            fusion=dict(type='LateFusion', num_classes=3), head=None))
    with pytest.raises(ValueError, match=r"balances modalities against each other; the model "
                                         r"has \['audio'\]"):
        GreedyHook().setup(one)
    with pytest.raises(TypeError, match=r"needs an in-encoder fusion .*MMTMFusion"):
        GreedyHook().setup(tiny_classifier())
    concat = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=3)),
        encoder_fusion=dict(type='MMTMFusion', stages=(0, )),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3)))
    with pytest.raises(TypeError, match=r"one classifier per branch .*LateFusion.*ConcatFusion"):
        GreedyHook().setup(concat)
    with pytest.raises(KeyError, match="lacks 'cared'"):
        GreedyHook().load_state_dict({'main_sum': [0., 0.], 'bypass_sum': [0., 0.],
                                      'curation_left': 0})
    hook = GreedyHook()
    hook.load_state_dict({'main_sum': [0., 0., 0.], 'bypass_sum': [0., 0., 0.],
                          'cared': None, 'curation_left': 0})
    with pytest.raises(ValueError, match='sums for 3 modalities; the model has 2'):
        hook.setup(tiny_mmtm_classifier())


# --------------------------------------------------------------------------- DDP
N = 8


def _ddp_steps(rank, world, out_dir):
    """Three steps (a decision at step 0, re-balancing at steps 1-2) on this rank's shard."""
    from mmengine.model import MMDistributedDataParallel
    model = tiny_mmtm_classifier()
    hook = GreedyHook(threshold=0.0, curation_steps=2, warmup_epochs=0)
    hook.setup(model)
    error = None
    if world > 1:  # a DDP wrapper that does not look for unused parameters is refused
        runner = types.SimpleNamespace(
            train_loop=types.SimpleNamespace(runs_balance_step=True),
            model=MMDistributedDataParallel(copy.deepcopy(model), device_ids=None))
        try:
            hook.before_train(runner)
        except ValueError as err:
            error = str(err)
    net = MMDistributedDataParallel(model, device_ids=None, find_unused_parameters=True) \
        if world > 1 else model
    stepper = Stepper(model, [hook], net=net, lr=0.05)
    shard = slice(rank * N // world, (rank + 1) * N // world)
    isolated = []
    for t in range(3):
        inputs, samples = batch(N, seed=t)
        isolated.append(list(hook.plan_passes(ctx_for(model))[0].isolated))
        stepper({m: x[shard] for m, x in inputs.items()},
                {k: v[shard] for k, v in samples.items()}, it=t)
    result = {'error': error, 'isolated': isolated, 'main': hook.main_sum.tolist(),
              'bypass': hook.bypass_sum.tolist(),
              'state': {n: t.double().flatten().tolist() for n, t in model.state_dict().items()}}
    with open(os.path.join(out_dir, f'greedy_rank{rank}_of{world}.json'), 'w') as f:
        json.dump(result, f)


def test_ddp_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    run_gloo(_ddp_steps, str(tmp_path))
    _ddp_steps(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'greedy_{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert 'find_unused_parameters=True' in r0.pop('error') and r1.pop('error')
    assert r0 == r1  # replicas agree: decisions, sums, weights and running averages
    assert single['isolated'][0] == [] and single['isolated'][1] != []
    assert r0['isolated'] == single['isolated']
    for key in ('main', 'bypass'):
        torch.testing.assert_close(torch.tensor(r0[key]), torch.tensor(single[key]),
                                   rtol=1e-6, atol=1e-9)
    for name, want in single['state'].items():
        torch.testing.assert_close(torch.tensor(r0['state'][name]), torch.tensor(want),
                                   rtol=1e-5, atol=1e-6, msg=name)
