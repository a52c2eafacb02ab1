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
