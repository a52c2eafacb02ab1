"""The gradient gate, the hook call points and BalanceOptimWrapper."""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper

from mmbal.engine import BalanceOptimWrapper, BaseBalanceHook
from mmbal.models.utils import GradientGate
from mmbal.registry import MODELS


def build_model(seed=0):
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4,
                                 hidden_channels=(5, )),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=3)),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=3)))


def batch(b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return ({'audio': torch.randn(b, 3, generator=g), 'visual': torch.randn(b, 2, generator=g)},
            {'gt_label': torch.randint(0, 3, (b, ), generator=g)})


class ScaleHook(BaseBalanceHook):
    """Sets fixed gate coefficients (a stand-in for a method)."""

    def __init__(self, coefs):
        super().__init__()
        self.coefs = coefs

    def after_forward(self, model, outputs, data_samples):
        for m, c in self.coefs.items():
            model.gates[m].scale(c)


def sgd_steps(model, steps=3, hooks=(), momentum=0.0, wrapper_cls=OptimWrapper, **wrapper_kw):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    wrapper = wrapper_cls(optimizer=opt, **wrapper_kw)
    for hook in hooks:
        model.register_balance_hook(hook)
        hook.model = model
        if hook.edits_param_grads:
            wrapper.register_balance_hook(hook)
    for i in range(steps):
        inputs, samples = batch(seed=i)
        wrapper.update_params(model(inputs, samples, mode='loss')['loss'])
    return model


def params(model, prefix):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefix)}


def test_gate_is_identity_forward_and_scales_backward():
    gate = GradientGate()
    x = torch.randn(4, 3, requires_grad=True)
    y = gate(x)
    assert torch.equal(y, x)
    gate.scale(2.0)
    gate.scale(torch.tensor([1., 2., 3., 4.]))  # stacked hooks multiply
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([2., 4., 6., 8.]).view(4, 1).expand(4, 3))


def test_gate_noise_is_reproducible_and_reset_clears_it():
    grads = []
    for _ in range(2):
        gate = GradientGate()
        x = torch.zeros(3, 5, requires_grad=True)
        y = gate(x)
        gate.add_noise(0.5, seed=7)
        y.sum().backward()
        grads.append(x.grad.clone())
    assert torch.equal(grads[0], grads[1])
    assert not torch.equal(grads[0], torch.ones(3, 5))
    gate.reset()
    assert gate.coefficient is None and gate.noise_std is None


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


class RecordingHook(BaseBalanceHook):
    """Multiplies every gradient by 100 after backward and records when it ran."""

    edits_param_grads = True

    def __init__(self):
        super().__init__()
        self.calls = 0

    def after_backward(self, model):
        self.calls += 1
        for p in model.parameters():
            if p.grad is not None:
                p.grad.mul_(100)


def test_gradient_edits_run_before_clipping_and_once_per_update():
    hook = RecordingHook()
    model = build_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    wrapper = BalanceOptimWrapper(optimizer=opt, clip_grad=dict(max_norm=1.0),
                                  accumulative_counts=2)
    wrapper.register_balance_hook(hook)
    hook.model = model
    norms = []
    orig_step = opt.step

    def step(*args, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norms.append(torch.norm(torch.stack([g.norm() for g in grads])).item())
        return orig_step(*args, **kwargs)

    opt.step = step
    wrapper.initialize_count_status(model, 0, 4)
    for i in range(4):
        inputs, samples = batch(seed=i)
        wrapper.update_params(model(inputs, samples, mode='loss')['loss'])
    assert hook.calls == 2  # once per accumulated update
    assert norms == pytest.approx([1.0, 1.0], rel=1e-5)  # clipped after the x100 edit


def test_hook_that_edits_gradients_needs_the_balance_wrapper():
    class Runner:
        model = build_model()
        optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))

    with pytest.raises(TypeError, match="optim_wrapper.type='BalanceOptimWrapper'"):
        RecordingHook().before_run(Runner())


def test_extra_loss_terms_are_added_and_logged_values_kept_apart():
    class ExtraLoss(BaseBalanceHook):
        def after_forward(self, model, outputs, data_samples):
            return {'loss_extra': outputs.features['audio'].pow(2).mean(),
                    'extra_stat': torch.tensor(3.0)}

    model = build_model()
    model.register_balance_hook(ExtraLoss())
    inputs, samples = batch()
    losses = model(inputs, samples, mode='loss')
    total, log_vars = model.parse_losses(losses)
    torch.testing.assert_close(total, losses['loss'] + losses['loss_extra'])
    assert log_vars['extra_stat'] == 3.0
