"""Data pipeline transforms: loading, spectrograms, frame processing and packing.

Each declares ``is_random`` (:mod:`.base`); :mod:`.randomness` reads the declarations.
"""
from .array import ScaleArray
from .audio_crop import CropAudio
from .base import MMBalTransform
from .formatting import PackMultimodalInputs
from .image import LoadModalityImage
from .loading import LoadAudio, LoadFrames
from .processing import (AddNoiseSNR, CenterCrop, DegradeImage, Normalize, RandomCrop,
                         RandomFlip, RandomResizedCrop, Resize)
from .randomness import deterministic_prefix, is_random_transform, random_steps
from .spectrogram import LoadAudioSpectrogram, ScipySpectrogram, Spectrogram
from .stacked_frames import LoadStackedFrames

__all__ = [
    'LoadAudio', 'LoadFrames', 'Spectrogram', 'ScipySpectrogram', 'LoadAudioSpectrogram',
    'Resize', 'RandomResizedCrop', 'CenterCrop', 'RandomCrop', 'RandomFlip', 'Normalize',
    'DegradeImage', 'AddNoiseSNR', 'PackMultimodalInputs', 'CropAudio', 'LoadModalityImage',
    'ScaleArray', 'MMBalTransform', 'is_random_transform', 'random_steps',
    'deterministic_prefix', 'LoadStackedFrames'
]
