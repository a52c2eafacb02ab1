# G-Blending on AVE with the CREMA-D settings (gblend_r18_crema.py; no source gives
# G-Blending settings for AVE, ours).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=28))
custom_hooks = [
    dict(type='GBlendHook', mode='online', super_epoch=10),
]
