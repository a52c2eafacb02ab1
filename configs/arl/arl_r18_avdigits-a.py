# ARL on AV-Digits setting (a) (noisy images); see arl_r18_avdigits.py for the fields.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='ARLHook', gamma=4.0, temperature=4.0, coef_form='eq18'),
]
