# D&R (ECCV 2024) on AV-Digits setting (b), the CPU demo schedule (avdigits_cpu.py, 10 epochs).
# After every 2nd epoch, at most 3 times (before 0-based epochs 3, 5 and 7; ours, scaled from the
# official 20 of 90 epochs), each encoder's k-means purity on the train and val splits (eval
# transforms) gives w = tanh(3 |P_train - P_val|), and its parameters are blended back towards
# their initial values by w. Training itself is plain concat CE.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='DRHook', interval=2, max_reinits=3, move_lambda=3.0),
]
