# Greedy on CREMA-D. The reference trains none of our datasets (ModelNet40, Colored-MNIST,
# NVGesture). The model is the reference's (ResNet18 branches with their own classifiers,
# MMTM after stages 1, 2, 3, ratio 4) and so are the hook's values (threshold 0.01, 5
# re-balancing steps, one warm-up epoch), on mmbal's audio-visual protocol (ours): ResNet18
# from scratch, batch 64, SGD lr 1e-3, momentum 0.9, wd 1e-4, 100 epochs, StepLR(70, 0.1).
# BalanceBenchmark uses threshold 0.001 and no warm-up (docs/methods/greedy.md).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(encoder_fusion=dict(type='MMTMFusion', stages=(1, 2, 3), ratio=4),
             fusion=dict(_delete_=True, type='LateFusion', num_classes=6), head=None)
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
custom_hooks = [dict(type='GreedyHook', threshold=0.01, curation_steps=5, warmup_epochs=1)]
