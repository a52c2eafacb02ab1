# ARL as the reference script (shicaiwei123/ICCV2025-ARL main_arl_variance.py) evidently
# intends, on AV-Digits setting (b): warm-up over 0-based epochs 0..5 (gamma replaced by 1, no
# gradient scaling), then every encoder's gradient x 1.5 (fixed a = 0.5; eq. 18 only logged),
# and the global gradient norm clipped at 40 after the scaling. The reference uses gamma
# 4/5/3 on CREMA-D/AVE/KS; 4 here. With the 10-epoch demo schedule only epochs 6..9 scale.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
optim_wrapper = dict(clip_grad=dict(max_norm=40, norm_type=2))
custom_hooks = [
    dict(type='ARLHook', gamma=4.0, temperature=4.0, reference_compat=True, start=5),
]
