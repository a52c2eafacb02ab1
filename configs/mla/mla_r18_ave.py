# MLA on AVE. Neither the MLA code nor (per the spec) its paper has AVE: these are the PDMP
# paper's protocol for its MLA re-run (ResNet18 from scratch, batch 64, SGD lr 1e-3, 100 epochs,
# StepLR(70, 0.1)) with MLA's defaults (see mla_r18_crema.py). Ours, not MLA's.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='SharedHeadFusion', num_classes=28,
                         eval_fusion='entropy'),
             head=None)
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
custom_hooks = [
    dict(type='MLAHook', projection='owm', order='update_then_project', normalize_p=True),
]
