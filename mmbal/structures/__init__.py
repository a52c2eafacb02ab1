"""Data structures that travel from the loader to the model."""
from .padded_sequence import PaddedSequence, pad_sequences, sequence_collate

__all__ = ['PaddedSequence', 'pad_sequences', 'sequence_collate']
