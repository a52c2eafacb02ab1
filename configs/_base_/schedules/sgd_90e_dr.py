# D&R's own CREMA-D schedule (GeWu-Lab/Diagnosing_Relearning_ECCV2024, code/script/ours.sh):
# SGD (lr 2e-3, momentum 0.9, wd 1e-4), 90 epochs and no lr schedule (the script's
# lr_decay_step is parsed and never used); batch 64 is the dataset config's.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=2e-3, momentum=0.9, weight_decay=1e-4))
param_scheduler = []
train_cfg = dict(type='BalanceTrainLoop', max_epochs=90, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# The lr above is for a batch of 64 on one process; tools/train.py --auto-scale-lr scales it
# by batch_size x world size / 64 (MMEngine's linear rule).
auto_scale_lr = dict(base_batch_size=64, enable=False)
