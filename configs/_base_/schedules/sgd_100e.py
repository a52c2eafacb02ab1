# The papers' schedule (OGM-GE, PDMP, ARL): SGD, batch 64 (set in the dataset
# config), 100 epochs, StepLR(70, 0.1).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=1e-4))
param_scheduler = [dict(type='StepLR', by_epoch=True, step_size=70, gamma=0.1)]
train_cfg = dict(type='BalanceTrainLoop', max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# The lr above is for a batch of 64 on one process; tools/train.py --auto-scale-lr scales it
# by batch_size x world size / 64 (MMEngine's linear rule).
auto_scale_lr = dict(base_batch_size=64, enable=False)
