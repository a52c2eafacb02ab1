# AGM on CREMA-D: the official code's CREMA-D rules (clamp 10 on r* - r; clip every gradient to
# norm 1 when a classifier weight-gradient element leaves [-1, 1]) with the maintainer's
# alpha 1.5 and the window over the whole run. Schedule: the protocol of the published
# comparison rows (PDMP's and ARL's re-runs): ResNet18 from scratch, concat fusion, SGD
# (lr 1e-3, momentum 0.9, wd 1e-4), batch 64, 100 epochs, StepLR(70, 0.1). The maintainer's
# own runs are much longer (1500 epochs; docs/methods/agm.md).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=6))
custom_hooks = [
    dict(type='AGMHook', alpha=1.5, clamp=10.0, clip_threshold=1.0, clip_max_norm=1.0),
]
