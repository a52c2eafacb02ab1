# AGM on AVE (event classification). The official code's "AVE" is the event-localization task
# and sets nothing for this one: alpha 1.5, clamp 10 and the clip 1/1 are the CREMA-D rules
# (ours). Schedule as agm_r18_crema.py (the published comparison protocol).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=28))
custom_hooks = [
    dict(type='AGMHook', alpha=1.5, clamp=10.0, clip_threshold=1.0, clip_max_norm=1.0),
]
