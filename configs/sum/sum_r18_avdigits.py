# Sum fusion as in the reference repos: f = sum_m (W_m z_m + b_m), no head after it.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='SumFusion', out_channels=10), head=None)
