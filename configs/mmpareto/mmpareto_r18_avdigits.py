# MMPareto on AV-Digits, setting (b) (the default set): an aux head Linear(d_m, 10) per
# modality, L = CE(f) + sum_m CE(h_m(z_m)), and each encoder's gradient replaced by the
# Pareto combination of its fused and unimodal gradients, rescaled per tensor (gamma 1.5, the
# code's value). Demo schedule as every AV-Digits method (lr 0.01, 10 epochs).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='MMParetoHook', gamma=1.5),
]
