# MMCosine (ICASSP 2023) on AV-Digits setting (b): concat fusion whose bias-free linear classifier
# is replaced by per-modality cosine logits, f = s * sum_m cos(z_m, W_m) (CosineFusion), s = 10
# (the paper's CREMA-D value; ours here), the CPU demo schedule (avdigits_cpu.py). No hook.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='CosineFusion', num_classes=10, scale=10.0),
             head=None)
