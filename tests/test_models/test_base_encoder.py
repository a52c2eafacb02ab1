"""BaseEncoder interface: per-stage features, stage views and parameters, re-init."""
import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from mmbal.balance import encoder_conv_weights
from mmbal.models import BaseEncoder, MLPEncoder, MultimodalClassifier, ResNet18


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def old_resnet18_forward(net: ResNet18, x: torch.Tensor) -> torch.Tensor:
    """The ResNet18 forward before BaseEncoder (commit fe54a46), as the oracle."""
    def trunk(z):
        z = net.stem(z)
        for stage in net.stages:
            z = stage(z)
        return z.mean(dim=(2, 3))

    if x.dim() == 5:
        b, c, t, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * t, c, h, w)
        return trunk(x).view(b, t, -1).mean(dim=1)
    return trunk(x)


def old_mlp_forward(enc: MLPEncoder, x: torch.Tensor) -> torch.Tensor:
    return enc.layers(x.flatten(1))


def resnet(**kwargs) -> ResNet18:
    torch.manual_seed(0)
    kwargs.setdefault('in_channels', 3)
    kwargs.setdefault('base_channels', 4)
    return ResNet18(**kwargs).eval()


def mlp(dropout: float = 0.0) -> MLPEncoder:
    torch.manual_seed(0)
    return MLPEncoder(in_channels=6, out_channels=3, hidden_channels=(8, 5),
                      dropout=dropout).eval()


def encoders_and_inputs():
    """(encoder, raw input) pairs covering ResNet18 4-D/5-D and MLP with/without dropout."""
    g = torch.Generator().manual_seed(1)
    return [
        (resnet(in_channels=1), torch.randn(2, 1, 33, 29, generator=g)),
        (resnet(), torch.randn(2, 3, 3, 32, 32, generator=g)),
        (mlp(), torch.randn(4, 6, generator=g)),
        (mlp(dropout=0.3), torch.randn(4, 2, 3, generator=g)),
    ]


IDS = ['resnet4d', 'resnet5d', 'mlp', 'mlp_dropout']


# ---------------------------------------------------------------- shapes


