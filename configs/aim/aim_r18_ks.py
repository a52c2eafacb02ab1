# AIM on Kinetics-Sounds with the paper's settings (see aim_r18_crema.py); switch_epoch 50 is
# ours. num_classes 31 matches OGM-GE's lists (the dataset checks it against the classes it
# reads).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/kinetics-sounds.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=31))
custom_hooks = [
    dict(type='AIMHook', switch_epoch=50),
]
