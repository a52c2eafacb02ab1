"""The training step's extension points: per-pass gates, extra losses, gradient edits,
per-loss gradients (accumulation, AMP), sub-steps, trainable-modality masks."""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from step_utils import Stepper, capture_step_grads, cpu_amp_wrapper, sgd_wrapper
from step_utils import tiny_classifier as build_model

from mmbal.engine import BalanceTerms, BaseBalanceHook, LossGradRequest, PassPlan
from mmbal.models.utils import GradientGate


def batch(b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return ({'audio': torch.randn(b, 3, generator=g), 'visual': torch.randn(b, 2, generator=g)},
            {'gt_label': torch.randint(0, 3, (b, ), generator=g)})


class ScaleHook(BaseBalanceHook):
    """Hands fixed gate coefficients to the step (a stand-in for a method)."""

    def __init__(self, coefs):
        super().__init__()
        self.coefs = coefs

    def after_forward(self, ctx, outputs, data_samples):
        return BalanceTerms(coefficients=dict(self.coefs))


def sgd_steps(model, steps=3, hooks=(), momentum=0.0, **wrapper_kw):
    stepper = Stepper(model, hooks, momentum=momentum, **wrapper_kw)
    for i in range(steps):
        stepper(*batch(seed=i), it=i)
    return model


# --------------------------------------------------------------------------- the gate
def test_gate_is_identity_forward_and_scales_backward():
    gate = GradientGate()
    x = torch.randn(4, 3, requires_grad=True)
    y = gate(x)
    assert torch.equal(y, x)
    gate.scale(2.0)
    gate.scale(torch.tensor([1., 2., 3., 4.]))  # stacked hooks multiply
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([2., 4., 6., 8.]).view(4, 1).expand(4, 3))


def test_gate_noise_is_reproducible_and_added_once():
    grads = []
    for _ in range(2):
        gate = GradientGate()
        x = torch.zeros(3, 5, requires_grad=True)
        y = gate(x)
        gate.add_noise(0.5, seed=7)
        y.sum().backward()
        grads.append(x.grad.clone())
    assert torch.equal(grads[0], grads[1])
    g = torch.Generator().manual_seed(7)
    torch.testing.assert_close(grads[0], 1 + 0.5 * torch.randn(3, 5, generator=g))
    with pytest.raises(RuntimeError, match='already set'):
        gate.add_noise(0.1, seed=1)


def test_two_forwards_then_two_backwards_each_use_their_own_coefficient():
    model = build_model()
    inputs, _ = batch()
    first, second = model.run(inputs), model.run(inputs)
    first.gates['audio'].scale(2.0)
    first.gates['audio'].add_noise(0.0, seed=1)
    second.gates['audio'].scale(-3.0)
    enc = model.encoders['audio'].layers[-1].weight
    plain = torch.autograd.grad(model.run(inputs).fused_logits.sum(), enc)[0]
    g1 = torch.autograd.grad(first.fused_logits.sum(), enc, retain_graph=True)[0]
    g2 = torch.autograd.grad(second.fused_logits.sum(), enc)[0]
    torch.testing.assert_close(g1, 2.0 * plain)
    torch.testing.assert_close(g2, -3.0 * plain)


