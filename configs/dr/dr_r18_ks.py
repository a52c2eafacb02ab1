# D&R on Kinetics-Sounds. The official code has no KS settings (the paper's are not verified
# here): the CREMA-D ones (dr_r18_crema.py), ours. num_classes 31 matches OGM-GE's lists.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/kinetics-sounds.py',
    '../_base_/schedules/sgd_90e_dr.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=31))
custom_hooks = [
    dict(type='DRHook', interval=20, max_reinits=3, move_lambda=3.0),
]
