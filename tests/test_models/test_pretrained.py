"""Local-checkpoint init of encoders (ImageNet ResNet18 for UCF101): key conversion, strict
matching, TSN's cross-modality init of the flow encoder's first conv, and refused files."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope
from torch import nn

from mmbal.models.backbones import LocalPretrained, torchvision_resnet_to_mmbal
from mmbal.registry import MODELS
from script_utils import load_script


def torchvision_resnet18_state(seed: int = 0) -> 'OrderedDict[str, torch.Tensor]':
    """Random tensors under torchvision's ResNet18 keys and shapes (no torchvision installed)."""
    g = torch.Generator().manual_seed(seed)
    state: 'OrderedDict[str, torch.Tensor]' = OrderedDict()

    def conv(name, cout, cin, k):
        state[f'{name}.weight'] = torch.randn(cout, cin, k, k, generator=g)

    def bn(name, c):
        for p in ('weight', 'bias', 'running_mean', 'running_var'):
            state[f'{name}.{p}'] = torch.rand(c, generator=g) + 0.5
        state[f'{name}.num_batches_tracked'] = torch.tensor(7)

    conv('conv1', 64, 3, 7)
    bn('bn1', 64)
    cin = 64
    for layer, cout in enumerate((64, 128, 256, 512), start=1):
        for b in (0, 1):
            pre = f'layer{layer}.{b}'
            conv(f'{pre}.conv1', cout, cin if b == 0 else cout, 3)
            bn(f'{pre}.bn1', cout)
            conv(f'{pre}.conv2', cout, cout, 3)
            bn(f'{pre}.bn2', cout)
            if b == 0 and cin != cout:
                conv(f'{pre}.downsample.0', cout, cin, 1)
                bn(f'{pre}.downsample.1', cout)
        cin = cout
    state['fc.weight'] = torch.randn(1000, 512, generator=g)
    state['fc.bias'] = torch.randn(1000, generator=g)
    return state


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """torchvision-keyed weights, converted by tools/model_converters/torchvision_resnet18.py."""
    tv = torchvision_resnet18_state()
    src = tmp_path_factory.mktemp('ckpt') / 'resnet18-torchvision.pth'
    torch.save(tv, src)
    dst = src.parent / 'resnet18_mmbal.pth'
    tool = load_script('tools/model_converters/torchvision_resnet18.py', 'torchvision_resnet18')
    assert tool.main([str(src), str(dst)]) == 0
    return tv, dst


def test_flow_encoder_loads_imagenet_weights_with_the_rgb_mean_in_its_first_conv(checkpoint):
    """Through the registry and init_weights, as a config's init_cfg: every converted tensor
    lands under its mmbal name, and the 2K = 10 input channels of the first conv each hold the
    mean of conv1's 3 RGB input channels (TSN's cross-modality init)."""
    tv, path = checkpoint
    init_default_scope('mmbal')
    model = MODELS.build(dict(type='ResNet18', in_channels=10, init_cfg=dict(
        type='LocalPretrained', checkpoint=str(path))))
    model.init_weights()
    own = model.state_dict()
    assert len(own) == len(tv) - 2  # everything but the ImageNet classifier
    assert torch.equal(own['stem.1.running_var'], tv['bn1.running_var'])
    assert torch.equal(own['stages.0.1.conv2.weight'], tv['layer1.1.conv2.weight'])
    assert torch.equal(own['stages.3.0.downsample.0.weight'], tv['layer4.0.downsample.0.weight'])
    assert torch.equal(own['stages.2.0.downsample.1.bias'], tv['layer3.0.downsample.1.bias'])
    assert own['stem.0.weight'].shape == (64, 10, 7, 7)
    mean = tv['conv1.weight'].mean(dim=1)
    for c in range(10):
        assert torch.allclose(own['stem.0.weight'][:, c], mean)


def conv_file(tmp_path, cin: int = 3, cout: int = 4):
    """A checkpoint of one ``nn.Conv2d(cin, cout, 3)``: small stand-ins for the error paths."""
    path = tmp_path / f'conv{cin}.pth'
    torch.save(nn.Conv2d(cin, cout, 3).state_dict(), path)
    return path


def test_a_three_channel_conv_is_copied_exactly_into_a_three_channel_module(tmp_path):
    path = conv_file(tmp_path)
    module = nn.Conv2d(3, 4, 3)
    LocalPretrained(str(path))(module)
    assert torch.equal(module.weight, torch.load(path)['weight'])


def test_adapting_the_input_conv_can_be_refused(tmp_path):
    with pytest.raises(ValueError, match=r'weight has shape \(4, 3, 3, 3\), the module '
                       r'expects \(4, 10, 3, 3\)'):
        LocalPretrained(str(conv_file(tmp_path)), adapt_input_conv=False)(nn.Conv2d(10, 4, 3))


def test_other_shape_differences_are_errors_not_a_partial_load(tmp_path):
    module = nn.Conv2d(3, 2, 3)
    before = module.weight.detach().clone()
    with pytest.raises(ValueError, match=r'weight has shape \(4, 3, 3, 3\), the module expects '
                       r'\(2, 3, 3, 3\)'):
        LocalPretrained(str(conv_file(tmp_path)))(module)
    assert torch.equal(module.weight, before)


def test_unconverted_torchvision_file_is_refused_with_the_converter_named(checkpoint, tmp_path):
    raw = tmp_path / 'tv.pth'
    torch.save(checkpoint[0], raw)
    module = nn.Sequential(OrderedDict(stem=nn.Sequential(nn.Conv2d(3, 64, 7))))
    with pytest.raises(ValueError, match=r"2 key\(s\) missing \(e.g. \['stem.0.weight', "
                       r"'stem.0.bias'\]\).*torchvision_resnet18.py first"):
        LocalPretrained(str(raw))(module)


def test_urls_missing_files_and_code_carrying_files_are_refused(tmp_path):
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match='is a URL; mmbal never downloads'):
        LocalPretrained('https://download.pytorch.org/models/resnet18-f37072fd.pth')(conv)
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*nope.pth' not found"):
        LocalPretrained(str(tmp_path / 'nope.pth'))(conv)
    evil = tmp_path / 'evil.pth'
    torch.save({'weight': torch.zeros(1), 'extra': Path('x')}, evil)
    with pytest.raises(ValueError, match='could not be read as a tensors-only torch file'):
        LocalPretrained(str(evil))(conv)


def test_an_unknown_key_is_not_silently_renamed():
    with pytest.raises(ValueError, match="'layer5.0.conv1.weight' is not a torchvision ResNet"):
        torchvision_resnet_to_mmbal({'layer5.0.conv1.weight': torch.zeros(1)})
