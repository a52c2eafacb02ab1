# PMR on AV-Digits setting (a); see pmr_r18_avdigits.py for the fields.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='PMRHook', per_epochs=7, alpha=1.0, mu=1e-2, momentum=0.2, subset=0.1),
]
