"""Data structures that travel from the loader to the model."""
from .padded_sequence import PaddedSequence, pad_sequences, sequence_collate
from .step_features import join_steps, key_padding, masked_mean, split_steps, to_steps

__all__ = ['PaddedSequence', 'pad_sequences', 'sequence_collate', 'join_steps', 'key_padding',
           'masked_mean', 'split_steps', 'to_steps']
