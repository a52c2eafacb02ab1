from .base_encoder import BaseEncoder, EncoderStage
from .mlp import MLPEncoder
from .resnet import ResNet18

__all__ = ['BaseEncoder', 'EncoderStage', 'ResNet18', 'MLPEncoder']
