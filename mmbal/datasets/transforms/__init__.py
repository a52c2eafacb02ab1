"""Data pipeline transforms: loading, spectrograms, frame processing and packing."""
from .formatting import PackMultimodalInputs
from .loading import LoadAudio, LoadFrames
from .processing import (AddNoiseSNR, CenterCrop, DegradeImage, Normalize, RandomCrop,
                         RandomFlip, RandomResizedCrop, Resize)
from .spectrogram import LoadAudioSpectrogram, ScipySpectrogram, Spectrogram

__all__ = [
    'LoadAudio', 'LoadFrames', 'Spectrogram', 'ScipySpectrogram', 'LoadAudioSpectrogram',
    'Resize', 'RandomResizedCrop', 'CenterCrop', 'RandomCrop', 'RandomFlip', 'Normalize',
    'DegradeImage', 'AddNoiseSNR', 'PackMultimodalInputs'
]
