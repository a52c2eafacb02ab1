"""ReconBoost: the boosting loss and its 1/C, the consolidation term's gradient, the stage
schedule with a fresh optimizer per phase, phase-1 isolation, the rectification phase with
beta, M = 3, resume, DDP.

Every expected number is written out below with the arithmetic that gives it (spec
BASELINES-2.md, "5. ReconBoost", unit tests 1-5, and the extra cases); none is produced by
the code under test.
"""
import json
import math
import os
import types

import pytest
import torch
from dist_utils import run_gloo
from step_utils import Stepper, capture_step_grads

from mmbal.engine import ReconBoostHook
from mmbal.engine.hooks.reconboost_hook import (boosting_loss, consolidation_loss,
                                                ensemble_confidence, phase_of)
from mmbal.registry import MODELS

torch.set_num_threads(1)
TOL = dict(rtol=0, atol=2e-6)
LN3 = math.log(3)


def close(got, want, **tol):
    torch.testing.assert_close(torch.as_tensor(got, dtype=torch.float64),
                               torch.as_tensor(want, dtype=torch.float64), **(tol or TOL))


def identity_model(modalities=('audio', 'visual'), boost_rate=1.0, **fusion_kw):
    """Encoders W = I_3 (bias 0), shared head h = I_3 (bias 0): h(z_m) = x_m; 3 classes."""
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders={m: dict(type='MLPEncoder', in_channels=3, out_channels=3)
                  for m in modalities},
        fusion=dict(type='SharedHeadFusion', num_classes=3, eval_fusion='boost',
                    boost_rate=boost_rate, **fusion_kw),
        head=None))
    with torch.no_grad():
        for enc in model.encoders.values():
            enc.layers[0].weight.copy_(torch.eye(3))
            enc.layers[0].bias.zero_()
        model.fusion.fc.weight.copy_(torch.eye(3))
        model.fusion.fc.bias.zero_()
    return model


def hook_for(model, **kw):
    hook = ReconBoostHook(**kw)
    hook.setup(model)
    return hook


def fake_runner(epoch, optim_wrapper):
    return types.SimpleNamespace(epoch=epoch, optim_wrapper=optim_wrapper)


# --------------------------------------------------------------------------- spec tests 1, 2
def test_boosting_loss_values_and_the_one_over_c():
    # C = 3, s_m = [0, 0, 0] -> p = 1/3 each; q = [0.5, 0.25, 0.25], y = 0, w1 = 5, w2 = 1:
    # weight = 5 - 0.5 = 4.5; L = 4.5 * ln 3 / 3 = 1.647918 (without the 1/C: 4.943755)
    s = torch.zeros(1, 3, requires_grad=True)
    q_logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    loss = boosting_loss(s, q_logits, torch.tensor([0]), 5.0, 1.0)
    close(loss, 1.6479184)
    loss.backward()
    # dL/ds = (4.5 / 3)(p - y) = 1.5 * [-2/3, 1/3, 1/3] = [-1, 0.5, 0.5]
    close(s.grad, [[-1, 0.5, 0.5]])
    # q is a constant for autograd
    q_live = q_logits.clone().requires_grad_(True)
    boosting_loss(torch.zeros(1, 3), q_live, torch.tensor([0]), 5.0, 1.0)
    assert q_live.grad is None


def test_boosting_loss_batch_mean_and_the_empty_ensemble():
    # sample 2: s = [1, 0, 0], q_y = 1 -> weight 4; -log softmax([1, 0, 0])_0 = ln(e + 2) - 1
    # = 0.551445 -> L_2 = (4/3) * 0.551445 = 0.735260; mean with 1.647918 = 1.191589
    s = torch.tensor([[0., 0., 0.], [1., 0., 0.]])
    q_logits = torch.tensor([[math.log(.5), math.log(.25), math.log(.25)], [200., 0., 0.]])
    close(boosting_loss(s, q_logits, torch.tensor([0, 0]), 5.0, 1.0), 1.1915888)
    # no ensemble (stage 0 without pretraining): q_y = 1 for every sample, weight w1 - w2 = 4
    close(boosting_loss(s[1:], None, torch.tensor([0]), 5.0, 1.0), 0.7352596)
    close(ensemble_confidence(None, torch.tensor([2, 0])), [1, 1])


