# ARL on AV-Digits, setting (b) (the default set): unimodal probe losses (gamma 4, the paper's
# value) and the eq. 18 gate coefficient 1 + a_m on each encoder, T = 4 (the paper's value for
# every dataset but CREMA-D, which uses 8). Modality order (audio, visual) = m0, m1 of eq. 18.
# The hook reads probe logits itself; the model keeps analytic per-modality metrics so that
# its per-modality accuracies compare with the other methods' rows (set
# model.modality_logits='probe' to report the probes' accuracy instead).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='ARLHook', gamma=4.0, temperature=4.0, coef_form='eq18'),
]
