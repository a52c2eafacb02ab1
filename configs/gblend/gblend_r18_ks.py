# G-Blending on Kinetics-Sounds with the CREMA-D settings (gblend_r18_crema.py; no source gives
# G-Blending settings for Kinetics-Sounds, ours).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/kinetics-sounds.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=31))
custom_hooks = [
    dict(type='GBlendHook', mode='online', super_epoch=10),
]
