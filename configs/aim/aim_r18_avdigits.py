# AIM (Shen, Chen, Zhang, arXiv 2508.19769): depth-adaptive prototypes (DAP) score every
# encoder block, decoupling modules (PAM) give each block an auxiliary copy, and from
# switch_epoch the encoders learn from L_mod = sum_d alpha_d L_d only (DAM). Spec:
# docs/methods/aim.md. AV-Digits, setting (b) (the default set), the CPU demo schedule
# (avdigits_cpu.py: SGD lr 0.01, momentum 0.9, wd 1e-4, StepLR(7, 0.1), 10 epochs).
# switch_epoch 5 is ours (the paper gives no value): half of the 10 epochs, so the modules
# and prototypes have trained for 5 epochs before L_mod takes over.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='AIMHook', switch_epoch=5),
]
