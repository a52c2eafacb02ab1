# MLA (CVPR 2024): alternating unimodal sub-steps through one shared head, with the head
# gradient projection (HGM), and entropy-weighted fusion of the per-modality logits at test time.
# AV-Digits, setting (b) (the default set), the CPU demo schedule (avdigits_cpu.py: SGD lr 0.01,
# momentum 0.9, wd 1e-4, StepLR(7, 0.1), 10 epochs). Both width-16 ResNet18 encoders output
# 128 features, so one Linear(128, 10) serves both.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='SharedHeadFusion', num_classes=10,
                         eval_fusion='entropy'),
             head=None)
# Every sub-step leaves the other encoders unused: DDP must look for unused parameters.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
custom_hooks = [
    dict(type='MLAHook', projection='owm', order='update_then_project', normalize_p=True),
]
