# The affect recipe (MultiBench's affect examples: AdamW, lr 1e-4, weight decay 0.01, batch 32
# set in the dataset config); MultiBench trains up to 1000 epochs with early stopping on val,
# mmbal trains 40 epochs and keeps the best val checkpoint (ours).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01))
param_scheduler = []
train_cfg = dict(type='BalanceTrainLoop', max_epochs=40, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# The lr above is for a batch of 32 on one process (tools/train.py --auto-scale-lr).
auto_scale_lr = dict(base_batch_size=32, enable=False)
