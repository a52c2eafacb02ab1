# Late fusion on UCF101 (RGB + optical flow): the mean of one linear classifier per modality,
# otherwise the settings of configs/concat/concat_r18_ucf101.py.
_base_ = [
    '../_base_/models/rgbflow_resnet18_concat.py',
    '../_base_/datasets/ucf101.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=101), head=None)
