# MMPareto's own schedule (GeWu-Lab/MMPareto_ICML2024, code/MMPareto.py, code/script/mmpareto.sh,
# CREMA-D): SGD (lr 2e-3, momentum 0.9, wd 1e-4), 50 epochs, StepLR(30, 0.1); batch 64 is the
# dataset config's.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=2e-3, momentum=0.9, weight_decay=1e-4))
param_scheduler = [dict(type='StepLR', by_epoch=True, step_size=30, gamma=0.1)]
train_cfg = dict(type='BalanceTrainLoop', max_epochs=50, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# The lr above is for a batch of 64 on one process; tools/train.py --auto-scale-lr scales it
# by batch_size x world size / 64 (MMEngine's linear rule).
auto_scale_lr = dict(base_batch_size=64, enable=False)