def test_resnet18_stage_shapes_4d_and_5d():
    net = resnet()
    assert isinstance(net, BaseEncoder) and net.num_stages == 4
    outs = net.forward_stages(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [
        (2, 4, 8, 8), (2, 8, 4, 4), (2, 16, 2, 2), (2, 32, 1, 1)]
    outs = net.forward_stages(torch.randn(2, 3, 5, 32, 32))  # (B, C, T, H, W)
    assert [tuple(o.shape) for o in outs] == [
        (2, 5, 4, 8, 8), (2, 5, 8, 4, 4), (2, 5, 16, 2, 2), (2, 5, 32, 1, 1)]
    # Odd sizes round up (stride-2 convs with padding).
    outs = resnet(in_channels=1).forward_stages(torch.randn(1, 1, 33, 29))
    assert [tuple(o.shape[2:]) for o in outs] == [(9, 8), (5, 4), (3, 2), (2, 1)]
    assert len(net.forward_stages(torch.randn(1, 3, 32, 32), upto=2)) == 2
    assert net.forward_stages(torch.randn(1, 3, 32, 32), upto=0) == []
    with pytest.raises(ValueError, match='upto=5'):
        net.forward_stages(torch.randn(1, 3, 32, 32), upto=5)


def test_resnet18_frames_of_a_sample_stay_together():
    """Row b of a 5-D stage output is sample b's frames, in frame order."""
    net = resnet()
    frames = torch.randn(2, 3, 3, 32, 32)
    outs = net.forward_stages(frames)
    for t in range(3):
        single = net.forward_stages(frames[:, :, t])
        for o, s in zip(outs, single):
            torch.testing.assert_close(o[:, t], s)


def test_mlp_stage_shapes():
    enc = mlp(dropout=0.3)
    assert enc.num_stages == 3
    outs = enc.forward_stages(torch.randn(4, 6))
    assert [tuple(o.shape) for o in outs] == [(4, 8), (4, 5), (4, 3)]
    # Each hidden stage is Linear + ReLU + Dropout; the last is the output Linear.
    kinds = [[type(m) for m in s] for s in enc.stage_members()]
    assert kinds == [[nn.Linear, nn.ReLU, nn.Dropout]] * 2 + [[nn.Linear]]
    assert MLPEncoder(in_channels=6, out_channels=3).num_stages == 1


# ------------------------------------------------------ forward identities


@pytest.mark.parametrize('case', range(4), ids=IDS)
def test_forward_is_bit_identical_to_the_old_forward(case):
    enc, x = encoders_and_inputs()[case]
    old = old_resnet18_forward if isinstance(enc, ResNet18) else old_mlp_forward
    assert torch.equal(enc(x), old(enc, x))
    assert torch.equal(enc(x), enc.pool(enc.forward_stages(x)[-1]))
    assert enc(x).shape == (x.shape[0], enc.out_channels)


def test_forward_is_bit_identical_in_train_mode_with_gradients():
    for enc, x in encoders_and_inputs()[:3]:
        enc.train()
        twin = copy.deepcopy(enc)  # same weights and BN statistics before the pass
        new = enc(x)
        old = (old_resnet18_forward if isinstance(enc, ResNet18) else old_mlp_forward)(twin, x)
        assert torch.equal(new, old)
        g_new = torch.autograd.grad(new.sum(), list(enc.parameters()))
        g_old = torch.autograd.grad(old.sum(), list(twin.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(g_new, g_old))
        assert all(torch.equal(a, b) for a, b in zip(enc.buffers(), twin.buffers()))


@pytest.mark.parametrize('case', range(4), ids=IDS)
def test_run_stage_chained_equals_forward_stages(case):
    enc, x = encoders_and_inputs()[case]
    outs = enc.forward_stages(x)
    h = enc.prepare(x)
    for i in range(enc.num_stages):
        h = enc.run_stage(i, h)
        assert torch.equal(h, outs[i])


def test_old_input_errors_are_kept():
    net = ResNet18(in_channels=1, base_channels=4)
    with pytest.raises(ValueError, match='in_channels=1 but got an input with 3'):
        net.forward_stages(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match='in_channels=1 but got an input with 3'):
        net(torch.randn(1, 3, 2, 32, 32))
    with pytest.raises(ValueError, match=r'got shape \(2, 32\)'):
        net.run_stage(0, net.prepare(torch.randn(2, 32)))
    with pytest.raises(IndexError, match='4 stages, asked for 4'):
        net.stage_module(4)


# ---------------------------------------------------- stage parameters


@pytest.mark.parametrize('case', range(4), ids=IDS)
def test_stage_parameters_partition_the_parameters(case):
    enc, _ = encoders_and_inputs()[case]
    all_params = dict(enc.named_parameters())
    seen = []
    for i in range(enc.num_stages):
        for name, p in enc.stage_parameters(i):
            assert all_params[name] is p  # the encoder's name for that very parameter
            seen.append(name)
    assert sorted(seen) == sorted(all_params) and len(seen) == len(set(seen))
    # Buffers (BN running statistics) are partitioned the same way.
    bufs = [n for i in range(enc.num_stages) for n, _ in enc.stage_module(i).named_buffers()]
    assert sorted(bufs) == sorted(n for n, _ in enc.named_buffers())


def test_resnet18_stem_is_in_stage_0():
    net = resnet()
    names = [[n for n, _ in net.stage_parameters(i)] for i in range(4)]
    stem = [n for n, _ in net.stem.named_parameters(prefix='stem')]
    assert names[0][:len(stem)] == stem
    for i in range(4):
        own = [n for n, _ in net.stages[i].named_parameters(prefix=f'stages.{i}')]
        assert names[i] == (stem + own if i == 0 else own)


def test_conv_weights_are_the_4d_conv_weights():
    net = resnet()
    assert ([n for n, _ in net.named_conv_weights()]
            == [n for n, _ in encoder_conv_weights(net)])
    assert len(list(net.named_conv_weights())) == 1 + 16 + 3  # stem, 8 blocks x 2, 3 projections
    assert list(mlp().named_conv_weights()) == []


def expected_resnet18_keys():
    """state_dict keys of the ResNet18 layout, written out without the model."""
    bn = ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    keys = ['stem.0.weight'] + [f'stem.1.{k}' for k in bn]
    for i in range(4):
        for j in range(2):
            p = f'stages.{i}.{j}'
            keys += [f'{p}.conv1.weight'] + [f'{p}.bn1.{k}' for k in bn]
            keys += [f'{p}.conv2.weight'] + [f'{p}.bn2.{k}' for k in bn]
            if i > 0 and j == 0:
                keys += [f'{p}.downsample.0.weight'] + [f'{p}.downsample.1.{k}' for k in bn]
    return keys


def test_state_dict_keys_are_unchanged():
    assert list(resnet().state_dict()) == expected_resnet18_keys()
    assert list(mlp().state_dict()) == ['layers.0.weight', 'layers.0.bias', 'layers.2.weight',
                                        'layers.2.bias', 'layers.4.weight', 'layers.4.bias']
    assert list(mlp(dropout=0.3).state_dict()) == [
        'layers.0.weight', 'layers.0.bias', 'layers.3.weight', 'layers.3.bias',
        'layers.6.weight', 'layers.6.bias']
    # The stage views are not registered: module tree and parameter count as before.
    assert [n for n, _ in resnet().named_children()] == ['stem', 'stages']
    n = sum(p.numel() for p in ResNet18(in_channels=3).parameters())
    assert n == 11176512


def test_a_stage_view_restores_a_stage_from_an_encoder_snapshot():
    """The D&R use: reset stage i (parameters and BN statistics) from an init snapshot."""
    net = resnet().train()
    snapshot = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net(torch.randn(2, 3, 32, 32))  # moves the running statistics
    stage = net.stage_module(2)
    stage.load_state_dict({k: snapshot[k] for k in stage.state_dict()})
    after = net.state_dict()
    stage_keys = set(stage.state_dict())
    for k, v in after.items():
        assert torch.equal(v, snapshot[k]) == (k in stage_keys), k


# ------------------------------------------------- functional stage runs


@pytest.mark.parametrize('case', range(4), ids=IDS)
def test_functional_call_on_stage_parameters_reproduces_run_stage(case):
    """The AIM use: run one stage on its own parameters through torch.func."""
    enc, x = encoders_and_inputs()[case]
    outs = [enc.prepare(x)] + enc.forward_stages(x)
    for i in range(enc.num_stages):
        params = {n: p.detach().clone().requires_grad_() for n, p in enc.stage_parameters(i)}
        z, fold = enc.to_module_layout(outs[i])
        direct = functional_call(enc.stage_module(i), params, (z,))
        assert torch.equal(enc.from_module_layout(direct, fold), outs[i + 1])
        assert torch.equal(enc.run_stage(i, outs[i], params=params), outs[i + 1])
        # The gradient goes to the tensors passed, not to the encoder's own parameters.
        enc.run_stage(i, outs[i].detach(), params=params).sum().backward()
        assert all(p.grad is not None for p in params.values())
        assert all(p.grad is None for p in enc.parameters())


def test_run_stage_with_other_params_equals_an_encoder_holding_them():
    net = resnet()
    x = torch.randn(2, 3, 2, 32, 32)
    h = net.forward_stages(x)[0]
    params = {n: p.detach() * 1.5 for n, p in net.stage_parameters(1)}
    other = copy.deepcopy(net)
    other.load_state_dict(params, strict=False)
    expected = other.run_stage(1, h)
    assert torch.equal(net.run_stage(1, h, params=params), expected)
    assert not torch.equal(net.run_stage(1, h), expected)
    with pytest.raises(KeyError, match=r"stage 1 has no tensors named \['stem.0.weight'\]"):
        net.run_stage(1, h, params={'stem.0.weight': net.stem[0].weight})


# ------------------------------------------------------------------- init


def perturb(enc: nn.Module) -> None:
    with torch.no_grad():
        for p in enc.parameters():
            p.fill_(0.37)
        for b in enc.buffers():
            b.fill_(3)


def test_resnet18_init_weights_restores_the_init_distribution():
    net = ResNet18(in_channels=3, base_channels=8)
    perturb(net)
    torch.manual_seed(3)
    net.init_weights()
    ratios = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            ratios.append((m.weight / math.sqrt(2.0 / fan_out)).flatten())
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
            assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))
            assert m.num_batches_tracked.item() == 0
    ratios = torch.cat(ratios)  # ~ N(0, 1) pooled over 175k weights
    assert abs(ratios.mean().item()) < 0.02 and abs(ratios.std().item() - 1) < 0.02


