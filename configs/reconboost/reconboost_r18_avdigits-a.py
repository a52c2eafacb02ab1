# ReconBoost on AV-Digits setting (a); see reconboost_r18_avdigits.py for the fields.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='SharedHeadFusion', num_classes=10,
                         eval_fusion='boost', boost_rate=1.0, hidden_channels=256),
             head=None)
optim_wrapper = dict(optimizer=dict(lr=0.01, momentum=0.9, weight_decay=5e-4))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
custom_hooks = [
    dict(type='ReconBoostHook', epochs_per_stage=1, correct_epochs=1, w1=5.0, w2=1.0,
         alpha=0.5),
]
