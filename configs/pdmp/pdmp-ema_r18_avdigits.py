# PDMP (AV-Digits, setting b) with MMEngine's EMAHook: validation, the best checkpoint
# and the test use the exponential moving average of the weights.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='PDMPHook', gamma_p=5.0, dominant='visual', optim_dominant='visual'),
    dict(type='EMAHook', momentum=0.001, priority='ABOVE_NORMAL'),
]
