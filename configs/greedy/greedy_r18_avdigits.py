# Greedy (ICML 2022): balanced multi-modal learning. One branch per modality (encoder + its own
# classifier, predictions averaged: LateFusion), MMTM blocks after ResNet18 stages 1, 2, 3
# (the reference's layer2, layer3, layer4; squeeze ratio 4), trained on the sum of the branch
# CEs. GreedyHook measures the branches' conditional learning speeds and, after one warm-up
# epoch, re-balances for 5 steps whenever their log10 gap exceeds 0.01 (the reference's gin).
# AV-Digits, setting (b) (the default set), the CPU demo schedule (avdigits_cpu.py: SGD lr
# 0.01, momentum 0.9, wd 1e-4, StepLR(7, 0.1), 10 epochs); not the reference's optimiser
# (ours, as for every method on AV-Digits).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(encoder_fusion=dict(type='MMTMFusion', stages=(1, 2, 3), ratio=4),
             fusion=dict(_delete_=True, type='LateFusion', num_classes=10), head=None)
# A re-balancing step leaves the cared modality's excitation layers unused.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
custom_hooks = [dict(type='GreedyHook', threshold=0.01, curation_steps=5, warmup_epochs=1)]
