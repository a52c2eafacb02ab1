# The concat baseline on UCF101 (RGB + optical flow) with the PDMP/ARL papers' settings:
# ResNet18 encoders from ImageNet weights, SGD lr 1e-3, momentum 0.9, wd 1e-4, batch 64,
# 100 epochs, StepLR(70, 0.1). Frame counts and flow stack: ours (_base_/datasets/ucf101.py).
_base_ = [
    '../_base_/models/rgbflow_resnet18_concat.py',
    '../_base_/datasets/ucf101.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
