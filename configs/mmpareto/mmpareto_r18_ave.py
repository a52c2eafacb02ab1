# MMPareto on AVE. The official code has no AVE settings; these are the protocol of the only
# published AVE numbers (PDMP's and ARL's re-runs): ResNet18 from scratch, concat fusion, SGD
# (lr 1e-3, momentum 0.9, wd 1e-4), batch 64, 100 epochs, StepLR(70, 0.1); gamma 1.5.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=28))
custom_hooks = [
    dict(type='MMParetoHook', gamma=1.5),
]
