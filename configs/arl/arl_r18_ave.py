# ARL on AVE with the paper's settings (see arl_r18_crema.py); T 4.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=28))
custom_hooks = [
    dict(type='ARLHook', gamma=4.0, temperature=4.0, coef_form='eq18'),
]
