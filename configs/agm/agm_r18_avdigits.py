# AGM on AV-Digits, setting (b) (the default set): Shapley mono-modal logits from eval-mode
# passes with one modality's input zeroed, each logit's gradient scaled by
# k_m = exp(alpha min(r*_m - r_m, 10)) over the whole run, and the code's CREMA-D clip (when a
# classifier weight-gradient element leaves [-1, 1], every gradient is clipped to norm 1).
# alpha 1.5 is the maintainer's CREMA-D value (ours for this set). Demo schedule as every
# AV-Digits method (lr 0.01, 10 epochs).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='AGMHook', alpha=1.5, clamp=10.0, clip_threshold=1.0, clip_max_norm=1.0),
]
