# OGM-GE on AV-Digits setting (a); see ogm-ge_r18_avdigits.py for the fields.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='OGMGEHook', alpha=0.8, modulation_starts=0, modulation_ends=50,
         variant='OGM_GE'),
]
