"""Initialise an encoder from a local checkpoint (e.g. ImageNet weights); mmbal never downloads.

Use it as an encoder's ``init_cfg``::

    dict(type='ResNet18', in_channels=10,
         init_cfg=dict(type='LocalPretrained', checkpoint='checkpoints/resnet18_imagenet.pth'))

The file must hold the encoder's own state-dict keys (``stem.0.weight``,
``stages.0.0.conv1.weight``, ...); :func:`torchvision_resnet_to_mmbal` (behind
``tools/model_converters/torchvision_resnet18.py``) renames torchvision's. Every
key must match, in name and shape, so a wrong file is an error, never a
partial load. One exception, the cross-modality init of TSN (Wang et al., 2016):
a convolution whose checkpoint weight has 3 input channels and the encoder's has
C != 3 (a 2K-channel flow stack, a 1-channel spectrogram) gets the RGB weights
averaged over the input channels and repeated C times. Loading uses
``torch.load(weights_only=True)``: no code in the file runs.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Mapping

import torch
from mmengine.logging import print_log
from torch import nn

from mmbal.registry import WEIGHT_INITIALIZERS

CONVERTER = 'tools/model_converters/torchvision_resnet18.py'


def load_state_dict_file(path: str) -> 'OrderedDict[str, torch.Tensor]':
    """Tensors of a local checkpoint (a state dict, or a dict with ``'state_dict'``)."""
    if re.match(r'^[a-z][a-z0-9+.-]*://', path):
        raise ValueError(f'checkpoint {path!r} is a URL; mmbal never downloads: fetch the file '
                         'yourself and give its local path (docs/datasets.md, UCF101)')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} not found: expected a local .pth file '
                                f'with the encoder\'s keys (convert torchvision weights with '
                                f'{CONVERTER})')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:
        raise ValueError(f'checkpoint {path!r} could not be read as a tensors-only torch file '
                         f'({type(err).__name__}: {err})') from err
    if isinstance(obj, Mapping) and isinstance(obj.get('state_dict'), Mapping):
        obj = obj['state_dict']
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor)
                                               for v in obj.values()):
        raise ValueError(f'checkpoint {path!r} is not a state dict of tensors')
    return OrderedDict(obj)


def adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """TSN's cross-modality init: the mean over input channels, repeated ``channels`` times."""
    return weight.mean(dim=1, keepdim=True).repeat(1, channels, *([1] * (weight.dim() - 2)))


@WEIGHT_INITIALIZERS.register_module()
class LocalPretrained:
    """Load ``checkpoint`` into the module, all keys matched (see the module docstring).

    Args:
        checkpoint: Local path of the state-dict file.
        adapt_input_conv: Apply the cross-modality init to 3-channel convolutions
            the module has with another input width; False makes them an error.
    """

    def __init__(self, checkpoint: str, adapt_input_conv: bool = True) -> None:
        self.checkpoint = checkpoint
        self.adapt_input_conv = adapt_input_conv
        self.wholemodule = False  # set by mmengine's initialize

    def __call__(self, module: nn.Module) -> None:
        state = load_state_dict_file(self.checkpoint)
        own = module.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise ValueError(
                f'checkpoint {self.checkpoint!r} does not fit {type(module).__name__}: '
                f'{len(missing)} key(s) missing (e.g. {missing[:3]}), {len(unexpected)} '
                f'unexpected (e.g. {unexpected[:3]}); torchvision ResNet weights need '
                f'{CONVERTER} first')
        adapted = []
        for key, target in own.items():
            value = state[key]
            if value.shape == target.shape:
                continue
            fits = (self.adapt_input_conv and value.dim() == 4 and value.shape[1] == 3
                    and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:])
            if not fits:
                raise ValueError(f'checkpoint {self.checkpoint!r}: {key} has shape '
                                 f'{tuple(value.shape)}, the module expects '
                                 f'{tuple(target.shape)}')
            state[key] = adapt_input_channels(value, target.shape[1])
            adapted.append(key)
        module.load_state_dict(state, strict=True)
        note = f'; cross-modality init (RGB mean) of {adapted}' if adapted else ''
        print_log(f'{type(module).__name__}: loaded {len(own)} tensors from '
                  f'{self.checkpoint}{note}', logger='current')


def torchvision_resnet_to_mmbal(state: Mapping[str, torch.Tensor]
                                ) -> 'OrderedDict[str, torch.Tensor]':
    """torchvision ResNet18 keys -> :class:`~mmbal.models.backbones.ResNet18` keys.

    ``conv1``/``bn1`` -> ``stem.0``/``stem.1``, ``layerN.`` -> ``stages.{N-1}.``
    (blocks and their ``downsample.0/1`` keep their names); the ImageNet classifier
    ``fc.*`` is dropped. Any other key is an error.
    """
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for key, value in state.items():
        if key.startswith('fc.'):
            continue
        m = re.match(r'^layer([1-4])\.(.+)$', key)
        if m:
            out[f'stages.{int(m.group(1)) - 1}.{m.group(2)}'] = value
        elif key.startswith('conv1.'):
            out['stem.0.' + key[len('conv1.'):]] = value
        elif key.startswith('bn1.'):
            out['stem.1.' + key[len('bn1.'):]] = value
        else:
            raise ValueError(f'{key!r} is not a torchvision ResNet key (conv1, bn1, layer1-4, fc)')
    return out


__all__ = ['LocalPretrained', 'load_state_dict_file', 'adapt_input_channels',
           'torchvision_resnet_to_mmbal']
