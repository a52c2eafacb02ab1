# OGM-GE on AV-Digits: eq. 10 on the conv weights of the dominant encoder, GE noise on
# both, alpha 0.8 (the reference's CREMA-D value), modulation over every epoch.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='OGMGEHook', alpha=0.8, modulation_starts=0, modulation_ends=50,
         variant='OGM_GE'),
]
