"""Data pipeline transforms: loading, spectrograms, frame processing and packing."""
from .array import ScaleArray
from .audio_crop import CropAudio
from .formatting import PackMultimodalInputs
from .image import LoadModalityImage
from .loading import LoadAudio, LoadFrames
from .processing import (AddNoiseSNR, CenterCrop, DegradeImage, Normalize, RandomCrop,
                         RandomFlip, RandomResizedCrop, Resize)
from .spectrogram import LoadAudioSpectrogram, ScipySpectrogram, Spectrogram

__all__ = [
    'LoadAudio', 'LoadFrames', 'Spectrogram', 'ScipySpectrogram', 'LoadAudioSpectrogram',
    'Resize', 'RandomResizedCrop', 'CenterCrop', 'RandomCrop', 'RandomFlip', 'Normalize',
    'DegradeImage', 'AddNoiseSNR', 'PackMultimodalInputs', 'CropAudio', 'LoadModalityImage',
    'ScaleArray'
]
