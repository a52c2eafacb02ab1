# G2D's schedule: SGD (lr 1e-3, momentum 0.9, wd 1e-4), 300 epochs, StepLR(200, 0.1);
# batch 16 is set in the method config.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=1e-4))
param_scheduler = [dict(type='StepLR', by_epoch=True, step_size=200, gamma=0.1)]
train_cfg = dict(type='BalanceTrainLoop', max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# The lr above is for G2D's batch of 16 on one process; tools/train.py --auto-scale-lr scales
# it by batch_size x world size / 16 (MMEngine's linear rule).
auto_scale_lr = dict(base_batch_size=16, enable=False)
