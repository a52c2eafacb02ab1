# ARL on UCF101 (RGB + optical flow) with the paper's settings (see arl_r18_crema.py): gamma 4,
# T 4 (the paper's value for every dataset but CREMA-D), ImageNet init and the schedule of
# configs/concat/concat_r18_ucf101.py.
_base_ = [
    '../_base_/models/rgbflow_resnet18_concat.py',
    '../_base_/datasets/ucf101.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='ARLHook', gamma=4.0, temperature=4.0, coef_form='eq18'),
]
