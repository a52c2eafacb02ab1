# AIM on AV-Digits setting (a) (audio better alone, visual faster; 25 % of the image/label
# pairs mismatched); otherwise as aim_r18_avdigits.py (switch_epoch 5 and the DAP
# optimizer are ours).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='AIMHook', switch_epoch=5, dap_optimizer=dict(type='Adam', lr=0.05)),
]