# --------------------------------------------------------------------------- consolidation
def test_consolidation_gradient_matches_the_hand_formula():
    # L = (1/(B C)) sum_ic (p_ic - r_ic)^2, p = softmax(s), r = softmax(s_prev) (a constant):
    # dL/ds_ij = (2/(B C)) p_ij (d_ij - sum_c d_ic p_ic), d = p - r  (softmax Jacobian
    # dp_c/ds_j = p_c (delta_cj - p_j)).
    s = torch.tensor([[1., 0., -1.], [0.5, 2., 0.]], dtype=torch.float64, requires_grad=True)
    prev = torch.tensor([[0., 1., 0.], [0., 0., 3.]], dtype=torch.float64, requires_grad=True)
    loss = consolidation_loss(s, prev)
    loss.backward()
    p, r = torch.softmax(s.detach(), 1), torch.softmax(prev.detach(), 1)
    d = p - r
    close(loss, (d ** 2).sum() / 6)
    hand = 2 / 6 * p * (d - (d * p).sum(dim=1, keepdim=True))
    close(s.grad, hand, rtol=0, atol=1e-12)
    assert prev.grad is None  # the previous stage's side is detached
    # the reference's form (both sides detached) has no gradient at all
    assert not consolidation_loss(s, prev, with_grad=False).requires_grad


# --------------------------------------------------------------------------- spec test 3
def test_schedule_and_a_fresh_optimizer_at_every_phase_start():
    order = ['audio', 'visual']
    want = ([(0, True, 'audio')] * 4 + [(0, False, 'audio')] * 4 + [(1, True, 'visual')] * 4
            + [(1, False, 'visual')] * 4 + [(2, True, 'audio')])
    got = [phase_of(e, 4, 4, order)[:3] for e in range(17)]
    assert got == want
    assert [e for e in range(17) if phase_of(e, 4, 4, order).first_epoch] == [0, 4, 8, 12, 16]
    # the hook clears all optimizer state (momentum) exactly at those epochs
    model = identity_model()
    hook = hook_for(model)
    stepper = Stepper(model, [hook], lr=0.1, momentum=0.9)
    optimizer = stepper.optim_wrapper.optimizer
    x = {'audio': torch.tensor([[1., 0., 0.]]), 'visual': torch.tensor([[0., 1., 0.]])}
    y = {'gt_label': torch.tensor([2])}
    kept = []
    for epoch in range(13):
        hook.before_train_epoch(fake_runner(epoch, stepper.optim_wrapper))
        kept.append(len(optimizer.state))
        stepper(x, y, epoch=epoch, it=epoch)
    # after epoch 0 (phase 1, audio): audio encoder + head (4 tensors) have momentum buffers;
    # phase 2 adds the visual encoder and beta (7 tensors)
    assert kept == [0, 4, 4, 4, 0, 7, 7, 7, 0, 4, 4, 4, 0]


def test_crema_config_decays_the_lr_every_30_stages():
    from mmengine.config import Config
    cfg = Config.fromfile('configs/reconboost/reconboost_r18_crema.py')
    (sched, ) = cfg.param_scheduler
    hook = next(h for h in cfg.custom_hooks if h['type'] == 'ReconBoostHook')
    stage = hook['epochs_per_stage'] + hook['correct_epochs']
    assert stage == 8 and sched['milestones'][:3] == [240, 480, 720]  # stages 30, 60, 90


