# The concat baseline on CREMA-D with the papers' settings (ResNet18 from scratch, SGD lr 1e-3,
# momentum 0.9, wd 1e-4, batch 64, 100 epochs, StepLR(70, 0.1)).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=6))
