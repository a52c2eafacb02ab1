# Late fusion: the mean of one linear classifier per modality (G2D's setting).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=10), head=None)