# --------------------------------------------------------------------------- spec test 4
def test_phase_one_trains_only_the_boosted_encoder_and_the_head():
    # pretrained ensemble, stage 0 boosts audio: x_a = 0 -> s_a = [0, 0, 0]; x_v = [0, 2, 0]
    # -> s_v = [0, 2, 0], beta = 1: q = softmax([0, 2, 0]) = [1, e^2, 1] / (e^2 + 2)
    # = [0.106507, 0.786986, 0.106507]; y = 1: weight = 5 - 0.786986 = 4.213014,
    # L = 4.213014 ln 3 / 3 = 1.542823; dL/ds_a = (4.213014 / 3)(p - y)
    # = 1.404338 * [1/3, -2/3, 1/3] = [0.468113, -0.936225, 0.468113]
    model = identity_model()
    hook = hook_for(model, pretrained=True)
    stepper = Stepper(model, [hook], lr=1.0, momentum=0.9, weight_decay=0.1)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log = stepper({'audio': torch.zeros(1, 3), 'visual': torch.tensor([[0., 2., 0.]])},
                  {'gt_label': torch.tensor([1])})
    close(log['loss_boost'], 1.5428230)
    close(hook._pending['q_y'], 0.7869860)
    g = [0.4681127, -0.9362253, 0.4681127]
    close(grads['fusion.fc.bias'], g)
    close(grads['fusion.fc.weight'], torch.zeros(3, 3))  # dL/dW = g z_a^T, z_a = 0
    close(grads['encoders.audio.layers.0.bias'], g)  # W_h^T g with W_h = I
    for n, p in model.named_parameters():
        if n.startswith('encoders.visual.') or n == 'fusion.beta':
            assert grads[n] is None, n
            assert torch.equal(p, before[n]), n  # no momentum, no weight decay either
    # h changed: bias -= lr * g; W = I - 0.1 I (weight decay on a zero gradient)
    close(model.fusion.fc.bias, [-x for x in g])
    close(model.fusion.fc.weight, 0.9 * torch.eye(3))
    assert 'loss_ga' not in log  # no previous stage at stage 0


def test_phase_two_rectifies_everything_with_beta():
    # epoch 1 with E1 = E2 = 1: phase 2. F = beta (s_a + s_v) = [0, 2, 0], y = 1:
    # CE = -ln 0.786986 = 0.239545; dL/dbeta = sum_c (p - y)_c (s_a + s_v)_c
    # = (0.786986 - 1) * 2 = -0.426028; dL/dF = beta (p - y) reaches both encoders
    model = identity_model()
    hook = hook_for(model, epochs_per_stage=1, correct_epochs=1)
    stepper = Stepper(model, [hook], lr=0.0)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    log = stepper({'audio': torch.zeros(1, 3), 'visual': torch.tensor([[0., 2., 0.]])},
                  {'gt_label': torch.tensor([1])}, epoch=1)
    close(log['loss'], 0.2395448)
    close(grads['fusion.beta'], -0.4260279)
    pmy = [0.1065070, -0.2130140, 0.1065070]
    close(grads['encoders.audio.layers.0.bias'], pmy)
    close(grads['encoders.visual.layers.0.bias'], pmy)
    assert all(g is not None for g in grads.values())
    assert 'loss_boost' not in log
    close(hook._pending['beta'], 1.0)


def test_boost_fusion_and_its_analytic_logits():
    model = identity_model(boost_rate=0.5)
    x = {'audio': torch.tensor([[1., 0., 0.]]), 'visual': torch.tensor([[0., 2., 0.]])}
    out = model.run(x)
    close(out.fused_logits, [[0.5, 1.0, 0]])  # 0.5 * ([1, 0, 0] + [0, 2, 0])
    close(out.logits('analytic')['visual'], [[0, 2, 0]])  # h(z_v), without beta
    mlp = MODELS.build(dict(type='SharedHeadFusion', num_classes=3, eval_fusion='boost',
                            boost_rate=1.0, hidden_channels=5, in_channels=dict(a=4, b=4)))
    assert [type(m).__name__ for m in mlp.fc] == ['Linear', 'ReLU', 'Linear']
    assert (mlp.fc[0].in_features, mlp.fc[0].out_features, mlp.fc[2].out_features) == (4, 5, 3)


