"""Preprocessing of the real audio-visual datasets (behind ``tools/data/*/preprocess.py``).

Per clip: video -> jpg frames at a fixed rate, audio -> mono PCM16 wav (UCF101:
every frame plus optical flow), in parallel and resumably; broken inputs are
listed (end of run and manifest) instead of stopping the run. See ``docs/datasets.md``.
"""
from .ave import preprocess_ave
from .common import RunOptions, add_common_arguments, exit_status, options_from_args
from .crema_d import preprocess_crema_d
from .kinetics_sounds import preprocess_kinetics_sounds
from .media import BrokenInputError, ClipJob, FrameSpec, process_clip
from .runner import RunResult, fill_spectrogram_cache, run_clips
from .splits import carve_validation, split_groups
from .ucf101 import preprocess_ucf101, write_official_splits
from .vggsound import preprocess_vggsound

__all__ = [
    'preprocess_crema_d', 'preprocess_ave', 'preprocess_kinetics_sounds', 'preprocess_vggsound',
    'RunOptions', 'add_common_arguments', 'options_from_args', 'exit_status',
    'BrokenInputError', 'ClipJob', 'FrameSpec', 'process_clip', 'RunResult', 'run_clips',
    'fill_spectrogram_cache', 'carve_validation', 'split_groups', 'preprocess_ucf101',
    'write_official_splits'
]
