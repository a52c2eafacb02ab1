# ReconBoost on Kinetics-Sounds. No ReconBoost source covers KS: the CREMA-D settings
# (reconboost_r18_crema.py), ours.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/kinetics-sounds.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='SharedHeadFusion', num_classes=31,
                         eval_fusion='boost', boost_rate=1.0, hidden_channels=256),
             head=None)
optim_wrapper = dict(optimizer=dict(lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True,
                        milestones=[240, 480, 720], gamma=0.1)]
train_cfg = dict(max_epochs=800)
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
custom_hooks = [
    dict(type='ReconBoostHook', epochs_per_stage=4, correct_epochs=4, w1=5.0, w2=1.0,
         alpha=0.5),
]