# --------------------------------------------------------------------------- spec test 5
def mlp_model(seed=0, modalities=('audio', 'visual')):
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders={m: dict(type='MLPEncoder', in_channels=3, out_channels=4,
                          hidden_channels=(5, )) for m in modalities},
        fusion=dict(type='SharedHeadFusion', num_classes=3, eval_fusion='boost',
                    boost_rate=1.0), head=None))


def mlp_batch(seed, b=8, modalities=('audio', 'visual')):
    g = torch.Generator().manual_seed(seed)
    return ({m: torch.randn(b, 3, generator=g) for m in modalities},
            {'gt_label': torch.randint(0, 3, (b, ), generator=g)})


def grads_at(epoch, **kw):
    model = mlp_model()
    stepper = Stepper(model, [hook_for(model, epochs_per_stage=1, correct_epochs=1, **kw)],
                      lr=0.0)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    log = stepper(*mlp_batch(0), epoch=epoch)
    return grads, log


def test_reference_compat_consolidation_has_no_gradient():
    # epoch 2 = stage 1 (visual boosted, prev = audio): the consolidation term is on
    base, _ = grads_at(2, alpha=0.0)
    compat, compat_log = grads_at(2, alpha=0.5, reference_compat=True)
    ours, ours_log = grads_at(2, alpha=0.5)
    assert torch.equal(compat_log['loss_ga'], ours_log['loss_ga'])  # the same value
    for n in base:
        assert (base[n] is None) == (compat[n] is None), n
        if base[n] is not None:
            assert torch.equal(base[n], compat[n]), n
    assert not torch.allclose(ours['fusion.fc.bias'], base['fusion.fc.bias'])


# --------------------------------------------------------------------------- M = 3
def test_three_modalities_ensemble_order_and_previous_stage():
    mods = ('audio', 'visual', 'text')
    model = identity_model(mods, boost_rate=0.5)
    hook = hook_for(model, order=['text', 'visual', 'audio'], epochs_per_stage=1,
                    correct_epochs=1)
    # without pretraining a modality joins the ensemble once boosted
    assert [hook.ensemble(s, hook.phase(2 * s).modality) for s in range(4)] == [
        [], ['text'], ['text', 'visual'], ['visual', 'audio']]
    # stage 2 boosts audio; q = softmax(0.5 (h(z_t) + h(z_v))) with x_t = [1, 0, 0],
    # x_v = [0, 1, 0]: softmax([0.5, 0.5, 0]) -> q_0 = e^0.5 / (2 e^0.5 + 1) = 0.383652;
    # y = 0, s_a = 0: L = (5 - 0.383652) ln 3 / 3 = 1.690526
    x = {'audio': torch.zeros(1, 3), 'visual': torch.tensor([[0., 1., 0.]]),
         'text': torch.tensor([[1., 0., 0.]])}
    stepper = Stepper(model, [hook], lr=0.0)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    log = stepper(x, {'gt_label': torch.tensor([0])}, epoch=4)
    close(log['loss_boost'], 1.6905256)
    close(hook._pending['q_y'], 0.3836517)
    # consolidation against the previous stage's modality (visual):
    # p = 1/3 each, r = softmax([0, 1, 0]) = [0.211942, 0.576117, 0.211942]
    # MSE = ((1/3 - 0.211942)^2 * 2 + (1/3 - 0.576117)^2) / 3 = 0.029472; alpha 0.5
    close(log['loss_ga'], 0.5 * 0.0294719)
    assert all(grads[n] is None for n in grads if not n.startswith(('encoders.audio.',
                                                                   'fusion.fc.')))


# --------------------------------------------------------------------------- resume
def run_epochs(model, hook, stepper, epochs):
    for epoch in epochs:
        hook.before_train_epoch(fake_runner(epoch, stepper.optim_wrapper))
        for b in range(2):
            stepper(*mlp_batch(10 * epoch + b), epoch=epoch, it=2 * epoch + b, batch_idx=b,
                    num_batches=2)