# --------------------------------------------------------------------------- one pass
def test_step_without_hooks_equals_mmengine_train_step_bit_exactly():
    ours, theirs = build_model(), build_model()
    stepper = Stepper(ours, momentum=0.9, weight_decay=1e-4)
    wrapper = sgd_wrapper(theirs, momentum=0.9, weight_decay=1e-4)
    for i in range(3):
        inputs, samples = batch(seed=i)
        log_ours = stepper(inputs, samples, it=i)
        log_theirs = theirs.train_step({'inputs': inputs, 'data_samples': samples}, wrapper)
        assert log_ours.keys() == log_theirs.keys()
        assert all(torch.equal(log_ours[k], log_theirs[k]) for k in log_ours)
    for (n, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.equal(p, q), n


def test_coefficients_of_one_reproduce_plain_training_exactly():
    plain = sgd_steps(build_model(), momentum=0.9)
    gated = sgd_steps(build_model(), momentum=0.9,
                      hooks=[ScaleHook({'audio': 1.0, 'visual': 1.0})])
    for (n, p), (_, q) in zip(plain.named_parameters(), gated.named_parameters()):
        assert torch.equal(p, q), n


def test_coefficient_scales_exactly_one_encoders_update():
    init = build_model()
    plain = sgd_steps(copy.deepcopy(init), steps=1)
    scaled = sgd_steps(copy.deepcopy(init), steps=1, hooks=[ScaleHook({'visual': 0.25})])
    before = dict(init.named_parameters())
    for (n, p), (_, q) in zip(plain.named_parameters(), scaled.named_parameters()):
        delta_plain, delta_scaled = p - before[n], q - before[n]
        if n.startswith('encoders.visual'):
            torch.testing.assert_close(delta_scaled, 0.25 * delta_plain, rtol=1e-5, atol=1e-7)
            assert delta_plain.abs().max() > 0
        else:
            assert torch.equal(delta_scaled, delta_plain), n


def test_coefficients_of_two_hooks_multiply():
    init = build_model()
    one = sgd_steps(copy.deepcopy(init), steps=1, hooks=[ScaleHook({'audio': 0.5})])
    two = sgd_steps(copy.deepcopy(init), steps=1,
                    hooks=[ScaleHook({'audio': 2.0}), ScaleHook({'audio': 0.25})])
    for (n, p), (_, q) in zip(one.named_parameters(), two.named_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7, msg=n)


class RecordingHook(BaseBalanceHook):
    """Multiplies every gradient by 100 before clipping and records when it ran."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def edit_grads(self, ctx):
        self.calls += 1
        for p in ctx.model.parameters():
            if p.grad is not None:
                p.grad.mul_(100)


def test_gradient_edits_run_before_clipping_and_once_per_update():
    hook = RecordingHook()
    model = build_model()
    wrapper = sgd_wrapper(model, lr=0.0, clip_grad=dict(max_norm=1.0), accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 4)
    stepper = Stepper(model, [hook], optim_wrapper=wrapper)
    norms = []
    orig_step = wrapper.optimizer.step

    def step(*args, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norms.append(torch.norm(torch.stack([g.norm() for g in grads])).item())
        return orig_step(*args, **kwargs)

    wrapper.optimizer.step = step
    for i in range(4):
        stepper(*batch(seed=i), it=i)
    assert hook.calls == 2  # once per accumulated update
    assert norms == pytest.approx([1.0, 1.0], rel=1e-5)  # clipped after the x100 edit


def test_extra_loss_terms_are_added_and_logged_values_kept_apart():
    class ExtraLoss(BaseBalanceHook):
        def after_forward(self, ctx, outputs, data_samples):
            self.term = outputs.features['audio'].pow(2).mean()
            return BalanceTerms(losses={'loss_extra': self.term,
                                        'extra_stat': torch.tensor(3.0)})

    init = build_model()
    hook = ExtraLoss()
    hooked, by_hand = copy.deepcopy(init), copy.deepcopy(init)
    inputs, samples = batch()
    log = Stepper(hooked, [hook])(inputs, samples)
    assert log['extra_stat'] == 3.0 and torch.equal(log['loss_extra'], hook.term.detach())
    # by hand: one SGD step on CE + the extra term
    opt = torch.optim.SGD(by_hand.parameters(), lr=0.1)
    out = by_hand.run(inputs)
    ce = torch.nn.functional.cross_entropy(out.fused_logits, samples['gt_label'])
    (ce + out.features['audio'].pow(2).mean()).backward()
    opt.step()
    for (n, p), (_, q) in zip(hooked.named_parameters(), by_hand.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=n)


def test_errors_name_the_hook_and_the_problem():
    class Clash(BaseBalanceHook):
        def after_forward(self, ctx, outputs, data_samples):
            return BalanceTerms(losses={'loss': outputs.fused_logits.sum()})

    with pytest.raises(KeyError, match="Clash returned 'loss'"):
        Stepper(build_model(), [Clash()])(*batch())

    class Planner(BaseBalanceHook):
        def plan_passes(self, ctx):
            return [PassPlan()]

    with pytest.raises(ValueError, match='Planner and Planner both plan'):
        Stepper(build_model(), [Planner(), Planner()])(*batch())

    class NoLoss(BaseBalanceHook):
        def plan_passes(self, ctx):
            return [PassPlan(base_loss=False)]

    with pytest.raises(ValueError, match='no trained loss'):
        Stepper(build_model(), [NoLoss()])(*batch())

    class GateOther(BaseBalanceHook):
        def plan_passes(self, ctx):
            return [PassPlan(trainable=['audio'], target_only=['visual'], base_loss=False)]

        def after_forward(self, ctx, outputs, data_samples):
            return BalanceTerms(coefficients={'visual': 2.0},
                                losses={'loss_a': outputs.features['audio'].sum()})

    with pytest.raises(ValueError, match="GateOther set gate coefficients for 'visual'"):
        Stepper(build_model(), [GateOther()])(*batch())


def test_a_balance_hook_refuses_a_loop_that_does_not_run_the_step():
    class Runner:
        train_loop = object()

    with pytest.raises(TypeError, match="type='BalanceTrainLoop'"):
        ScaleHook({}).before_train(Runner())


def test_deepcopy_of_the_model_copies_no_hook():
    model = build_model()
    hook = ScaleHook({'audio': 2.0})
    Stepper(model, [hook])(*batch())
    clone = copy.deepcopy(model)  # what mmengine's EMAHook does
    seen = [v for v in vars(clone).values() if isinstance(v, BaseBalanceHook)]
    assert not seen and not any(isinstance(m, BaseBalanceHook) for m in clone.modules())


def test_hook_state_goes_into_the_checkpoint_and_back():
    class Counter(BaseBalanceHook):
        method = 'counter'

        def __init__(self):
            super().__init__()
            self.n = torch.tensor(0.)

        def state_dict(self):
            return {'n': self.n}

        def load_state_dict(self, state):
            self.n = state['n']

    saved = Counter()
    saved.n = torch.tensor(7.)
    checkpoint = {}
    saved.before_save_checkpoint(None, checkpoint)
    restored = Counter()
    restored.after_load_checkpoint(None, checkpoint)
    assert float(restored.n) == 7.0


# --------------------------------------------------------------------------- per-loss gradients
class GradProbe(BaseBalanceHook):
    """Asks for d CE(f)/d(audio encoder) and records what edit_grads receives."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def after_forward(self, ctx, outputs, data_samples):
        ce = torch.nn.functional.cross_entropy(outputs.fused_logits, data_samples['gt_label'])
        params = list(ctx.model.encoders['audio'].parameters())
        return BalanceTerms(loss_grads={'fused': LossGradRequest(ce, params)})

    def edit_grads(self, ctx):
        self.seen.append([g.clone() for g in ctx.loss_grads(self)['fused']])


def reference_grads(model, inputs, samples):
    out = model.run(inputs)
    ce = torch.nn.functional.cross_entropy(out.fused_logits, samples['gt_label'])
    return torch.autograd.grad(ce, list(model.encoders['audio'].parameters()))


def test_per_loss_gradient_equals_autograd_of_the_term():
    model = build_model()
    inputs, samples = batch()
    expected = reference_grads(copy.deepcopy(model), inputs, samples)
    hook = GradProbe()
    Stepper(model, [hook])(inputs, samples)
    for g, e in zip(hook.seen[0], expected):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-8)


