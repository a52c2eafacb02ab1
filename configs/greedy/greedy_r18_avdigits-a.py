# Greedy on AV-Digits setting (a) (audio better alone, visual faster; 25 % of the image/label
# pairs mismatched); see greedy_r18_avdigits.py for the fields.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(encoder_fusion=dict(type='MMTMFusion', stages=(1, 2, 3), ratio=4),
             fusion=dict(_delete_=True, type='LateFusion', num_classes=10), head=None)
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
custom_hooks = [dict(type='GreedyHook', threshold=0.01, curation_steps=5, warmup_epochs=1)]
