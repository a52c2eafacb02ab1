"""AIM (Shen, Chen, Zhang): depth-adaptive prototypes, parameter- and depth-adaptive modulation."""
from .decoupling import (LATENT, BlockParams, DecouplingModule, cloned_buffers, map_size,
                         pam_terms)
from .maps import MAPS, DenseMap, KroneckerMap, build_map
from .prototypes import (ChannelDecoder, DepthAdaptivePrototypes, class_mean_inputs,
                         frozen_logits)
from .scores import (block_loss, block_score, block_weights, carried_logits, depth_coefficient,
                     depth_loss, frozen_share, modulation_loss, prototype_logits)

__all__ = ['LATENT', 'BlockParams', 'DecouplingModule', 'cloned_buffers', 'map_size', 'pam_terms',
           'MAPS', 'DenseMap', 'KroneckerMap', 'build_map',
           'ChannelDecoder', 'DepthAdaptivePrototypes', 'class_mean_inputs', 'frozen_logits',
           'block_loss', 'block_score', 'block_weights', 'carried_logits', 'depth_coefficient',
           'depth_loss', 'frozen_share', 'modulation_loss', 'prototype_logits']