@pytest.mark.parametrize('split', [1, 2])
def test_resume_is_exact_inside_and_at_the_start_of_a_phase(tmp_path, split):
    # E1 = 2, E2 = 1: epochs 0-1 boost audio, 2 rectifies, 3 boosts visual. Resuming after
    # epoch 0 lands inside phase 1 (the checkpoint's momentum is kept); after epoch 1, at
    # the start of phase 2 (momentum dropped, as in the uninterrupted run).
    kw = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
    hk = dict(epochs_per_stage=2, correct_epochs=1, alpha=0.5)
    full = mlp_model()
    hook = hook_for(full, **hk)
    run_epochs(full, hook, Stepper(full, [hook], **kw), range(4))

    part = mlp_model()
    hook_a = hook_for(part, **hk)
    stepper_a = Stepper(part, [hook_a], **kw)
    run_epochs(part, hook_a, stepper_a, range(split))
    checkpoint = {'state_dict': part.state_dict(),
                  'optimizer': stepper_a.optim_wrapper.state_dict()}
    hook_a.before_save_checkpoint(None, checkpoint)
    torch.save(checkpoint, tmp_path / 'ckpt.pth')
    loaded = torch.load(tmp_path / 'ckpt.pth', weights_only=True)
    assert loaded['balance_hooks']['reconboost']['epochs_per_stage'] == 2
    resumed = mlp_model(seed=1)  # everything comes from the checkpoint
    resumed.load_state_dict(loaded['state_dict'])
    hook_b = hook_for(resumed, **hk)
    hook_b.after_load_checkpoint(None, loaded)
    stepper_b = Stepper(resumed, [hook_b], **kw)
    stepper_b.optim_wrapper.load_state_dict(loaded['optimizer'])
    assert len(stepper_b.optim_wrapper.optimizer.state) > 0
    run_epochs(resumed, hook_b, stepper_b, range(split, 4))
    for (n, p), (_, q) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.equal(p, q), n


def test_resume_with_another_schedule_is_refused():
    hook = hook_for(mlp_model())
    state = dict(hook.state_dict(), correct_epochs=2)
    with pytest.raises(ValueError, match='trained with correct_epochs=2, this config has '
                                         'correct_epochs=4'):
        hook.load_state_dict(state)
    with pytest.raises(KeyError, match="lacks 'pretrained'"):
        hook.load_state_dict({k: v for k, v in hook.state_dict().items() if k != 'pretrained'})


# --------------------------------------------------------------------------- errors
def test_errors_name_the_problem():
    concat = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=2, out_channels=2),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=2)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=2)))
    with pytest.raises(TypeError, match="eval_fusion='boost'.*the model has ConcatFusion"):
        ReconBoostHook().setup(concat)
    entropy = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=2, out_channels=2),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=2)),
        fusion=dict(type='SharedHeadFusion', num_classes=2), head=None))
    with pytest.raises(TypeError, match='the model has SharedHeadFusion'):
        ReconBoostHook().setup(entropy)
    with pytest.raises(ValueError, match=r"boosts one modality against the others.*\['audio'\]"):
        ReconBoostHook().setup(identity_model(('audio', )))
    with pytest.raises(ValueError, match="order='sound' is not a modality"):
        ReconBoostHook(order=['sound', 'visual']).setup(identity_model())
    with pytest.raises(ValueError, match='must name every modality'):
        ReconBoostHook(order=['audio']).setup(identity_model())
    with pytest.raises(ValueError, match="order='audio'; expected a list"):
        ReconBoostHook(order='audio')
    for kw, match in ((dict(epochs_per_stage=0), 'epochs_per_stage=0; expected an integer >= 1'),
                      (dict(correct_epochs=1.5), 'correct_epochs=1.5'),
                      (dict(w1=float('nan')), 'w1=nan'), (dict(alpha=-1), 'alpha=-1'),
                      (dict(pretrained='yes'), "pretrained must be True or False, got 'yes'"),
                      (dict(reference_compat=1), 'reference_compat must be True or False')):
        with pytest.raises(ValueError, match=match):
            ReconBoostHook(**kw)
    fusion = dict(type='SharedHeadFusion', num_classes=2, in_channels=dict(a=2, b=2))
    for kw, match in ((dict(eval_fusion='boost'), "needs boost_rate.*got None"),
                      (dict(eval_fusion='boost', boost_rate=0.0), 'got 0.0'),
                      (dict(eval_fusion='boost', boost_rate=float('inf')), 'got inf'),
                      (dict(boost_rate=1.0), "only used with eval_fusion='boost'"),
                      (dict(hidden_channels=0), 'hidden_channels=0')):
        with pytest.raises(ValueError, match=match):
            MODELS.build({**fusion, **kw})


