# The unimodal visual model on AV-Digits (a classifier with one encoder).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
modalities = ('visual', )
pipeline = [
    dict(type='DegradeImage', noise_std=0.0, downscale=1, seed=0),
    dict(type='Normalize', mean=[0.1307], std=[0.3081]),
    dict(type='PackMultimodalInputs', modalities=modalities),
]
train_dataloader = dict(dataset=dict(modalities=modalities, pipeline=pipeline))
val_dataloader = dict(dataset=dict(modalities=modalities, pipeline=pipeline))
test_dataloader = dict(dataset=dict(modalities=modalities, pipeline=pipeline))
model = dict(encoders=dict(_delete_=True,
                           visual=dict(type='ResNet18', in_channels=1, base_channels=16,
                                       channels_last=True)))
