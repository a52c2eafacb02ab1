# OGM-GE on CREMA-D with the reference settings: alpha 0.8, modulation in epochs 0..50
# (inclusive), SGD (lr 1e-3, momentum 0.9, wd 1e-4), StepLR(70, 0.1), 100 epochs, batch 64.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=6))
custom_hooks = [
    dict(type='OGMGEHook', alpha=0.8, modulation_starts=0, modulation_ends=50,
         variant='OGM_GE'),
]
