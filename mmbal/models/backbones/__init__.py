from .base_encoder import BaseEncoder, EncoderStage
from .conv1d import Conv1dEncoder
from .mean_pool_mlp import MeanPoolMLPEncoder
from .mlp import MLPEncoder
from .pretrained import LocalPretrained, torchvision_resnet_to_mmbal
from .recurrent import GRUEncoder, LSTMEncoder
from .resnet import ResNet18
from .sequence_encoder import SequenceEncoder
from .transformer import TransformerEncoder

__all__ = ['BaseEncoder', 'EncoderStage', 'ResNet18', 'MLPEncoder', 'SequenceEncoder',
           'TransformerEncoder', 'GRUEncoder', 'LSTMEncoder', 'Conv1dEncoder',
           'MeanPoolMLPEncoder', 'LocalPretrained', 'torchvision_resnet_to_mmbal']
