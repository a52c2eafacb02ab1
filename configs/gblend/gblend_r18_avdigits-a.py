# G-Blending on AV-Digits setting (a) (audio better alone, visual faster); see
# gblend_r18_avdigits.py.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='GBlendHook', mode='online', super_epoch=5),
]
