# PMR on AVE with the paper's settings (see pmr_r18_crema.py). The official code computes AVE's
# prototypes on the val split; here, as the paper says, on 10 % of the training split.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=28))
custom_hooks = [
    dict(type='PMRHook', per_epochs=70, alpha=1.0, mu=1e-2, momentum=0.2, subset=0.1),
]
