# AIM (Shen, Chen, Zhang, arXiv 2508.19769): depth-adaptive prototypes (DAP) score every
# encoder block, decoupling modules (PAM) give each block an auxiliary copy, and from
# switch_epoch the encoders learn from L_mod = sum_d alpha_d L_d only (DAM). Spec:
# docs/methods/aim.md. AV-Digits, setting (b) (the default set), the CPU demo schedule
# (avdigits_cpu.py: SGD lr 0.01, momentum 0.9, wd 1e-4, StepLR(7, 0.1), 10 epochs).
# switch_epoch 5 is ours (the paper gives no value): half of the 10 epochs, so the modules
# and prototypes have trained for 5 epochs before L_mod takes over.
# dap_optimizer (ours, as the hook's default Adam lr 1e-3 is): Adam lr 0.05. Adam moves an
# element by about lr per step, and the 550 steps of this schedule at 1e-3 left the prototypes
# near their N(0, 1) draw, several units from the class-mean spectrograms (L_r 624k -> 614k
# over 2 epochs; block scores at chance, 0.095 for 10 classes). At 0.05, L_r fell to 0.01 by
# epoch 5 and the scores separate the modalities (docs/methods/aim.md, "Second runs").
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='AIMHook', switch_epoch=5, dap_optimizer=dict(type='Adam', lr=0.05)),
]