@pytest.mark.parametrize('make', [
    lambda: ResNet18(in_channels=3, base_channels=4),
    lambda: ResNet18(in_channels=1, base_channels=4, zero_init_residual=True),
    lambda: MLPEncoder(in_channels=6, out_channels=3, hidden_channels=(8, 5), dropout=0.1),
], ids=['resnet', 'resnet_zero_res', 'mlp'])
def test_init_weights_from_a_seed_equals_a_fresh_construction(make):
    torch.manual_seed(5)
    fresh = make()
    enc = make()
    perturb(enc)
    torch.manual_seed(5)
    enc.init_weights()
    for (k, a), b in zip(fresh.state_dict().items(), enc.state_dict().values()):
        assert torch.equal(a, b), k


def test_init_weights_reinitialises_on_every_call():
    enc = ResNet18(in_channels=1, base_channels=4)
    for seed in (0, 1):
        perturb(enc)
        torch.manual_seed(seed)
        enc.init_weights()
        assert enc.is_init
        torch.manual_seed(seed)
        fresh = ResNet18(in_channels=1, base_channels=4)
        assert torch.equal(enc.stem[0].weight, fresh.stem[0].weight)


def test_init_weights_with_init_cfg_applies_it_on_top_of_the_defaults():
    net = ResNet18(in_channels=1, base_channels=4,
                   init_cfg=dict(type='Constant', layer='Conv2d', val=0.5))
    for _ in range(2):  # twice: both calls apply it
        perturb(net)
        net.init_weights()
        assert all(torch.all(m.weight == 0.5) for m in net.modules() if isinstance(m, nn.Conv2d))
        bn = net.stages[3][1].bn2
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)  # defaults under init_cfg
        assert torch.all(bn.running_var == 1)
    enc = MLPEncoder(in_channels=6, out_channels=3, hidden_channels=(8,),
                     init_cfg=dict(type='Constant', layer='Linear', val=0.25, bias=0.0))
    perturb(enc)
    enc.init_weights()
    assert all(torch.all(p == (0.25 if p.dim() == 2 else 0.0)) for p in enc.parameters())


def test_classifier_init_weights_reaches_the_encoders():
    model = MultimodalClassifier(
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=4, out_channels=3,
                                 init_cfg=dict(type='Constant', layer='Linear', val=0.5))),
        fusion=dict(type='ConcatFusion'), head=dict(type='LinearClsHead', num_classes=2))
    model.init_weights()
    assert torch.all(model.encoders['audio'].layers[0].weight == 0.5)
