from .base_encoder import BaseEncoder, EncoderStage
from .mlp import MLPEncoder
from .pretrained import LocalPretrained, torchvision_resnet_to_mmbal
from .resnet import ResNet18

__all__ = ['BaseEncoder', 'EncoderStage', 'ResNet18', 'MLPEncoder', 'LocalPretrained',
           'torchvision_resnet_to_mmbal']