def test_ddp_without_find_unused_parameters_is_refused():
    from torch.nn.parallel import DistributedDataParallel
    hook = hook_for(identity_model())
    ddp = DistributedDataParallel.__new__(DistributedDataParallel)
    ddp.find_unused_parameters = False
    runner = types.SimpleNamespace(train_loop=types.SimpleNamespace(runs_balance_step=True),
                                   model=ddp)
    with pytest.raises(ValueError, match='ReconBoostHook trains one encoder per boosting phase'
                                         '.*find_unused_parameters=True'):
        hook.before_train(runner)


# --------------------------------------------------------------------------- DDP
GLOBAL_BATCH = 8


def _ddp_steps(rank, world, out_dir):
    """Epoch 0 (phase 1, audio, pretrained ensemble) then epoch 1 (phase 2) on this rank's
    shard of the batch."""
    from mmengine.model import MMDistributedDataParallel
    model = mlp_model()
    hook = hook_for(model, epochs_per_stage=1, correct_epochs=1, pretrained=True)
    net = (MMDistributedDataParallel(model, device_ids=None, find_unused_parameters=True)
           if world > 1 else model)
    stepper = Stepper(model, [hook], net=net, lr=0.1, momentum=0.9, weight_decay=5e-4)
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    grads = capture_step_grads(stepper.optim_wrapper, model)
    phase1_none = None
    for epoch in range(2):
        inputs, samples = mlp_batch(20 + epoch, GLOBAL_BATCH)
        inputs = {m: x[shard] for m, x in inputs.items()}
        samples = {k: v[shard] for k, v in samples.items()}
        hook.before_train_epoch(fake_runner(epoch, stepper.optim_wrapper))
        stepper(inputs, samples, epoch=epoch, it=epoch)
        if epoch == 0:
            phase1_none = sorted(n for n, g in grads.items() if g is None)
    result = dict(phase1_none=phase1_none,
                  params={n: p.detach().flatten().tolist() for n, p in model.named_parameters()})
    with open(os.path.join(out_dir, f'rb_rank{rank}_of{world}.json'), 'w') as f:
        json.dump(result, f)


def test_reconboost_under_ddp_equals_one_process_on_the_global_batch(tmp_path):
    run_gloo(_ddp_steps, str(tmp_path))
    _ddp_steps(0, 1, str(tmp_path))
    r0, r1, single = (json.loads((tmp_path / f'rb_{name}.json').read_text())
                      for name in ('rank0_of2', 'rank1_of2', 'rank0_of1'))
    assert r0 == r1  # replicas agree bit for bit
    assert r0['phase1_none'] == single['phase1_none'] == [
        'encoders.visual.layers.0.bias', 'encoders.visual.layers.0.weight',
        'encoders.visual.layers.2.bias', 'encoders.visual.layers.2.weight', 'fusion.beta']
    for name, want in single['params'].items():
        close(r0['params'][name], want, rtol=1e-5, atol=1e-6)
