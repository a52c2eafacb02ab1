# AIM on CREMA-D with the paper's settings: ResNet18 encoders from scratch, concat fusion,
# SGD (lr 1e-3, momentum 0.9; wd 1e-4 as every row of the shared protocol), batch 64,
# 100 epochs (sgd_100e.py, StepLR(70, 0.1)). switch_epoch 50 is ours (the paper gives no
# value): half of the 100 epochs. The prototypes and modules use Adam(lr 1e-3) (ours; see
# docs/methods/aim.md).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=6))
custom_hooks = [
    dict(type='AIMHook', switch_epoch=50),
]
