# ReconBoost on AVE with the reference README's settings: as reconboost_r18_crema.py, with
# w1 = 4 and the lr x 0.5 once, at stage 40 (epoch 320); 100 stages (ours: the README gives
# no stage count for AVE).
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='SharedHeadFusion', num_classes=28,
                         eval_fusion='boost', boost_rate=1.0, hidden_channels=256),
             head=None)
optim_wrapper = dict(optimizer=dict(lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[320],
                        gamma=0.5)]
train_cfg = dict(max_epochs=800)
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
custom_hooks = [
    dict(type='ReconBoostHook', epochs_per_stage=4, correct_epochs=4, w1=4.0, w2=1.0,
         alpha=0.5),
]