def test_per_loss_gradient_under_accumulation_equals_the_large_batch():
    model = build_model()  # MLPs: no BatchNorm, so two halves equal the whole batch
    inputs, samples = batch(b=8)
    expected = reference_grads(copy.deepcopy(model), inputs, samples)
    hook = GradProbe()
    wrapper = sgd_wrapper(model, accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 2)
    stepper = Stepper(model, [hook], optim_wrapper=wrapper)
    grads = capture_step_grads(wrapper, model)
    for half in (slice(0, 4), slice(4, 8)):
        stepper({m: x[half] for m, x in inputs.items()},
                {k: v[half] for k, v in samples.items()})
    assert len(hook.seen) == 1  # one update, after the second micro-batch
    for g, e in zip(hook.seen[0], expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
    # ...and the main gradient follows the same convention
    for (name, _), e in zip(model.encoders['audio'].named_parameters(), expected):
        torch.testing.assert_close(grads[f'encoders.audio.{name}'], e, rtol=1e-5, atol=1e-7)


def test_per_loss_gradient_under_amp_has_the_scale_divided_out_once():
    model = build_model()
    inputs, samples = batch()
    wrapper = cpu_amp_wrapper(model)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        expected = reference_grads(copy.deepcopy(model), inputs, samples)
    hook = GradProbe()
    grads = capture_step_grads(wrapper, model)
    Stepper(model, [hook], optim_wrapper=wrapper)(inputs, samples)
    for (name, _), g, e in zip(model.encoders['audio'].named_parameters(), hook.seen[0],
                               expected):
        torch.testing.assert_close(g, e.float(), rtol=1e-2, atol=1e-4)
        # the main gradient is unscaled too when the edits run (and step sees it)
        torch.testing.assert_close(grads[f'encoders.audio.{name}'], e.float(), rtol=1e-2,
                                   atol=1e-4)
    assert float(wrapper.loss_scaler.get_scale()) == 1024.0  # no overflow: scale kept


# --------------------------------------------------------------------------- sub-steps, masks
class Alternating(BaseBalanceHook):
    """One optimizer step per modality on the same batch, each on its own CE via the head."""

    def plan_passes(self, ctx):
        return [PassPlan(trainable=[m], base_loss=False, name=m) for m in ctx.model.modalities]

    def after_forward(self, ctx, outputs, data_samples):
        (m, ) = outputs.modalities
        assert outputs.fused_logits is None  # only one modality encoded
        z = outputs.features[m]
        return BalanceTerms(losses={'loss_uni': z.sum() * 0 + z.pow(2).mean()})


def test_sub_steps_step_once_per_modality_and_leave_inactive_encoders_untouched():
    model = build_model()
    stepper = Stepper(model, [Alternating()], momentum=0.9, weight_decay=0.1)
    steps, grads_at = [], []
    orig = stepper.optim_wrapper.optimizer.step

    def step(*args, **kwargs):
        grads_at.append({n: p.grad is not None for n, p in model.named_parameters()})
        steps.append(1)
        return orig(*args, **kwargs)

    stepper.optim_wrapper.optimizer.step = step
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log = stepper(*batch())
    # per pass: the trained loss and the accuracy of the one modality it encoded
    assert len(steps) == 2 and set(log) == {'audio/loss', 'audio/loss_uni', 'audio/acc/audio',
                                            'visual/loss', 'visual/loss_uni',
                                            'visual/acc/visual'}
    for active, grads in zip(('audio', 'visual'), grads_at):
        for n, has in grads.items():
            expect = n.startswith(f'encoders.{active}.')
            assert has == expect, (active, n)
    # momentum and weight decay did not move the head (it never had a gradient)
    after = dict(model.named_parameters())
    assert torch.equal(after['head.fc.weight'], before['head.fc.weight'])
    assert not torch.equal(after['encoders.audio.layers.0.weight'],
                           before['encoders.audio.layers.0.weight'])


def test_sub_steps_refuse_gradient_accumulation():
    model = build_model()
    with pytest.raises(ValueError, match='accumulative_counts=2'):
        Stepper(model, [Alternating()], accumulative_counts=2)(*batch())


def test_target_only_modalities_are_detached_and_base_loss_can_be_off():
    class TargetOnly(BaseBalanceHook):
        def plan_passes(self, ctx):
            return [PassPlan(trainable=['audio'], target_only=['visual'], base_loss=False)]

        def after_forward(self, ctx, outputs, data_samples):
            assert not outputs.features['visual'].requires_grad
            fused = outputs.fused_logits  # both present: the fused logits exist
            return BalanceTerms(losses={'loss_own': torch.nn.functional.cross_entropy(
                fused, data_samples['gt_label'])})

    model = build_model()
    stepper = Stepper(model, [TargetOnly()])
    grads = capture_step_grads(stepper.optim_wrapper, model)
    log = stepper(*batch())
    assert 'loss' not in log or torch.equal(log['loss'], log['loss_own'])
    assert all(grads[n] is None for n in grads if n.startswith('encoders.visual.'))
    assert all(grads[n] is not None for n in grads if n.startswith('encoders.audio.'))
    assert grads['head.fc.weight'] is not None


def test_plain_optim_wrapper_is_what_configs_use():
    # The step drives MMEngine's own wrappers; no mmbal wrapper type exists any more.
    assert isinstance(sgd_wrapper(build_model()), OptimWrapper)
