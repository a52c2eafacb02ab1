# AGM on AV-Digits setting (a) (audio better alone, visual faster); see agm_r18_avdigits.py.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='AGMHook', alpha=1.5, clamp=10.0, clip_threshold=1.0, clip_max_norm=1.0),
]
