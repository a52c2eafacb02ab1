# ARL on CREMA-D with the paper's settings: ResNet18 encoders from scratch, concat fusion,
# SGD (lr 1e-3, momentum 0.9, wd 1e-4), batch 64, 100 epochs; gamma 4, T 8 (CREMA-D's value),
# eq. 18 with audio as m0 (the first configured modality).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=6))
custom_hooks = [
    dict(type='ARLHook', gamma=4.0, temperature=8.0, coef_form='eq18'),
]
