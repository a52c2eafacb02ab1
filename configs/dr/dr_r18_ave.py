# D&R on AVE. The paper does not use AVE and the official code has no settings for it: the
# CREMA-D ones (dr_r18_crema.py), ours.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_90e_dr.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=28))
custom_hooks = [
    dict(type='DRHook', interval=20, max_reinits=3, move_lambda=3.0),
]
