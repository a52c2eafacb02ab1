#!/usr/bin/env python
"""Convert torchvision's ImageNet ResNet18 weights to mmbal's ResNet18 keys.

Get the weights file yourself (mmbal never downloads), e.g. torchvision's
``resnet18-f37072fd.pth`` (``ResNet18_Weights.IMAGENET1K_V1``, listed in
torchvision's model documentation), then::

    python tools/model_converters/torchvision_resnet18.py resnet18-f37072fd.pth \
        checkpoints/resnet18_imagenet_mmbal.pth

and point an encoder's ``init_cfg=dict(type='LocalPretrained', checkpoint=...)`` at the
output. The ImageNet classifier (``fc``) is dropped; the file is read with
``torch.load(weights_only=True)``.
"""
import argparse
import os
import sys

import torch

from mmbal.models.backbones.pretrained import load_state_dict_file, torchvision_resnet_to_mmbal


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help="torchvision ResNet18 state dict (.pth)")
    parser.add_argument('dst', help='output .pth with mmbal ResNet18 keys')
    args = parser.parse_args(argv)
    state = torchvision_resnet_to_mmbal(load_state_dict_file(args.src))
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    torch.save(state, args.dst)
    print(f'wrote {len(state)} tensors to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
