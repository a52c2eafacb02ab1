# PMR (CVPR 2023) on AV-Digits setting (b), the CPU demo schedule (avdigits_cpu.py, 10 epochs).
# Prototypes: class means of the encoder outputs over a fresh 10 % of the training split at the
# start of every epoch (eval transforms), momentum 0.2. alpha 1 (PCE on the slower modality),
# mu 1e-2 (prototype entropy of the faster one) for epochs < E_r = 7, the lr step (ours: no
# source gives E_r).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='PMRHook', per_epochs=7, alpha=1.0, mu=1e-2, momentum=0.2, subset=0.1),
]
