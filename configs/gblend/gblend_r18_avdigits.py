# G-Blending on AV-Digits setting (b) (the default set): an aux head Linear(d_m, 10) per
# modality, L = w_f CE(f) + sum_m w_m CE(h_m(z_m)), the weights re-estimated online every 5
# epochs (ours: BalanceBenchmark's 10 over 30 epochs, scaled to this 10-epoch demo schedule)
# from copies of the model trained 5 epochs each on the training split, measured on val.
# Cost: 2 estimates x 3 copies x 5 epochs = 30 copy epochs on top of the run's 10.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='GBlendHook', mode='online', super_epoch=5),
]
