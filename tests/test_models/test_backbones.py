"""Encoders: output sizes, temporal pooling, width option."""
import pytest
import torch

from mmbal.models import MLPEncoder, ResNet18


def test_resnet18_spectrogram_and_width():
    net = ResNet18(in_channels=1, base_channels=16).eval()
    assert net.out_channels == 128
    assert net(torch.randn(2, 1, 129, 63)).shape == (2, 128)
    assert ResNet18(in_channels=1).out_channels == 512
    # Standard ResNet18 layout: 11.2M parameters for 3-channel input, stem to stage 4.
    n = sum(p.numel() for p in ResNet18(in_channels=3).parameters())
    assert n == 11176512


def test_resnet18_frames_are_pooled_over_time():
    torch.manual_seed(0)
    net = ResNet18(in_channels=3, base_channels=8).eval()
    frames = torch.randn(2, 3, 3, 32, 32)  # (B, C, T, H, W)
    out = net(frames)
    per_frame = torch.stack([net(frames[:, :, t]) for t in range(3)], dim=1)
    torch.testing.assert_close(out, per_frame.mean(dim=1))


def test_resnet18_rejects_wrong_channels_and_rank():
    net = ResNet18(in_channels=1, base_channels=8)
    with pytest.raises(ValueError, match='in_channels=1 but got an input with 3'):
        net(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r'got shape \(2, 32\)'):
        net(torch.randn(2, 32))


def test_mlp_encoder():
    enc = MLPEncoder(in_channels=10, out_channels=4, hidden_channels=(8,))
    assert enc(torch.randn(3, 10)).shape == (3, 4)


def test_resnet18_channels_last_keeps_the_math_and_the_layout():
    """channels_last changes the memory layout only: same outputs (to float rounding)
    and gradients from the same weights; the layout survives load_state_dict, a
    re-draw of the weights, and the activations are channels-last too."""
    torch.manual_seed(0)
    dense = ResNet18(in_channels=1, base_channels=8)
    fast = ResNet18(in_channels=1, base_channels=8, channels_last=True)
    assert not dense.stages[0][0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    fast.load_state_dict(dense.state_dict())
    convs = [m.weight for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x = torch.randn(4, 1, 33, 20)
    out_dense, out_fast = dense(x), fast(x)
    torch.testing.assert_close(out_fast, out_dense, rtol=1e-4, atol=1e-5)
    out_dense.square().sum().backward()
    out_fast.square().sum().backward()
    grad = dense.stem[0].weight.grad  # sums over the batch: rounding relative to its scale
    torch.testing.assert_close(fast.stem[0].weight.grad, grad, rtol=1e-3,
                               atol=1e-3 * grad.abs().max().item())
    stage_out = fast.forward_stages(x, upto=1)[0]
    assert stage_out.is_contiguous(memory_format=torch.channels_last)
    # frames (5-D input) fold into the batch and back in this layout as well
    frames = torch.randn(2, 1, 3, 16, 16)
    torch.testing.assert_close(fast(frames), dense(frames), rtol=1e-4, atol=1e-5)
    # a seed draws the same weights in either layout (re-draws and mmengine's init too)
    for redraw in ('init_default_weights', 'init_weights'):
        for model in (dense, fast):
            torch.manual_seed(1)
            getattr(model, redraw)()
        for (name, a), b in zip(dense.state_dict().items(), fast.state_dict().values()):
            assert torch.equal(a, b), (redraw, name)
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    # mmengine's init_cfg initialisers draw after the defaults, in the default layout too
    kaiming = dict(type='Kaiming', layer='Conv2d')
    with_cfg = [ResNet18(in_channels=1, base_channels=8, channels_last=cl, init_cfg=kaiming)
                for cl in (False, True)]
    for model in with_cfg:
        torch.manual_seed(3)
        model.init_weights()
    for (name, a), b in zip(with_cfg[0].state_dict().items(), with_cfg[1].state_dict().values()):
        assert torch.equal(a, b), ('init_cfg', name)
    torch.manual_seed(2)
    built = ResNet18(in_channels=1, base_channels=8, channels_last=True)
    torch.manual_seed(2)
    fast.init_default_weights()
    for (name, a), b in zip(built.state_dict().items(), fast.state_dict().values()):
        assert torch.equal(a, b), name
