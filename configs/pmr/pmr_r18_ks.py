# PMR on Kinetics-Sounds. No PMR source covers KS: the CREMA-D settings (pmr_r18_crema.py), ours.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/kinetics-sounds.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=31))
custom_hooks = [
    dict(type='PMRHook', per_epochs=70, alpha=1.0, mu=1e-2, momentum=0.2, subset=0.1),
]
