# ReconBoost (ICML 2024): stages that boost one modality against the others (phase 1), then
# rectify the whole model (phase 2), through one shared head with a learnable beta:
# F = beta * sum_m h(z_m). AV-Digits, setting (b) (the default set), the CPU demo schedule
# (avdigits_cpu.py: 10 epochs, StepLR(7, 0.1)) with the reference's SGD (lr 0.01, momentum
# 0.9, wd 5e-4), cleared at every phase start. Stages of 1 + 1 epochs (ours, so that the ten
# epochs boost audio, visual, audio, visual, audio); the reference's CREMA-D weights
# w1 = 5, w2 = 1, alpha = 0.5, beta0 = 1 and its head Linear(d, 256) -> ReLU -> Linear(256, C).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='SharedHeadFusion', num_classes=10,
                         eval_fusion='boost', boost_rate=1.0, hidden_channels=256),
             head=None)
optim_wrapper = dict(optimizer=dict(lr=0.01, momentum=0.9, weight_decay=5e-4))
# A boosting phase leaves the other encoders and beta unused: DDP must look for them.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
custom_hooks = [
    dict(type='ReconBoostHook', epochs_per_stage=1, correct_epochs=1, w1=5.0, w2=1.0,
         alpha=0.5),
]
