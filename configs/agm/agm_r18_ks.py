# AGM on Kinetics-Sounds. The official code has no KS settings: alpha 1.5, clamp 10 and the
# clip 1/1 are the CREMA-D rules (ours). Schedule as agm_r18_crema.py. num_classes 31 matches
# OGM-GE's lists (the dataset checks it against the classes it reads).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/kinetics-sounds.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=31))
custom_hooks = [
    dict(type='AGMHook', alpha=1.5, clamp=10.0, clip_threshold=1.0, clip_max_norm=1.0),
]
